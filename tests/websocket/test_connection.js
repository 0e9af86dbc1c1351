#!/usr/bin/env node
"use strict";
// One WebSocket client against a running jobwire, end to end: connect, sign in, subscribe to a
// fresh job, receive an update published over HTTP, lose the connection (dropped without a
// closing handshake, as a network failure would), miss an update meanwhile, reconnect and
// resume from the last event id, receive the missed update replayed and a live one.
//
//   node tests/websocket/test_connection.js --url=ws://localhost:3000/ws/jobs
//
// Credentials, the documented way: JOBWIRE_SECRET (the server's) mints a user token and a
// publisher token; or JOBWIRE_TOKEN (a user or admin token, `jobwire token USER`) and
// JOBWIRE_PUBLISHER_TOKEN (`jobwire token NAME --role publisher`; an admin JOBWIRE_TOKEN can
// publish itself); --token and --publisher-token override them. Ends with PASS/FAIL lines
// (docs/load-testing.md); exit status 0 only if every line is PASS, 2 if it could not run.

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { performance } = require("node:perf_hooks");

const lib = path.join(__dirname, "..", "performance", "lib");
const { parseArgs, httpBase, wsEndpoint, cannotRun, runMain } = require(path.join(lib, "args"));
const { judge, percent, report } = require(path.join(lib, "criteria"));
const { mint, claims, hmacAlgorithm } = require(path.join(lib, "tokens"));

const SCRIPT = "test_connection.js";
const USAGE = `usage: node tests/websocket/test_connection.js [--url=ws://localhost:3000/ws/jobs] [--timeout=10s]

Connects one WebSocket client, receives an update, is disconnected, resumes with lastEventId,
and judges connect time, delivery latency, connection and reconnection success, and delivery.
Credentials: JOBWIRE_SECRET, or JOBWIRE_TOKEN and JOBWIRE_PUBLISHER_TOKEN.`;
const SPEC = {
  url: { kind: "string", default: "ws://localhost:3000/ws/jobs", help: "the WebSocket endpoint (or the server's http:// URL)" },
  timeout: { kind: "duration", default: 10, help: "longest wait for any one step (default 10s)" },
  token: { kind: "string", default: "", help: "the reader's token (user or admin) [JOBWIRE_TOKEN]" },
  publisher_token: { kind: "string", default: "", help: "a publisher or admin token [JOBWIRE_PUBLISHER_TOKEN]" },
  report: { kind: "string", default: "", help: "also write the verdicts and measurements to this JSON file" },
};

let WebSocket;
try {
  WebSocket = require("ws");
} catch {
  cannotRun(SCRIPT, `the ws package is missing: run \`npm ci\` in ${path.resolve(__dirname, "..", "..")}`);
}

/** Something that stops the test from running at all (exit 2), as opposed to a FAIL. */
class SetupError extends Error {}

/** The reader's and the publisher's tokens and the user the test job belongs to. */
function credentials(options, env = process.env) {
  const secret = env.JOBWIRE_SECRET;
  const alg = hmacAlgorithm(env);
  const canMint = Boolean(secret && alg);
  const fresh = `conntest-${crypto.randomBytes(4).toString("hex")}`;
  let reader = options.token || env.JOBWIRE_TOKEN || "";
  if (!reader && !canMint) {
    throw new SetupError("no credentials: set JOBWIRE_SECRET to the server's signing secret, " +
      "or JOBWIRE_TOKEN to a user or admin token (`jobwire token USER`) and " +
      "JOBWIRE_PUBLISHER_TOKEN to a publisher token (`jobwire token NAME --role publisher`)" +
      (secret && !alg ? `; JOBWIRE_JWT_ALGORITHM=${env.JOBWIRE_JWT_ALGORITHM} tokens cannot be minted here: give tokens` : ""));
  }
  reader = reader || mint(secret, fresh, "user", 3600, alg);
  const who = claims(reader);
  if (!who || typeof who.sub !== "string") {
    throw new SetupError("the reader's token (--token or JOBWIRE_TOKEN) is not a JWT with a `sub`");
  }
  if (who.role === "publisher") {
    throw new SetupError("the reader's token (--token or JOBWIRE_TOKEN) is a publisher token, " +
      "which cannot subscribe: give a user or admin token (`jobwire token USER`)");
  }
  let publisher = options.publisher_token || env.JOBWIRE_PUBLISHER_TOKEN || "";
  if (!publisher && who.role === "admin") publisher = reader;
  if (!publisher && canMint) publisher = mint(secret, `${fresh}-pub`, "publisher", 3600, alg);
  if (!publisher) {
    throw new SetupError("no publisher token: set JOBWIRE_PUBLISHER_TOKEN " +
      "(`jobwire token NAME --role publisher`), or JOBWIRE_SECRET to mint one");
  }
  return { reader, publisher, user: who.sub };
}

/** One WebSocket connection, its messages queued for `next`; every wait bounded. */
class Connection {
  constructor(url, token, timeoutMs) {
    this.timeoutMs = timeoutMs;
    this.queue = [];
    this.waiter = null;
    this.closed = null;
    this.ws = new WebSocket(url, {
      headers: { Authorization: `Bearer ${token}` }, handshakeTimeout: timeoutMs, perMessageDeflate: false,
    });
    this.ws.on("message", (data) => {
      this.queue.push({ msg: JSON.parse(data.toString()), at: performance.now() });
      this.wake();
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    // Errors end the connection ('close' follows); before the handshake `opened` reports them.
    this.ws.on("error", () => {});
  }

  wake() {
    if (this.waiter) this.waiter();
  }

  /** Resolve when the handshake is done. The first time, a failure means no jobwire is
   *  there (a SetupError); later it is the reconnection failing. */
  opened(first) {
    return new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("error", (err) => reject(first
        ? new SetupError(`cannot open ${this.ws.url}: ${err.message}: is jobwire serve running there (--url)?`)
        : new Error(`cannot reconnect to ${this.ws.url}: ${err.message}`)));
    });
  }

  /** The next message (and when it came) that `wanted` accepts, skipping the others. */
  async next(wanted, what) {
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      while (this.queue.length) {
        const item = this.queue.shift();
        if (wanted(item.msg)) return item;
      }
      if (this.closed) {
        const { code, reason } = this.closed;
        if (code === 4401) throw new SetupError(`the server refused the reader's token: ${reason} (is JOBWIRE_SECRET the server's?)`);
        throw new Error(`the connection closed (${code} ${reason}) while waiting for ${what}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`no ${what} within ${this.timeoutMs / 1000} s`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(timer); resolve(); };
      });
      this.waiter = null;
    }
  }

  /** Connected, signed in and subscribed to `jobId` (resuming after `lastEventId` if given):
   *  the milliseconds it took from the first byte. */
  static async subscribe(url, token, jobId, lastEventId, timeoutMs) {
    const t0 = performance.now();
    const conn = new Connection(url, token, timeoutMs);
    await conn.opened(!lastEventId);
    const hello = await conn.next((m) => m.type === "authenticated", "`authenticated`");
    if (hello.msg.role === "publisher") throw new SetupError("the reader's token is a publisher token");
    conn.ws.send(JSON.stringify({ type: "subscribe", jobIds: [jobId], ...(lastEventId ? { lastEventId } : {}) }));
    const done = await conn.next((m) => m.type === "subscribed" || (m.type === "error" && m.code !== "cursor_expired"), "`subscribed`");
    if (done.msg.type === "error") throw new Error(`subscribe refused: ${done.msg.code}: ${done.msg.message}`);
    return { conn, ms: done.at - t0 };
  }

  /** The event of `jobId` with `seq`; any other event of the job is counted in `seen`. */
  event(jobId, seq, seen) {
    return this.next((m) => {
      if (m.jobId !== jobId || !("seq" in m)) return false;
      seen.push(m.seq);
      return m.seq === seq;
    }, `the event of seq ${seq}`);
  }
}

/** Publish one update over HTTP: the ack ({id, seq}); a SetupError if the token is refused. */
async function publish(base, token, jobId, body, timeoutMs) {
  const response = await fetch(`${base}/api/v2/jobs/${encodeURIComponent(jobId)}/status`, {
    method: "POST", body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
  });
  const text = await response.text();
  if (response.status === 401 || response.status === 403) {
    throw new SetupError(`the server refused the publisher token (${response.status}): ${text}`);
  }
  if (response.status !== 202) throw new Error(`publishing answered ${response.status}: ${text}`);
  return JSON.parse(text);
}

async function main() {
  const options = parseArgs(process.argv.slice(2), SPEC, USAGE);
  const endpoint = wsEndpoint(options.url);
  const base = httpBase(options.url);
  const timeoutMs = options.timeout * 1000;
  const { reader, publisher, user } = credentials(options);
  const jobId = `conntest-${crypto.randomBytes(6).toString("hex")}`;
  const update = (status, progress) => ({ userId: user, status, progress, currentOperation: `${SCRIPT} ${status}` });

  const m = { connects: 0, connected: 0, forced: 0, resumed: 0, seen: [], deliveries: [] };
  const live = async (conn, status, progress) => {
    const t = performance.now();
    const ack = await publish(base, publisher, jobId, update(status, progress), timeoutMs);
    const got = await conn.event(jobId, ack.seq, m.seen);
    m.deliveries.push(got.at - t);
    return got.msg;
  };
  let conn = null;
  let problem = null;
  try {
    m.connects += 1;
    const first = await Connection.subscribe(endpoint, reader, jobId, null, timeoutMs);
    conn = first.conn;
    m.connected += 1;
    m.connectMs = first.ms;
    const event = await live(conn, "queued", 0);

    // Dropped without a closing handshake; an update is published while it is gone.
    const dropped = performance.now();
    m.forced += 1;
    conn.ws.terminate();
    const missed = await publish(base, publisher, jobId, update("processing", 50), timeoutMs);

    m.connects += 1;
    const again = await Connection.subscribe(endpoint, reader, jobId, event.id, timeoutMs);
    conn = again.conn;
    m.connected += 1;
    await conn.event(jobId, missed.seq, m.seen); // replayed from history
    m.resumed += 1;
    m.reconnectMs = performance.now() - dropped;
    m.expected = (await live(conn, "completed", 100)).seq;
  } catch (err) {
    if (err instanceof SetupError) throw err;
    problem = err.message;
  } finally {
    if (conn) conn.ws.close(1000);
  }

  const ms = (v) => `${v.toFixed(1)} ms`;
  const received = new Set(m.seen);
  const expected = m.expected ?? Math.max(3, ...m.seen);
  let inOrder = 0;
  while (received.has(inOrder + 1)) inOrder += 1;
  process.stdout.write(`connection   ${endpoint} as ${user}, job ${jobId}\n` +
    (m.connectMs !== undefined ? `connected    in ${ms(m.connectMs)} (handshake, authenticated, subscribed)\n` : "") +
    (m.deliveries.length ? `delivered    live updates in ${m.deliveries.map(ms).join(", ")} (publish to receipt)\n` : "") +
    (m.reconnectMs !== undefined ? `resumed      in ${ms(m.reconnectMs)} after the drop, with the missed update replayed\n` : "") +
    `events       seq ${m.seen.join(", ") || "none"} received of 1..${expected}\n` +
    (problem ? `problem      ${problem}\n` : ""));
  const why = problem ? `not measured: ${problem}` : "";
  const verdicts = [
    judge("connect", m.connectMs ?? null, m.connectMs !== undefined ? "the first connection" : why),
    judge("delivery", m.deliveries.length === 2 ? Math.max(...m.deliveries) : null,
      m.deliveries.length === 2 ? "the slower of 2 live updates" : why),
    judge("connectionSuccess", percent(m.connected, m.connects), `${m.connected} of ${m.connects} connections`),
    judge("reconnectionSuccess", percent(m.resumed, m.forced),
      m.forced ? `${m.resumed} of ${m.forced} forced disconnects resumed with the missed event` : why),
    judge("completeness", percent(Math.min(inOrder, expected), expected),
      `${inOrder} of ${expected} events in order; ${m.seen.length - received.size} duplicates`),
  ];
  const status = report(verdicts);
  if (options.report) {
    const { token, publisher_token, ...shown } = options; // never the tokens
    fs.writeFileSync(options.report, JSON.stringify({
      script: SCRIPT, options: shown, exitStatus: status, criteria: verdicts,
      measured: { endpoint, user, jobId, problem, ...m },
    }, null, 2) + "\n");
  }
  return status;
}

runMain(SCRIPT, async () => {
  try {
    return await main();
  } catch (err) {
    if (err instanceof SetupError) cannotRun(SCRIPT, err.message);
    throw err;
  }
});
