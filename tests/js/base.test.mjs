// Where jobwire.js looks for the server: resolveBase(url, scriptUrl, origin), a pure function.
import { test } from "node:test";
import assert from "node:assert/strict";
import { resolveBase } from "../../src/jobwire/static/jobwire.mjs";

const ORIGIN = "https://app.example";

test("loaded from a mount point: the endpoints are under the same prefix", () => {
  assert.equal(resolveBase(null, "https://app.example/realtime/static/jobwire.js", ORIGIN),
               "https://app.example/realtime");
  assert.equal(resolveBase(undefined, "https://app.example/a/b/static/jobwire.mjs", ORIGIN),
               "https://app.example/a/b");
});

test("loaded from the server's own root: the script's origin, even another one", () => {
  assert.equal(resolveBase(null, "https://app.example/static/jobwire.js", ORIGIN),
               "https://app.example");
  assert.equal(resolveBase(null, "http://127.0.0.1:3000/static/jobwire.js", ORIGIN),
               "http://127.0.0.1:3000");
});

test("a query or fragment on the script URL does not hide its path", () => {
  assert.equal(resolveBase(null, "https://app.example/rt/static/jobwire.js?v=3#x", ORIGIN),
               "https://app.example/rt");
});

test("a script that is not <base>/static/jobwire.js falls back to the page's origin", () => {
  for (const script of ["https://cdn.example/libs/jobwire.js",
                        "https://app.example/static/jobwire.min.js",
                        "https://app.example/static/jobwire.js/extra",
                        "https://app.example/notstatic/jobwire.js",
                        "blob:https://app.example/1234",
                        "not a url", "", null, undefined]) {
    assert.equal(resolveBase(null, script, ORIGIN), ORIGIN, String(script));
  }
});

test("an explicit url wins; a relative one is resolved against the page's origin", () => {
  const script = "https://app.example/realtime/static/jobwire.js";
  assert.equal(resolveBase("https://jobs.example/", script, ORIGIN), "https://jobs.example");
  assert.equal(resolveBase("/realtime/", script, ORIGIN), "https://app.example/realtime");
  assert.equal(resolveBase("http://127.0.0.1:3000", null, ""), "http://127.0.0.1:3000");
});

test("no trailing slash, so paths append as base + '/ws/jobs'", () => {
  assert.equal(resolveBase(null, null, "https://app.example/"), "https://app.example");
  assert.equal(resolveBase("https://app.example/rt///", null, ORIGIN), "https://app.example/rt");
});
