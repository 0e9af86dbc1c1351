// Assembles the package's dist/ from the files the server serves (src/jobwire/static), run by
// `npm pack` / `npm publish` (prepack). The library has one source: the server's /static/
// jobwire.js is the package's dist/jobwire.js, byte for byte; nothing here is committed.
//
//   dist/jobwire.js     the classic script (UMD: a <script>, require(), and the SharedWorker)
//   dist/jobwire.mjs    its ES-module face (imports ./jobwire.js, re-exports by name)
//   dist/jobwire.d.ts   types for require() and the global `Jobwire`
//   dist/jobwire.d.mts  the same types for import (TypeScript pairs .mjs with .d.mts)
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = dirname(dirname(fileURLToPath(import.meta.url)));
const STATIC = join(PACKAGE, "..", "..", "src", "jobwire", "static");
const DIST = join(PACKAGE, "dist");
const SOURCES = ["jobwire.js", "jobwire.mjs", "jobwire.d.ts"];

function fail(message) {
  console.error(`jobwire: cannot assemble the package: ${message}`);
  process.exit(1);
}

for (const name of SOURCES) {
  if (!existsSync(join(STATIC, name))) {
    fail(`${relative(process.cwd(), join(STATIC, name))} is missing; ` +
         "pack from clients/js inside the jobwire repository");
  }
}

// The package's version is the library's (Jobwire.version): one number for one file.
const script = readFileSync(join(STATIC, "jobwire.js"), "utf8");
const found = /\bconst VERSION = "([^"]+)";/.exec(script);
if (!found) fail("no `const VERSION = \"…\";` in jobwire.js");
const { version } = JSON.parse(readFileSync(join(PACKAGE, "package.json"), "utf8"));
if (version !== found[1]) {
  fail(`package.json says version ${version} but jobwire.js says ${found[1]}; make them agree`);
}

rmSync(DIST, { recursive: true, force: true });   // nothing stale ships
mkdirSync(DIST);
for (const name of SOURCES) copyFileSync(join(STATIC, name), join(DIST, name));
copyFileSync(join(STATIC, "jobwire.d.ts"), join(DIST, "jobwire.d.mts"));
console.error(`jobwire ${version}: dist/ assembled from ${relative(PACKAGE, STATIC)}`);
