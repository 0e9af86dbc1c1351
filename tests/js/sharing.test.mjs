// The pure parts of sharing one connection between tabs: the key that keeps users apart, and
// the cursor a new leader resumes from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sharedName, newestCursor } from "../../src/jobwire/static/jobwire.mjs";

const BASE = "https://app.example/realtime";

test("the shared connection is keyed by server, user and role", () => {
  const alice = sharedName(BASE, { userId: "alice", role: "user" });
  assert.equal(alice, sharedName(BASE, { userId: "alice", role: "user" }));
  assert.notEqual(alice, sharedName(BASE, { userId: "bob", role: "user" }));
  assert.notEqual(alice, sharedName(BASE, { userId: "alice", role: "admin" }));
  assert.notEqual(alice, sharedName("https://app.example", { userId: "alice", role: "user" }));
});

test("a new leader resumes from the newest cursor any tab reports", () => {
  assert.equal(newestCursor(["100-0", "1000-2", "999-9", "1000-10"]), "1000-10");
  assert.equal(newestCursor([null, "5-0", undefined]), "5-0");
});

test("no cursor at all, or only the stream's start, is no cursor", () => {
  assert.equal(newestCursor([]), null);
  assert.equal(newestCursor([null, "0-0"]), null);
  assert.equal(newestCursor(undefined), null);
  assert.equal(newestCursor([42, {}, "7-1"]), "7-1", "what is not an id is ignored");
});
