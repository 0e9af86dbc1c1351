#!/usr/bin/env node
"use strict";
// WebSocket capacity under load: N readers (one user each) on /ws/jobs, updates published at a
// steady rate, about 1 % of the connections dropped every 2 s and resumed from their cursor.
//
//   JOBWIRE_SECRET=... ./tests/performance/websocket_load_test.js --connections=1000 --duration=300s
//
// Runs `jobwire loadtest --transport ws` underneath and ends with PASS/FAIL lines (see
// docs/load-testing.md); exit status 0 only if every line is PASS.

const { loadtestScript, disconnects } = require("./lib/loadtest");

loadtestScript({
  script: "websocket_load_test.js",
  usage: `usage: websocket_load_test.js [--connections=1000] [--duration=30s] [--updates_per_second=1000] [--url=http://localhost:3000]

Opens --connections WebSocket readers against jobwire serve, publishes for --duration, forces
disconnects, and judges connect time, delivery latency, connections per server, connection and
reconnection success, and delivery. Needs JOBWIRE_SECRET (the server's).`,
  spec: {
    connections: { kind: "count", default: 1000, help: "WebSocket readers, one user each (default 1000)" },
  },
  plan: (o) => ({
    transport: "ws", connections: o.connections, args: disconnects(o.connections, o.duration),
    criteria: ["connect", "delivery", "capacity", "connectionSuccess", "reconnectionSuccess", "completeness"],
  }),
});
