// Socket.IO's Redis emitter for benchmarks/compare_peers.py's `direct` load: the publisher
// writes straight into Redis and the socket.io servers (with @socket.io/redis-adapter) only
// fan out. Reads JSON lines from stdin, each one batch [{room, data}, ...], and emits every
// item's data to its room as `status_update`. Prints `ready` once connected to Redis and,
// after stdin ends and every publish went out, `emitted N`.
//
//   node emitter.js --redis redis://127.0.0.1:6390/0

"use strict";

const readline = require("node:readline");
const { createClient } = require("redis");
const { Emitter } = require("@socket.io/redis-emitter");

function redisUrl(argv) {
  const i = argv.indexOf("--redis");
  if (i < 0 || !argv[i + 1]) throw new Error("usage: emitter.js --redis URL");
  return argv[i + 1];
}

async function main() {
  const client = createClient({ url: redisUrl(process.argv.slice(2)) });
  await client.connect();
  const emitter = new Emitter(client);
  process.stdout.write("ready\n");
  let emitted = 0;
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line) continue;
    for (const item of JSON.parse(line)) {
      emitter.to(item.room).emit("status_update", item.data);
      emitted += 1;
    }
  }
  await client.quit(); // QUIT is queued after the pending PUBLISHes: they all went out
  process.stdout.write(`emitted ${emitted}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
