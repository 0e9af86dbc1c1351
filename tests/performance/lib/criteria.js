"use strict";
// The success criteria of a jobwire deployment, in one table, and how a measurement is judged
// against them. Every script under tests/performance/ and tests/websocket/test_connection.js
// prints its verdicts through `judge` and `verdictLine`, so a threshold is changed here only.

// `compare`: how the measured value must stand to `limit` to pass.
const CRITERIA = {
  connect: {
    label: "connection established < 100 ms", limit: 100, unit: "ms", compare: "below",
    measures: "connect time, from the first byte of the attempt to the `subscribed` answer " +
      "(connected, signed in, subscribed): the p99 over the connections",
  },
  delivery: {
    label: "delivery < 500 ms", limit: 500, unit: "ms", compare: "below",
    measures: "WebSocket delivery latency, from the publisher sending the update to the " +
      "client having parsed the event: the p99 over the events",
  },
  sse: {
    label: "SSE delivery < 2 s", limit: 2000, unit: "ms", compare: "below",
    measures: "the same latency over Server-Sent Events: the p99",
  },
  longpoll: {
    label: "long-poll delivery < 5 s", limit: 5000, unit: "ms", compare: "below",
    measures: "the same latency over long-polling: the p99",
  },
  capacity: {
    label: ">= 1,000 connections per server", limit: 1000, unit: "connections",
    compare: "atLeast",
    measures: "connections open at once on the server when publishing started",
  },
  connectionSuccess: {
    label: "connection success rate > 98 %", limit: 98, unit: "%", compare: "above",
    measures: "connections that were established, of those attempted",
  },
  reconnectionSuccess: {
    label: "reconnection success rate > 95 %", limit: 95, unit: "%", compare: "above",
    measures: "forced disconnects followed by a reconnect and a resume from the cursor",
  },
  completeness: {
    label: "delivery >= 99.9 %", limit: 99.9, unit: "%", compare: "atLeast",
    measures: "events received once, in order (per-job seq), of the events expected",
  },
  publishRate: {
    label: "publish rate >= 95 % of --updates_per_second", limit: 95, unit: "%",
    compare: "atLeast",
    measures: "updates the publisher got accepted per second, of the rate asked for",
  },
};

const PASSES = {
  below: (value, limit) => value < limit,
  above: (value, limit) => value > limit,
  atLeast: (value, limit) => value >= limit,
};

/** The verdict on one criterion: `value` (a number, or null when nothing was measured) and
 *  `detail`, a few words on how it was measured or why there is no value. */
function judge(key, value, detail = "") {
  const c = CRITERIA[key];
  if (!c) throw new Error(`unknown criterion ${key}`);
  const measured = typeof value === "number" && Number.isFinite(value);
  return {
    key, label: c.label, limit: c.limit, unit: c.unit, detail,
    value: measured ? value : null,
    verdict: measured && PASSES[c.compare](value, c.limit) ? "PASS" : "FAIL",
  };
}

/** A share in percent, or null when there was nothing to count. */
function percent(part, whole) {
  return whole > 0 ? (100 * part) / whole : null;
}

function formatValue(v) {
  if (v.value === null) return "not measured";
  const digits = v.unit === "%" ? (v.value >= 99 && v.value < 100 ? 3 : 1)
    : v.unit === "connections" ? 0 : v.value < 100 ? 1 : 0;
  const number = v.value.toLocaleString("en-US", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  });
  return `${number} ${v.unit}`;
}

/** `PASS  delivery < 500 ms: 3.2 ms (p99 of 1,204 events)`: one line per criterion. */
function verdictLine(v) {
  return `${v.verdict}  ${v.label}: ${formatValue(v)}${v.detail ? ` (${v.detail})` : ""}`;
}

/** Print the verdicts, last thing on stdout; return the exit status: 0 only if all pass. */
function report(verdicts, out = process.stdout) {
  for (const v of verdicts) out.write(verdictLine(v) + "\n");
  return verdicts.length > 0 && verdicts.every((v) => v.verdict === "PASS") ? 0 : 1;
}

module.exports = { CRITERIA, judge, percent, verdictLine, report };
