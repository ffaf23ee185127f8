// recv.js: the cross-check receiver of `tidings bench` — the peers' own official clients in
// Node, checking every delivery the way wsload.c does and answering the runner the same way.
//
//   node recv.js nats|sio PORT SPECFILE [CONNECT_TIMEOUT_S]
//
// nats: one @nats-io/nats-core connection per line over WebSocket (wsconnect, the `ws` package
//       as the global WebSocket, as its docs say for Node), one subscription per subject on
//       the line (space separated); ready once a flush after the SUBs came back.
// sio:  one socket.io-client socket per line (transports: ["websocket"], auth = the line's JSON
//       object); ready on "connect"; events "n" are deliveries.
//
// A delivery's data starts with {"k":STEP,"s":SLOT,"i":INDEX,"t":NS}; t is CLOCK_MONOTONIC ns
// at publish, and process.hrtime.bigint() reads the same clock here. Per connection and slot:
// gaps, duplicates and out-of-order arrivals (a 32-deep window tells the last two apart); per
// step a latency histogram at 20 us. stdin: `report`, `hist K`, `quit` — the same JSON lines as
// wsload, so the runner's Fleet drives either.
"use strict";
const fs = require("fs");
const readline = require("readline");

const [proto, portArg, specFile, timeoutArg] = process.argv.slice(2);
const port = Number(portArg);
const connectTimeout = Number(timeoutArg || 60) * 1000;
const specs = fs.readFileSync(specFile, "utf8").split("\n").filter((l) => l.length > 0);

const MAX_STEPS = 64;
const BUCKET_NS = 20000;
const NBUCKETS = 1000000;
const MAX_INFLIGHT = 64;

const steps = [];
for (let k = 0; k < MAX_STEPS; k++) {
  steps.push({ received: 0, dups: 0, ooo: 0, gaps: 0, max_ns: 0, sum_us: 0, hist: null });
}
const counters = { open: 0, ready: 0, failed: 0, closed: 0, errors: 0, frames: 0, bytes: 0, malformed: 0 };

function now() {
  return Number(process.hrtime.bigint());
}

function delivery(conn, k, s, i, t, tRecv) {
  if (!(k >= 0 && k < MAX_STEPS && s >= 0 && s < 2 && i >= 0 && t > 0)) {
    counters.malformed++;
    return;
  }
  const st = steps[k];
  st.received++;
  const e = conn.expect[s];
  if (i >= e) {
    const shift = i + 1 - e;
    st.gaps += i - e;
    conn.seen[s] = shift >= 32 ? 1 : ((conn.seen[s] << shift) | 1) >>> 0;
    conn.expect[s] = i + 1;
  } else {
    const back = e - 1 - i;
    if (back < 32 && (conn.seen[s] >>> back) & 1) {
      st.dups++;
    } else {
      st.ooo++;
      if (st.gaps) st.gaps--;
      if (back < 32) conn.seen[s] = (conn.seen[s] | (1 << back)) >>> 0;
    }
  }
  const lat = tRecv > t ? tRecv - t : 0;
  if (lat > st.max_ns) st.max_ns = lat;
  st.sum_us += Math.floor(lat / 1000);
  if (!st.hist) st.hist = new Uint32Array(NBUCKETS);
  const b = Math.floor(lat / BUCKET_NS);
  st.hist[b < NBUCKETS ? b : NBUCKETS - 1]++;
}

// The checked prefix of a raw NATS payload: {"k":1,"s":0,"i":2,"t":3...
function parsePrefix(buf) {
  const out = [0, 0, 0, 0];
  let p = 0;
  for (let f = 0; f < 4; f++) {
    // skip to the ':' of the next field
    while (p < buf.length && buf[p] !== 58) p++;
    p++;
    let v = 0;
    let digits = 0;
    while (p < buf.length && buf[p] >= 48 && buf[p] <= 57) {
      v = v * 10 + (buf[p] - 48);
      p++;
      digits++;
    }
    if (!digits) return null;
    out[f] = v;
  }
  return out;
}

async function openNats(conn, spec) {
  const { wsconnect } = require("@nats-io/nats-core");
  const nc = await wsconnect({ servers: `ws://127.0.0.1:${port}`, reconnect: false, name: "recv.js" });
  counters.open++;
  for (const subject of spec.split(" ").filter((x) => x)) {
    nc.subscribe(subject, {
      callback: (err, msg) => {
        const t = now();
        if (err) {
          counters.errors++;
          return;
        }
        counters.frames++;
        counters.bytes += msg.data.length;
        const f = parsePrefix(msg.data);
        if (!f) counters.malformed++;
        else delivery(conn, f[0], f[1], f[2], f[3], t);
      },
    });
  }
  await nc.flush();
  nc.closed().then(() => {
    if (conn.ready) counters.ready--;
    counters.open--;
    counters.closed++;
  });
  conn.close = () => nc.close();
  conn.ready = true;
  counters.ready++;
}

function openSio(conn, spec) {
  const { io } = require("socket.io-client");
  return new Promise((resolve, reject) => {
    const socket = io(`http://127.0.0.1:${port}`, {
      transports: ["websocket"],
      auth: JSON.parse(spec),
      reconnection: false,
      forceNew: true,
    });
    conn.close = () => socket.close();
    socket.on("n", (d) => {
      const t = now();
      counters.frames++;
      if (!d || typeof d !== "object") counters.malformed++;
      else delivery(conn, d.k, d.s, d.i, d.t, t);
    });
    socket.on("connect", () => {
      counters.open++;
      conn.ready = true;
      counters.ready++;
      resolve();
    });
    socket.on("connect_error", (e) => reject(e));
    socket.on("disconnect", () => {
      if (conn.ready) {
        counters.ready--;
        counters.open--;
        counters.closed++;
        conn.ready = false;
      }
    });
  });
}

const conns = specs.map(() => ({ expect: [0, 0], seen: [0, 0], ready: false, close: null }));

async function connectAll() {
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < specs.length && Date.now() - started < connectTimeout) {
      const i = next++;
      try {
        if (proto === "nats") await openNats(conns[i], specs[i]);
        else await openSio(conns[i], specs[i]);
      } catch (e) {
        counters.failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: MAX_INFLIGHT }, worker));
  const line = {
    event: "connected",
    conns: specs.length,
    ready: counters.ready,
    failed: counters.failed,
    closed: counters.closed,
    errors: counters.errors,
    seconds: (Date.now() - started) / 1000,
  };
  process.stdout.write(JSON.stringify(line) + "\n");
}

function report() {
  const out = [];
  steps.forEach((s, k) => {
    if (!s.received && !s.gaps) return;
    out.push({
      step: k,
      received: s.received,
      dups: s.dups,
      out_of_order: s.ooo,
      gaps: s.gaps,
      max_ns: s.max_ns,
      sum_us: s.sum_us,
    });
  });
  const line = { event: "report", conns: specs.length, pings: 0, ...counters, steps: out };
  process.stdout.write(JSON.stringify(line) + "\n");
}

function hist(k) {
  const pairs = [];
  const h = k >= 0 && k < MAX_STEPS ? steps[k].hist : null;
  if (h) for (let i = 0; i < NBUCKETS; i++) if (h[i]) pairs.push([i, h[i]]);
  process.stdout.write(JSON.stringify({ event: "hist", step: k, bucket_ns: BUCKET_NS, hist: pairs }) + "\n");
}

function quit() {
  for (const c of conns) if (c.close) Promise.resolve(c.close()).catch(() => {});
  setTimeout(() => process.exit(0), 200).unref();
}

async function main() {
  if (proto === "nats") globalThis.WebSocket = require("ws");
  else if (proto !== "sio") {
    console.error("usage: node recv.js nats|sio PORT SPECFILE [CONNECT_TIMEOUT_S]");
    process.exit(2);
  }
  const rl = readline.createInterface({ input: process.stdin });
  rl.on("line", (line) => {
    if (line === "report") report();
    else if (line.startsWith("hist ")) hist(Number(line.slice(5)));
    else if (line === "quit") quit();
  });
  rl.on("close", quit);
  await connectAll();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
