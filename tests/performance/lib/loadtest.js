"use strict";
// The load-test scripts' shared body: `jobwire loadtest --json` underneath (the Python load
// generator: readers per transport, a paced publisher, seq and latency accounting), a summary
// of what it measured, then one PASS/FAIL line per success criterion (lib/criteria.js) and the
// exit status: 0 only if every line is PASS, 1 if any is FAIL, 2 if the test could not run.

const { spawn } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const { parseArgs, httpBase, cannotRun, runMain } = require("./args");
const { judge, percent, report } = require("./criteria");

const REPO = path.resolve(__dirname, "..", "..", "..");

/** The jobwire command: the checkout's .venv (./scripts/test makes it), else `jobwire` on the
 *  PATH; null if neither is there. */
function findJobwire(env = process.env) {
  const dirs = [path.join(REPO, ".venv", "bin"), ...(env.PATH || "").split(path.delimiter)];
  for (const dir of dirs.filter(Boolean)) {
    const candidate = path.join(dir, "jobwire");
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here: the next one
    }
  }
  return null;
}

/** Run `jobwire loadtest ... --json`: its JSON result from stdout; its stderr (the live
 *  progress line, warnings, errors) goes straight to ours. */
function runLoadtest(jobwire, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(jobwire, ["loadtest", ...args, "--json"],
      { stdio: ["ignore", "pipe", "inherit"] });
    const chunks = [];
    child.stdout.on("data", (chunk) => chunks.push(chunk));
    // Stopped from outside: stop the load generator too, so nothing is left running.
    const forward = (signal) => child.kill(signal);
    process.on("SIGTERM", forward).on("SIGINT", forward);
    child.on("error", reject);
    child.on("close", (status, signal) => {
      process.off("SIGTERM", forward).off("SIGINT", forward);
      resolve({ status: status ?? (signal ? 128 : 1), stdout: Buffer.concat(chunks).toString() });
    });
  });
}

// --- the criteria judged from a `jobwire loadtest --json` result --------------------------

const count = (n) => Number(n).toLocaleString("en-US");
const ms = (v) => (v === null || v === undefined ? "-" : `${Number(v).toFixed(1)} ms`);

function latency(key, stats, over) {
  if (!stats || !stats.n) return judge(key, null, `no events received ${over}`);
  return judge(key, stats.p99, `p99 of ${count(stats.n)} events ${over}; p50 ${ms(stats.p50)}, max ${ms(stats.max)}`);
}

const VERDICTS = {
  connect: (r) => judge("connect", r.connectMs.p99,
    `p99 of ${count(r.connectMs.n)} connections; p50 ${ms(r.connectMs.p50)}, max ${ms(r.connectMs.max)}`),
  delivery: (r) => latency("delivery", (r.byTransport.ws || {}).latencyMs, "over WebSocket"),
  sse: (r) => latency("sse", (r.byTransport.sse || {}).latencyMs, "over SSE"),
  longpoll: (r) => latency("longpoll", (r.byTransport.longpoll || {}).latencyMs, "over long-polling"),
  capacity: (r) => judge("capacity", r.users / r.urls.length,
    `${count(r.users)} of ${count(r.connections)} asked for, on ${r.urls.length} server${r.urls.length > 1 ? "s" : ""}`),
  connectionSuccess: (r) => judge("connectionSuccess", percent(r.connected, r.connections),
    `${count(r.connected)} of ${count(r.connections)}` + (r.rateLimitedConnects ? `; ${count(r.rateLimitedConnects)} attempts rate-limited and retried` : "")),
  reconnectionSuccess: (r) => judge("reconnectionSuccess", percent(r.disconnects.reconnected, r.disconnects.forced),
    r.disconnects.forced ? `${count(r.disconnects.reconnected)} of ${count(r.disconnects.forced)} forced disconnects; reconnect p99 ${ms(r.disconnects.reconnectMs.p99)}`
      : "no disconnect was forced: the run was shorter than the interval between them"),
  completeness: (r) => judge("completeness",
    percent(Math.min(r.eventsDelivered, r.eventsExpected), r.eventsExpected),
    `${count(r.eventsDelivered)} of ${count(r.eventsExpected)} events; ${count(r.eventsLost)} lost, ` +
      `${count(r.seqGaps)} seq gaps, ${count(r.duplicates)} duplicates`),
  publishRate: (r) => {
    const p = r.publish;
    const kept = p.updatesSent ? p.achievedRate * (p.accepted + p.conflated) / p.updatesSent : 0;
    return judge("publishRate", percent(kept, p.targetRate),
      `${count(Math.round(kept))} accepted updates/s of ${count(p.targetRate)} asked for; ` +
        `${count(p.refused)} refused, ${count(p.httpErrors)} failed batches`);
  },
};

/** What the load test measured, in a few lines, before the verdicts. */
function summary(r) {
  const p = r.publish;
  const lines = [
    `connections  ${count(r.connected)}/${count(r.connections)} connected in ${r.rampSeconds.toFixed(1)} s (${r.transport}); ` +
      `connect p50 ${ms(r.connectMs.p50)}, p99 ${ms(r.connectMs.p99)}`,
    `published    ${count(p.updatesSent)} updates over ${p.seconds.toFixed(1)} s: ${count(Math.round(p.achievedRate))}/s of ${count(p.targetRate)}/s; ` +
      `${count(p.refused)} refused, ${count(p.httpErrors)} failed batches`,
    `delivered    ${count(r.eventsDelivered)}/${count(r.eventsExpected)} events; ${count(r.eventsLost)} lost, ` +
      `${count(r.seqGaps)} seq gaps, ${count(r.duplicates)} duplicates, ${count(r.foreignEvents)} of other users`,
  ];
  for (const [transport, t] of Object.entries(r.byTransport)) {
    const l = t.latencyMs;
    lines.push(`  ${transport.padEnd(9)}  ${count(t.connected)} connections, ${count(t.eventsDelivered)}/${count(t.eventsExpected)} events, ` +
      `latency p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, max ${ms(l.max)}`);
  }
  if (r.disconnects.every) {
    const d = r.disconnects;
    lines.push(`disconnects  ${count(d.forced)} forced, ${count(d.reconnected)} reconnected and resumed; reconnect p99 ${ms(d.reconnectMs.p99)}`);
  }
  for (const b of r.bottleneck) lines.push(`note: ${b}`);
  return lines.join("\n") + "\n";
}

// --- a script ---------------------------------------------------------------------------

const COMMON = {
  duration: { kind: "duration", default: 30, help: "how long to publish: 300s, 5m, 1m30s (default 30s)" },
  updates_per_second: { kind: "rate", default: 1000, help: "updates published per second (default 1000)" },
  url: { kind: "string", default: "http://localhost:3000", help: "the server: http://host:port (or its ws:// URL)" },
  report: { kind: "string", default: "", help: "also write the verdicts and the load test's full result to this JSON file" },
};

// Connection attempts in flight while ramping up: a steady arrival of clients rather than
// `jobwire loadtest`'s default burst of 200 at once, whose queueing at a one-process server
// would be measured as connect time.
const RAMP_IN_FLIGHT = 50;

/** Forced disconnects for `connections` readers over `duration` seconds: about 1 % of the
 *  connections at a time, every 2 s (more often in a short run, so that one happens). */
function disconnects(connections, duration) {
  const every = connections > 1 ? Math.max(1, Math.round(connections / 100)) : 0;
  const interval = Math.min(2, duration / 3);
  return every ? ["--disconnect-every", String(every), "--disconnect-interval", `${interval}s`] : [];
}

/** A load-test script: parse `spec` (plus --duration, --updates_per_second, --url and
 *  --report); `plan(options)` gives the readers ({transport, connections}), any further
 *  `jobwire loadtest` arguments (`args`) and the criteria to judge; run it, print, exit. */
function loadtestScript({ script, usage, spec, plan }) {
  runMain(script, async () => {
    const options = parseArgs(process.argv.slice(2), { ...spec, ...COMMON }, usage);
    const url = httpBase(options.url);
    const { transport, connections, args = [], criteria } = plan(options);
    if (!process.env.JOBWIRE_SECRET && !process.env.JOBWIRE_JWT_PRIVATE_KEY) {
      cannotRun(script, "set JOBWIRE_SECRET to the server's signing secret: the load test " +
        "mints a token for each of its users and for its publisher (a single JOBWIRE_TOKEN " +
        "cannot stand for many users; with RS or ES keys set JOBWIRE_JWT_ALGORITHM and " +
        "JOBWIRE_JWT_PRIVATE_KEY instead)");
    }
    const jobwire = findJobwire();
    if (!jobwire) {
      cannotRun(script, `no jobwire command: neither ${path.join(REPO, ".venv", "bin", "jobwire")} ` +
        "(./scripts/test makes it) nor `jobwire` on the PATH (pip install 'jobwire[loadtest]')");
    }
    const run = await runLoadtest(jobwire, [
      "--url", url, "--transport", transport, "--connections", String(connections),
      "--duration", `${options.duration}s`, "--updates-per-second", String(options.updates_per_second),
      "--concurrent", String(RAMP_IN_FLIGHT), ...args]);
    let result;
    try {
      result = JSON.parse(run.stdout);
    } catch {
      cannotRun(script, `the load test could not run (jobwire loadtest exited with status ${run.status}; its message is above)`);
    }
    process.stdout.write(summary(result));
    const verdicts = criteria.map((key) => VERDICTS[key](result));
    const status = report(verdicts);
    if (options.report) {
      fs.writeFileSync(options.report, JSON.stringify({
        script, options, exitStatus: status, criteria: verdicts, loadtest: result,
      }, null, 2) + "\n");
    }
    return status;
  });
}

module.exports = { loadtestScript, disconnects, findJobwire, REPO };
