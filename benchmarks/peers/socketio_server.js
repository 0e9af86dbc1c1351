// Node socket.io peer for benchmarks/compare_peers.py.
//
// Clients connect over plain WebSocket (no polling), authenticate with a token in the CONNECT
// packet (the token is the user name: trivial auth), and send `subscribe` {rooms: [...]} with an
// ack; only rooms named after the user are joined (a cheap stand-in for jobwire's ownership
// check). `POST /publish` takes a JSON array of {room, data} and emits each item's data to its
// room as `status_update`. With --redis URL the rooms go through @socket.io/redis-adapter.
//
//   node socketio_server.js --port 3100 [--host 127.0.0.1] [--redis redis://127.0.0.1:6390/0]

"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function parseArgs(argv) {
  const opts = { host: "127.0.0.1", port: 3100, redis: null };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i].replace(/^--/, "");
    if (!(key in opts)) throw new Error(`unknown option ${argv[i]}`);
    opts[key] = argv[i + 1];
  }
  opts.port = Number(opts.port);
  return opts;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function reply(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

async function handleHttp(io, req, res) {
  if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { ok: true });
  if (req.method !== "POST" || req.url !== "/publish") return reply(res, 404, { error: "no" });
  let batch;
  try {
    batch = JSON.parse(await readBody(req));
  } catch {
    return reply(res, 400, { error: "body is not JSON" });
  }
  if (!Array.isArray(batch)) return reply(res, 422, { error: "expected a JSON array" });
  for (const item of batch) io.to(item.room).emit("status_update", item.data);
  return reply(res, 202, { emitted: batch.length });
}

async function redisAdapter(url) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  return createAdapter(pub, sub);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  let io = null;
  const server = http.createServer((req, res) => {
    handleHttp(io, req, res).catch((err) => reply(res, 500, { error: String(err) }));
  });
  io = new Server(server, { transports: ["websocket"], serveClient: false });
  if (opts.redis) io.adapter(await redisAdapter(opts.redis));

  io.use((socket, next) => {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    if (typeof token !== "string" || !token) return next(new Error("unauthorized"));
    socket.data.user = token;
    return next();
  });
  io.on("connection", (socket) => {
    socket.on("subscribe", (msg, ack) => {
      const user = socket.data.user;
      const rooms = (msg && msg.rooms) || [];
      const own = rooms.filter((r) => r === user || r.startsWith(`${user}:`));
      socket.join(own);
      if (typeof ack === "function") ack({ rooms: own });
    });
  });

  server.listen(opts.port, opts.host, () => {
    console.log(`socket.io ${require("socket.io/package.json").version} on ` +
      `${opts.host}:${opts.port}${opts.redis ? " with the redis adapter" : ""}`);
  });
  const stop = () => io.close(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
