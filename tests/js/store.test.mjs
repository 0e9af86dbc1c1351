// Cursor order, de-duplication and token decoding in jobwire.js.
import { test } from "node:test";
import assert from "node:assert/strict";
import { compareIds, JobStore, decodeToken, TRANSPORTS } from "../../src/jobwire/static/jobwire.mjs";

test("event ids compare by time, then by sequence, numerically", () => {
  assert.equal(compareIds("1764120330727-0", "1764120330727-0"), 0);
  assert.equal(compareIds("1764120330727-0", "1764120330727-1"), -1);
  assert.equal(compareIds("1764120330727-10", "1764120330727-9"), 1);
  assert.equal(compareIds("999-5", "1000-0"), -1);          // not a string comparison
  assert.equal(compareIds(null, "0-0"), -1);
  assert.equal(compareIds("0-0", null), 1);
});

const ev = (id, seq, extra = {}) => ({ type: "status_update", id, seq, jobId: "j1", userId: "u",
                                       status: "processing", progress: seq * 10, ...extra });

test("an event is applied once; replays and older events are dropped", () => {
  const s = new JobStore();
  assert.equal(s.apply(ev("100-0", 1)).seq, 1);
  assert.equal(s.apply(ev("101-0", 2)).progress, 20);
  assert.equal(s.apply(ev("101-0", 2)), null, "the same event again");
  assert.equal(s.apply(ev("100-0", 1)), null, "an older one");
  assert.equal(s.get("j1").seq, 2);
  assert.equal(s.cursor, "101-0");
});

test("the cursor only moves forward, and ignores 0-0", () => {
  const s = new JobStore();
  s.advance("0-0");
  assert.equal(s.cursor, null);
  s.advance("200-1");
  s.advance("199-9");
  assert.equal(s.cursor, "200-1");
});

test("a restarted server's new event (later id, seq from 1) is not taken for a duplicate", () => {
  const s = new JobStore();
  s.apply(ev("100-0", 3));
  assert.equal(s.apply(ev("900-0", 1, { status: "queued" })).status, "queued");
});

test("a stall marks the job and keeps its state; the next update clears it", () => {
  const s = new JobStore();
  s.apply(ev("100-0", 1, { currentOperation: "page 3" }));
  const stalled = s.apply({ type: "job_stalled", id: "150-0", seq: 2, jobId: "j1", userId: "u",
                            lastUpdate: "2025-01-01T00:00:00Z" });
  assert.equal(stalled.stalled, true);
  assert.equal(stalled.currentOperation, "page 3");
  assert.equal(stalled.progress, 10);
  assert.equal(s.apply(ev("160-0", 3)).stalled, false);
});

test("a stalled state relayed from another store stays stalled", () => {
  // The shared connection's store turns a job_stalled event into a state of the job's own
  // type, with eventType saying what made it; a tab's store applies that state.
  const shared = new JobStore();
  shared.apply(ev("100-0", 1));
  const relayed = shared.apply({ type: "job_stalled", id: "150-0", seq: 2, jobId: "j1",
                                 userId: "u", status: "processing", progress: 10 });
  assert.equal(relayed.type, "status_update");
  const tab = new JobStore();
  const state = tab.apply(JSON.parse(JSON.stringify(relayed)));
  assert.equal(state.stalled, true);
  assert.equal(state.eventType, "job_stalled");
  assert.equal(tab.apply(ev("160-0", 3)).stalled, false);
});

test("events without a job or an id are not job events", () => {
  const s = new JobStore();
  assert.equal(s.apply({ type: "heartbeat" }), null);
  assert.equal(s.apply({ type: "status_update", jobId: "j" }), null);
});

test("tokens are decoded (unverified) for the principal and expiry", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const token = `${b64({ alg: "HS256" })}.${b64({ sub: "zoë", role: "admin", exp: 42 })}.sig`;
  assert.deepEqual(decodeToken(token), { sub: "zoë", role: "admin", exp: 42 });
  assert.equal(decodeToken("not a token"), null);
});

test("transports in order of preference", () => {
  assert.deepEqual(TRANSPORTS, ["websocket", "sse", "longpoll", "poll"]);
});
