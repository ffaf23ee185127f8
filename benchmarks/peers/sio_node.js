// Socket.IO 4 on Node with @socket.io/redis-adapter: the stack Tidings replaces.
//
//   node sio_node.js PORT REDIS_PORT
//
// A client connects with auth {"room": R, "user": U} and is joined to both rooms. Publishers
// PUBLISH {"r": room, "d": data} on the Redis channel `bench`; each message becomes one
// io.to(room).emit("n", data) — through the Redis adapter, as several app servers would.
// Prints {"event":"ready"} on stdout once it listens; GET /healthz answers 200.
// Configured as Socket.IO's performance-tuning guide says: websocket transport only, no
// per-message deflate, and the `ws` native add-ons bufferutil + utf-8-validate installed
// (package.json); not under `nice` unless the whole run is (the same for every server).
"use strict";
const { createServer } = require("http");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-adapter");
const { createClient } = require("redis");

const port = Number(process.argv[2]);
const redisPort = Number(process.argv[3]);

async function main() {
  const url = `redis://127.0.0.1:${redisPort}`;
  const pub = createClient({ url });
  const sub = pub.duplicate();
  const feed = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect(), feed.connect()]);
  const http = createServer((req, res) => {
    res.writeHead(req.url === "/healthz" ? 200 : 404).end();
  });
  const io = new Server(http, {
    transports: ["websocket"],
    perMessageDeflate: false,
    serveClient: false,
    adapter: createAdapter(pub, sub),
  });
  io.on("connection", (socket) => {
    const auth = socket.handshake.auth || {};
    const rooms = [String(auth.room)];
    if (auth.user) rooms.push(String(auth.user));
    socket.join(rooms);
  });
  await feed.subscribe("bench", (message) => {
    const m = JSON.parse(message);
    io.to(m.r).emit("n", m.d);
  });
  http.listen(port, "127.0.0.1", () => {
    process.stdout.write(JSON.stringify({ event: "ready", port, pid: process.pid }) + "\n");
  });
  const stop = () => {
    io.close();
    Promise.allSettled([pub.quit(), sub.quit(), feed.quit()]).then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
