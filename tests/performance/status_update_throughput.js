#!/usr/bin/env node
"use strict";
// Status-update throughput: updates published at --updates_per_second into WebSocket readers
// for --duration; every event must arrive once and in time, and the rate must be kept.
//
//   JOBWIRE_SECRET=... ./tests/performance/status_update_throughput.js --updates_per_second=10000
//
// Runs `jobwire loadtest --transport ws` underneath (its readers in two worker processes from
// 5,000 updates/s up, so that the load generator keeps up) and ends with PASS/FAIL lines (see
// docs/load-testing.md); exit status 0 only if every line is PASS.

const { loadtestScript } = require("./lib/loadtest");

const SPLIT_READERS_FROM = 5000; // updates/s from which one reader process would lag behind

loadtestScript({
  script: "status_update_throughput.js",
  usage: `usage: status_update_throughput.js [--updates_per_second=1000] [--duration=30s] [--connections=1000] [--url=http://localhost:3000]

Publishes --updates_per_second into --connections WebSocket readers for --duration and judges
the rate kept, delivery latency, delivery, connect time and connection success. Needs
JOBWIRE_SECRET (the server's).`,
  spec: {
    connections: { kind: "count", default: 1000, help: "WebSocket readers, one user each (default 1000)" },
  },
  plan: (o) => ({
    transport: "ws", connections: o.connections,
    args: o.updates_per_second >= SPLIT_READERS_FROM && o.connections >= 2 ? ["--processes", "2"] : [],
    criteria: ["publishRate", "delivery", "completeness", "connect", "connectionSuccess"],
  }),
});
