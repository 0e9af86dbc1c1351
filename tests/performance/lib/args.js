"use strict";
// Command-line options of the scripts under tests/performance/ and tests/websocket/: parsing,
// checking, and the two exits that are not a verdict (bad usage, a test that cannot run), both
// with status 2 so that they are never mistaken for a FAIL.

const WS_PATH = "/ws/jobs";

class UsageError extends Error {}

const DURATION_PART = /(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)?/y;
const UNIT_SECONDS = { ms: 0.001, s: 1, m: 60, h: 3600, undefined: 1 };

/** Seconds from `300`, `300s`, `500ms`, `5m`, `1h` or `1m30s` (as `jobwire loadtest` reads
 *  them); a UsageError otherwise. */
function parseDuration(text, option) {
  const value = String(text).trim().toLowerCase();
  let total = 0;
  let parts = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < value.length) {
    const start = DURATION_PART.lastIndex;
    const m = DURATION_PART.exec(value);
    // A bare number is allowed only alone (`300`), not inside `1m30`.
    if (!m || m.index !== start || (m[2] === undefined && (parts || DURATION_PART.lastIndex !== value.length))) {
      parts = 0;
      break;
    }
    total += Number(m[1]) * UNIT_SECONDS[m[2]];
    parts += 1;
  }
  if (!parts || !(total > 0) || !Number.isFinite(total)) {
    throw new UsageError(`${option} ${JSON.stringify(String(text))} is not a duration: use e.g. 300s, 5m, 1m30s or 500ms`);
  }
  return total;
}

function parseCount(text, option, min) {
  if (!/^\d+$/.test(String(text).trim())) {
    throw new UsageError(`${option} must be a whole number, not ${JSON.stringify(String(text))}`);
  }
  const n = Number(text);
  if (n < min) throw new UsageError(`${option} must be at least ${min}`);
  return n;
}

function parseRate(text, option) {
  const n = Number(String(text).trim());
  if (String(text).trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new UsageError(`${option} must be a positive number, not ${JSON.stringify(String(text))}`);
  }
  return n;
}

function parseUrl(text, option, schemes) {
  let url;
  try {
    url = new URL(String(text));
  } catch {
    url = null;
  }
  if (!url || !schemes.includes(url.protocol.replace(":", "")) || !url.host) {
    throw new UsageError(`${option} ${JSON.stringify(String(text))} must be a URL like ${schemes[0]}://localhost:3000`);
  }
  return url;
}

/** The server's HTTP base (`http://host:port`, with a mount prefix if any) from any of
 *  http://host:port, ws://host:port or ws://host:port/ws/jobs. */
function httpBase(text, option = "--url") {
  const url = parseUrl(text, option, ["http", "https", "ws", "wss"]);
  const scheme = { ws: "http", wss: "https" }[url.protocol.replace(":", "")] || url.protocol.replace(":", "");
  const path = url.pathname.replace(/\/+$/, "");
  const prefix = path.endsWith(WS_PATH) ? path.slice(0, -WS_PATH.length) : path;
  return `${scheme}://${url.host}${prefix}`;
}

/** The WebSocket endpoint (`ws://host:port/ws/jobs`) from the same forms. */
function wsEndpoint(text, option = "--url") {
  const base = httpBase(text, option);
  return base.replace(/^http/, "ws") + WS_PATH;
}

const PARSERS = {
  count: (text, option, spec) => parseCount(text, option, spec.min ?? 1),
  rate: (text, option) => parseRate(text, option),
  duration: (text, option) => parseDuration(text, option),
  string: (text) => String(text),
};

/** Options from argv (`--name=value` or `--name value`; `-` and `_` alike in names) by `spec`:
 *  {name: {kind, default, help}}. `--help` prints `usage` and the options, and exits 0. */
function parseArgs(argv, spec, usage) {
  const values = {};
  for (const [name, s] of Object.entries(spec)) values[name] = s.default;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--help" || arg === "-h") {
      process.stdout.write(helpText(spec, usage));
      process.exit(0);
    }
    const m = /^--([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(arg);
    if (!m) throw new UsageError(`unexpected argument ${JSON.stringify(arg)} (options are --name=value)`);
    const name = m[1].replace(/-/g, "_");
    const s = spec[name];
    if (!s) {
      throw new UsageError(`unknown option --${m[1]}; the options are ${Object.keys(spec).map((k) => `--${k}`).join(", ")}`);
    }
    let text = m[2];
    if (text === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      text = argv[++i];
    }
    values[name] = PARSERS[s.kind](text, `--${name}`, s);
  }
  return values;
}

function helpText(spec, usage) {
  const lines = [usage.trim(), "", "Options:"];
  for (const [name, s] of Object.entries(spec)) {
    lines.push(`  --${name}=${s.kind.toUpperCase()}`.padEnd(34) + s.help);
  }
  lines.push("  --help".padEnd(34) + "show this and exit");
  return lines.join("\n") + "\n";
}

/** Exit 2 with `script: error: message` on stderr: the test could not run (bad usage, no
 *  credentials, no server, no jobwire command), so there is no verdict. */
function cannotRun(script, message) {
  process.stderr.write(`${script}: error: ${message}\n`);
  process.exit(2);
}

/** Run `main` (async), turning a UsageError into exit 2 with its message and a pointer to
 *  --help, and any other error into exit 2 with its stack. */
function runMain(script, main) {
  main().then((status) => process.exit(status), (err) => {
    if (err instanceof UsageError) cannotRun(script, `${err.message} (see --help)`);
    cannotRun(script, err && err.stack ? err.stack : String(err));
  });
}

module.exports = {
  UsageError, parseArgs, parseDuration, httpBase, wsEndpoint, cannotRun, runMain, WS_PATH,
};
