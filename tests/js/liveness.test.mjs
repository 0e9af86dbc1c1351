// jobwire.js takes missed heartbeats for a dead link: the engine's transports driven by a fake
// WebSocket and fetch, on fake timers. (tests/browser/test_partition.py does the same against a
// real server behind a blackholed relay.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { Engine } from "../../src/jobwire/static/jobwire.mjs";

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.sent = [];
    this.readyState = 0;
    this.closedWith = null;
    FakeSocket.made.push(this);
  }
  send(data) { this.sent.push(JSON.parse(data)); }
  close(code) { this.closedWith = code; this.readyState = 3; }
  open() { this.readyState = 1; this.onopen(); }
  receive(msg) { this.onmessage({ data: JSON.stringify(msg) }); }
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

/** An engine on fake timers and sockets; `fetch` answers what `http` says (default: fails,
 *  as a server behind a dead link: /healthz does not answer). */
async function start(t, options, http) {
  FakeSocket.made = [];
  const clock = t.mock.timers;           // restored when the test ends
  clock.enable({ apis: ["setTimeout", "setInterval"] });
  globalThis.WebSocket = FakeSocket;
  globalThis.fetch = http || (async () => { throw new TypeError("network error"); });
  const states = [];
  const engine = new Engine({ url: "http://jobwire.test", backoff: { baseMs: 100, capMs: 100 },
                              ...options },
                            (type, detail) => { if (type === "state") states.push(detail.state); },
                            async () => "token");
  engine.start();
  for (let i = 0; i < 10 && !engine.ctx; i++) {   // the connect timer, then the token
    clock.tick(1);
    await settle();
  }
  assert.ok(engine.ctx, "the engine opened a connection");
  t.after(() => { engine.stop(); delete globalThis.WebSocket; });
  return { engine, states, clock };
}

const event = (id, seq) => ({ type: "status_update", id, seq, jobId: "j1", userId: "u",
                              status: "processing", progress: seq });

test("websocket: heartbeats keep the link, 2.5 silent intervals drop it and it resumes",
     async (t) => {
  const { engine, states, clock } = await start(t, { transports: ["websocket"] });
  const first = FakeSocket.made[0];
  first.open();
  first.receive({ type: "authenticated", userId: "u", role: "user", expiresAt: null });
  first.receive({ type: "subscribed", all: true, jobs: [], cursor: "5-0", heartbeatSeconds: 2 });
  first.receive(event("6-0", 1));
  assert.equal(engine.state, "open");
  for (let i = 0; i < 10; i++) {          // 20 s of beats: far past 2.5 intervals in all
    clock.tick(2000);
    first.receive({ type: "heartbeat", timestamp: "2025-11-26T01:25:45.731Z" });
  }
  clock.tick(4999);
  assert.equal(engine.state, "open", "2.5 intervals not yet over");
  clock.tick(1);
  assert.equal(engine.state, "reconnecting", "silent for 2.5 intervals: dead");
  assert.equal(first.onclose, null, "not waiting for a closing handshake");
  assert.notEqual(first.closedWith, null);

  clock.tick(3000);                 // the /healthz check gives up
  await settle();
  clock.tick(100);                  // backoff
  await settle();
  const second = FakeSocket.made[1];
  assert.ok(second, "reconnected");
  second.open();
  assert.deepEqual(second.sent[1], { type: "subscribe", all: true, lastEventId: "6-0" });
  assert.deepEqual(states, ["connecting", "open", "reconnecting"]);
});

test("websocket: the option overrides the server's interval; unknown: idleTimeoutMs", async (t) => {
  let { engine, clock } = await start(t, { transports: ["websocket"], heartbeatSeconds: 10 });
  let ws = FakeSocket.made[0];
  ws.open();
  ws.receive({ type: "subscribed", all: true, jobs: [], cursor: "0-0", heartbeatSeconds: 1 });
  clock.tick(24999);
  assert.equal(engine.state, "open");
  clock.tick(1);
  assert.equal(engine.state, "reconnecting");

  engine.stop();
  t.mock.timers.reset();
  ({ engine, clock } = await start(t, { transports: ["websocket"], idleTimeoutMs: 7000 }));
  ws = FakeSocket.made[0];
  ws.open();
  ws.receive({ type: "subscribed", all: true, jobs: [], cursor: "0-0" });  // no interval
  clock.tick(6999);
  assert.equal(engine.state, "open");
  clock.tick(1);
  assert.equal(engine.state, "reconnecting");
});

test("websocket: a handshake that never completes is given up too", async (t) => {
  const { engine, clock } = await start(t, { transports: ["websocket"], idleTimeoutMs: 5000 });
  clock.tick(5000);
  assert.equal(engine.state, "reconnecting");
  assert.notEqual(FakeSocket.made[0].closedWith, null);
});

test("long-poll: an answer overdue by 2.5 intervals aborts the request", async (t) => {
  const requests = [];
  const http = (url, init) => {
    requests.push(url);
    if (url.includes("/healthz")) return Promise.reject(new TypeError("unreachable"));
    if (requests.length === 1) {          // the first poll: the snapshot, at once
      return Promise.resolve(new Response(JSON.stringify({ events: [], jobs: [],
                                                           cursor: "9-0" })));
    }
    return new Promise((_, reject) => {   // then: no answer at all, until aborted
      init.signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
    });
  };
  const { engine, clock } = await start(t, { transports: ["longpoll"], longPollSeconds: 4,
                                   heartbeatSeconds: 2 }, http);
  await settle();
  assert.equal(engine.state, "open");
  assert.match(requests[1], /timeout=4&last_seen=9-0/);
  clock.tick(4000 + 4999);
  await settle();
  assert.equal(engine.state, "open", "within its wait and the margin");
  clock.tick(1);
  await settle();
  assert.equal(engine.state, "reconnecting");
});

test("websocket: a subscribe refused as unavailable is retried from the same cursor",
     async (t) => {
  const { engine, clock } = await start(t, { transports: ["websocket"] });
  const first = FakeSocket.made[0];
  first.open();
  first.receive({ type: "subscribed", all: true, jobs: [], cursor: "5-0", heartbeatSeconds: 2 });
  first.receive(event("6-0", 1));
  first.close(1006);
  first.onclose({ code: 1006, reason: "" });
  clock.tick(3000);                 // the /healthz check gives up
  await settle();
  clock.tick(100);
  await settle();
  const second = FakeSocket.made[1];
  second.open();
  second.receive({ type: "error", code: "unavailable", message: "broker unavailable" });
  assert.equal(engine.state, "reconnecting", "nothing follows a refused subscribe");
  assert.notEqual(second.closedWith, null, "its socket is let go");
  clock.tick(100);                  // backoff only: no /healthz check, no fallback counted
  await settle();
  const third = FakeSocket.made[2];
  assert.ok(third, "retried");
  third.open();
  assert.deepEqual(third.sent[1], { type: "subscribe", all: true, lastEventId: "6-0" });
  assert.equal(engine.level, 0, "still on WebSocket");
});
