// The pure parts of sharing one connection between tabs: the key that keeps users apart, and
// the cursor a new leader resumes from.
import { test } from "node:test";
import assert from "node:assert/strict";
import { sharedName, resumeCursor } from "../../src/jobwire/static/jobwire.mjs";

const BASE = "https://app.example/realtime";

test("the shared connection is keyed by server, user and role", () => {
  const alice = sharedName(BASE, { userId: "alice", role: "user" });
  assert.equal(alice, sharedName(BASE, { userId: "alice", role: "user" }));
  assert.notEqual(alice, sharedName(BASE, { userId: "bob", role: "user" }));
  assert.notEqual(alice, sharedName(BASE, { userId: "alice", role: "admin" }));
  assert.notEqual(alice, sharedName("https://app.example", { userId: "alice", role: "user" }));
});

test("a new leader resumes from the oldest cursor the tabs report, compared as ids", () => {
  assert.equal(resumeCursor(["1000-10", "1000-2", "999-9", "1000-9"]), "999-9");
  assert.equal(resumeCursor(["1000-10", "1000-9"]), "1000-9", "not a string comparison");
});

test("a tab that has seen nothing yet holds no one back", () => {
  assert.equal(resumeCursor([null, "5-0", undefined, "0-0", "6-0"]), "5-0");
  assert.equal(resumeCursor([42, {}, "7-1"]), "7-1", "what is not an id is ignored");
});

test("no cursor at all is no cursor: a fresh start", () => {
  assert.equal(resumeCursor([]), null);
  assert.equal(resumeCursor([null, "0-0"]), null);
  assert.equal(resumeCursor(undefined), null);
});
