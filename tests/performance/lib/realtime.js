"use strict";
// The body of realtime_load_test.sh: mixed transports, so that the SSE and long-poll criteria
// have data of their own.

const { loadtestScript, disconnects } = require("./loadtest");

loadtestScript({
  script: "realtime_load_test.sh",
  usage: `usage: realtime_load_test.sh [--concurrent=100] [--duration=30s] [--updates_per_second=1000] [--url=http://localhost:3000]

Opens --concurrent readers split evenly over WebSocket, SSE, long-polling and polling (one user
each), publishes for --duration, forces disconnects, and judges connect time, delivery latency
per transport, connection and reconnection success, and delivery. Needs JOBWIRE_SECRET (the
server's).`,
  spec: {
    concurrent: { kind: "count", default: 100, help: "readers open at once, a quarter per transport (default 100)" },
  },
  plan: (o) => ({
    transport: "mixed", connections: o.concurrent, args: disconnects(o.concurrent, o.duration),
    criteria: ["connect", "delivery", "sse", "longpoll", "connectionSuccess", "reconnectionSuccess", "completeness"],
  }),
});
