/*
 * jspub: the JetStream publisher of `tidings bench` — the Python publisher's pacing and
 * envelopes at a few microseconds of CPU per notification instead of 100-300.
 *
 *   jspub PORT STREAM USER_SHARE MAX_INFLIGHT TARGETS_FILE [PAD] (JSON lines on stdin/stdout)
 *   jspub --dump N USER_SHARE TARGETS_FILE [PAD [redis:CHANNEL]]  (the first N operations of step 0)
 *
 * STREAM `-` is core NATS (the `nats` peer: nats-server's own WebSocket, no stream): each
 * message is `PUB <subject> <n>` of the data object alone, padded with ,"p":"xx..." to PAD
 * bytes more (the peers carry a Tidings line's size); no PubAcks, so a message counts as sent
 * once written, and a step ends with PING/PONG (the server has read everything) — what
 * nats-py's publish + flush does, at a few microseconds per message instead of Python's.
 *
 * STREAM `raw:NAME` is JetStream with the core payload (the `nats-js` peer: nats-server's own
 * WebSocket fed through a stream that republishes, Tidings' hop without Tidings): the HPUBs,
 * headers and PubAcks of the JetStream mode, each carrying the padded data object alone.
 *
 * STREAM `redis:CHANNEL` is Redis (the Socket.IO peers): each message is `PUBLISH CHANNEL
 * {"r":"<room>","d":<data>}` in RESP, the data object padded as above, SUBJECT being the room
 * (`tN` / `uN`); the same pipelining and the same PING/PONG at the end of a step. Each
 * PUBLISH answers how many subscribers got it: 0 (the server under test is not subscribed) is
 * counted as failed and named in "error".
 *
 * TARGETS_FILE, one line per room this process owns: `SLOT N SUBJECT ENVELOPE_HEX`, tenant
 * rooms (SLOT 0) first, then users (SLOT 1), each in the Python pacer's order. ENVELOPE is the
 * protobuf tidings.v1.Notification built once in Python (parse_request -> to_bytes) without
 * id and data; per message this program appends field 1 (id, a fresh UUIDv7-shaped string) and
 * field 10 (data, {"k":STEP,"s":SLOT,"i":INDEX,"t":NS} with t = CLOCK_MONOTONIC read just
 * before the message is built): a later occurrence of a scalar field wins in protobuf.
 *
 * Protocol (NATS client protocol on 127.0.0.1): CONNECT (headers, no echo, no verbose), one SUB
 * on `_INBOX.<random>.*`, then pipelined `HPUB <subject> <inbox>.<seq>` with the headers the
 * SDK's publish_many sends (Nats-Msg-Id = id, Nats-Expected-Stream). Each PubAck is matched to
 * its message by <seq>; at most MAX_INFLIGHT messages are unacknowledged at once. Only an
 * acknowledged, non-duplicate publish is owed to clients (counted in "tenant"/"user"); an error
 * reply, a duplicate or a PubAck missing for 10 s is counted ("failed", "duplicates",
 * "unacked") and named in "error", so the runner fails the step instead of calling it loss.
 *
 * Pacing is the Python publisher's: self-clocking, whatever is due by now goes out as one batch,
 * at most one batch per 2 ms tick (the rest of the step catches up in the next); targets in
 * round-robin order with `user_share` of the publishes to users; a gap-free index per target.
 *
 * stdin: {"cmd":"step","step":K,"rate":R,"seconds":S} -> one {"event":"done",...} line;
 * {"cmd":"quit"} or EOF ends. Server PINGs are answered between and during steps.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TICK_NS 2000000ULL
#define ACK_TIMEOUT_NS 10000000000ULL
#define TENANT_SLOT 0
#define USER_SLOT 1

typedef struct {
    int slot, n;
    char *subject;
    unsigned char *env;
    size_t env_len;
    uint64_t index;  /* next gap-free index (kept across steps, as in Python) */
    uint64_t acked;  /* this step */
} target_t;

typedef struct {
    uint64_t seq1; /* seq + 1; 0 = free */
    int target;
} flight_t;

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static target_t *targets;
static int ntargets, *rooms, nrooms, *users, nusers;
static double user_share, credit;
static uint64_t room_i, user_i;
static const char *stream = "TIDINGS";
static int core_mode;  /* STREAM "-" or "redis:...": no acks, PING/PONG per step */
static int redis_mode; /* STREAM "redis:CHANNEL": RESP PUBLISH on CHANNEL */
static int raw_mode;   /* STREAM "raw:NAME": JetStream, the padded data object as the payload */
static const char *channel;
static size_t pad;

static flight_t *flights;
static uint64_t cap_inflight = 1000, inflight, next_seq;
static char inbox[64];
static size_t inbox_len;
static uint64_t id_hi_rand, id_lo_rand, id_counter;

static int fd = -1;
static buf_t out, in;
static int got_pong;
static char fatal[512];

/* per step */
static uint64_t s_acked, s_failed, s_dups, s_unacked, s_user, s_last_ack;
static char s_error[400];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "jspub: %s\n", what);
    exit(1);
}

static void reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return;
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->len + extra) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) die("out of memory");
    b->cap = cap;
}

static void put(buf_t *b, const void *p, size_t n) {
    reserve(b, n);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static size_t put_u64(char *dst, uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do tmp[n++] = (char)('0' + v % 10); while ((v /= 10));
    for (size_t i = 0; i < n; i++) dst[i] = tmp[n - 1 - i];
    return n;
}

static size_t put_varint(unsigned char *dst, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) {
        dst[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    dst[n++] = (unsigned char)v;
    return n;
}

/* A UUIDv7-shaped id: 48-bit Unix ms, version 7, 34 random bits per process, variant 10,
 * a 40-bit counter — unique across processes and restarts within any duplicate window. */
static void make_id(char dst[36]) {
    static const char hex[] = "0123456789abcdef";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000ULL + (uint64_t)ts.tv_nsec / 1000000ULL;
    uint64_t hi = (ms << 16) | 0x7000ULL | (id_hi_rand & 0xfffULL);
    uint64_t lo = (2ULL << 62) | ((id_lo_rand & 0x3fffffULL) << 40) |
                  (id_counter++ & 0xffffffffffULL);
    unsigned char bytes[16];
    for (int i = 0; i < 8; i++) {
        bytes[i] = (unsigned char)(hi >> (56 - 8 * i));
        bytes[8 + i] = (unsigned char)(lo >> (56 - 8 * i));
    }
    size_t k = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) dst[k++] = '-';
        dst[k++] = hex[bytes[i] >> 4];
        dst[k++] = hex[bytes[i] & 15];
    }
}

/* The Python Pacer's next target: user_share of the publishes to users, else tenant rooms. */
static int next_target(void) {
    credit += user_share;
    if (credit >= 1.0 && nusers) {
        credit -= 1.0;
        return users[user_i++ % (uint64_t)nusers];
    }
    return rooms[room_i++ % (uint64_t)nrooms];
}

/* The checked data object of one message, padded to PAD more bytes: its length, and the
 * unpadded head (`{"k":..,"t":NS`) in `data`; put_data appends the whole object. */
static size_t data_head(target_t *t, int step, unsigned char *data) {
    size_t dn = 0;
    memcpy(data, "{\"k\":", 5), dn = 5;
    dn += put_u64((char *)data + dn, (uint64_t)step);
    memcpy(data + dn, ",\"s\":", 5), dn += 5;
    dn += put_u64((char *)data + dn, (uint64_t)t->slot);
    memcpy(data + dn, ",\"i\":", 5), dn += 5;
    dn += put_u64((char *)data + dn, t->index++);
    memcpy(data + dn, ",\"t\":", 5), dn += 5;
    dn += put_u64((char *)data + dn, now_ns());
    return dn;
}

static size_t data_size(size_t dn) { return dn + (pad ? 6 + pad + 2 : 1); } /* ,"p":"xx.."} or } */

static void put_data(const unsigned char *data, size_t dn) {
    put(&out, data, dn);
    if (pad) {
        put(&out, ",\"p\":\"", 6);
        reserve(&out, pad);
        memset(out.p + out.len, 'x', pad);
        out.len += pad;
        put(&out, "\"}", 2);
    } else {
        put(&out, "}", 1);
    }
}

/* Append one HPUB for target t to `out`, as message `seq` of step `step`. */
static void build(int ti, int step, uint64_t seq) {
    target_t *t = &targets[ti];
    char id[36], hdr[256], line[512];
    unsigned char data[129];
    make_id(id);
    size_t dn = data_head(t, step, data);

    int hn = snprintf(hdr, sizeof hdr,
                      "NATS/1.0\r\nNats-Msg-Id: %.36s\r\nNats-Expected-Stream: %s\r\n\r\n", id,
                      stream);
    if (raw_mode) {
        size_t total = (size_t)hn + data_size(dn);
        int ln = snprintf(line, sizeof line, "HPUB %s %s%llu %d %zu\r\n", t->subject, inbox,
                          (unsigned long long)seq, hn, total);
        reserve(&out, (size_t)ln + total + 2);
        put(&out, line, (size_t)ln);
        put(&out, hdr, (size_t)hn);
        put_data(data, dn);
        put(&out, "\r\n", 2);
        return;
    }
    data[dn++] = '}';
    unsigned char tail[2 + 36 + 12 + 128];
    size_t tn = 0;
    tail[tn++] = 0x0a; /* field 1 (id), length-delimited */
    tn += put_varint(tail + tn, 36);
    memcpy(tail + tn, id, 36), tn += 36;
    tail[tn++] = 0x52; /* field 10 (data), length-delimited */
    tn += put_varint(tail + tn, dn);
    memcpy(tail + tn, data, dn), tn += dn;

    size_t total = (size_t)hn + t->env_len + tn;
    int ln = snprintf(line, sizeof line, "HPUB %s %s%llu %d %zu\r\n", t->subject, inbox,
                      (unsigned long long)seq, hn, total);
    reserve(&out, (size_t)ln + total + 2);
    put(&out, line, (size_t)ln);
    put(&out, hdr, (size_t)hn);
    put(&out, t->env, t->env_len);
    put(&out, tail, tn);
    put(&out, "\r\n", 2);
}

/* Core NATS: `PUB <subject> <n>` of the data object, padded to PAD more bytes. */
static void build_core(int ti, int step) {
    target_t *t = &targets[ti];
    char line[640];
    unsigned char data[128];
    size_t dn = data_head(t, step, data);
    size_t total = data_size(dn);
    int ln = snprintf(line, sizeof line, "PUB %s %zu\r\n", t->subject, total);
    reserve(&out, (size_t)ln + total + 2);
    put(&out, line, (size_t)ln);
    put_data(data, dn);
    put(&out, "\r\n", 2);
}

/* Redis: `PUBLISH <channel> {"r":"<room>","d":<data object>}` as a RESP array. */
static void build_redis(int ti, int step) {
    target_t *t = &targets[ti];
    char line[1200];
    unsigned char data[128];
    size_t dn = data_head(t, step, data);
    size_t sl = strlen(t->subject);
    size_t total = 6 + sl + 6 + data_size(dn) + 1; /* {"r":"ROOM","d":DATA} */
    int ln = snprintf(line, sizeof line, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n{\"r\":\"%s\",\"d\":",
                      strlen(channel), channel, total, t->subject);
    reserve(&out, (size_t)ln + total + 2);
    put(&out, line, (size_t)ln);
    put_data(data, dn);
    put(&out, "}\r\n", 3);
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static void load_targets(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open the targets file");
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    while ((n = getline(&line, &lcap, f)) > 0) {
        if (line[n - 1] == '\n') line[--n] = 0;
        if (!n) continue;
        int slot, num, off = 0;
        char subject[512];
        if (sscanf(line, "%d %d %511s %n", &slot, &num, subject, &off) != 3 || !off)
            die("bad targets line");
        const char *hx = line + off;
        size_t hl = strlen(hx);
        if (hl % 2) die("odd envelope hex");
        targets = realloc(targets, sizeof *targets * (size_t)(ntargets + 1));
        target_t *t = &targets[ntargets];
        memset(t, 0, sizeof *t);
        t->slot = slot;
        t->n = num;
        t->subject = strdup(subject);
        t->env_len = hl / 2;
        t->env = malloc(t->env_len + 1);
        for (size_t i = 0; i < t->env_len; i++) {
            int a = hexval(hx[2 * i]), b = hexval(hx[2 * i + 1]);
            if (a < 0 || b < 0) die("bad envelope hex");
            t->env[i] = (unsigned char)(a * 16 + b);
        }
        if (slot == TENANT_SLOT) {
            rooms = realloc(rooms, sizeof *rooms * (size_t)(nrooms + 1));
            rooms[nrooms++] = ntargets;
        } else {
            users = realloc(users, sizeof *users * (size_t)(nusers + 1));
            users[nusers++] = ntargets;
        }
        ntargets++;
    }
    free(line);
    fclose(f);
    if (!nrooms) die("no tenant room in the targets file");
}

static void seed_ids(void) {
    uint64_t r[2];
    if (getrandom(r, sizeof r, 0) != sizeof r) die("getrandom failed");
    id_hi_rand = r[0];
    id_lo_rand = r[1];
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rb[22];
    if (getrandom(rb, sizeof rb, 0) != sizeof rb) die("getrandom failed");
    memcpy(inbox, "_INBOX.", 7);
    for (int i = 0; i < 22; i++) inbox[7 + i] = alnum[rb[i] % 62];
    inbox[29] = '.';
    inbox[30] = 0;
    inbox_len = 30;
}

/* --- the connection ------------------------------------------------------------------- */

static int flush_out(void) {
    size_t off = 0;
    while (off < out.len) {
        ssize_t w = send(fd, out.p + off, out.len - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) break;
            snprintf(fatal, sizeof fatal, "write to nats-server: %s", strerror(errno));
            return -1;
        }
        off += (size_t)w;
    }
    memmove(out.p, out.p + off, out.len - off);
    out.len -= off;
    return 0;
}

static void note_error(const char *what, const unsigned char *p, size_t n) {
    if (s_error[0]) return;
    snprintf(s_error, sizeof s_error, "%s: %.*s", what, (int)(n > 300 ? 300 : n), p);
    for (char *c = s_error; *c; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) *c = '\'';
}

/* One reply on the inbox: subject token `seq`, body `p` (JSON), `status` != 0 for HMSG status. */
static void on_reply(const char *subj, size_t sl, const unsigned char *p, size_t n, int status) {
    if (sl <= inbox_len || memcmp(subj, inbox, inbox_len) != 0) return;
    uint64_t seq = 0;
    for (size_t i = inbox_len; i < sl; i++) {
        if (subj[i] < '0' || subj[i] > '9') return;
        seq = seq * 10 + (uint64_t)(subj[i] - '0');
    }
    flight_t *f = &flights[seq % cap_inflight];
    if (f->seq1 != seq + 1) return; /* late answer of an expired publish */
    f->seq1 = 0;
    inflight--;
    s_last_ack = now_ns();
    if (status) {
        s_failed++;
        note_error(status == 503 ? "no responders (no stream)" : "status reply", p, n);
    } else if (memmem(p, n, "\"error\"", 7)) {
        s_failed++;
        note_error("JetStream refused a publish", p, n);
    } else if (memmem(p, n, "\"duplicate\":true", 16)) {
        s_dups++; /* the id was stored before: this publish is owed to no one */
        note_error("JetStream called a fresh id a duplicate", p, n);
    } else {
        s_acked++;
        targets[f->target].acked++;
        if (targets[f->target].slot == USER_SLOT) s_user++;
    }
}

static int split(char *line, char **tok, int max) {
    int k = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t", &save); t && k < max; t = strtok_r(NULL, " \t", &save))
        tok[k++] = t;
    return k;
}

/* Parse every complete server operation in `in`; -1 on a fatal one. */
static int process_in(void) {
    size_t pos = 0;
    while (pos < in.len) {
        unsigned char *s = in.p + pos;
        unsigned char *nl = memmem(s, in.len - pos, "\r\n", 2);
        if (!nl) break;
        size_t ll = (size_t)(nl - s);
        char line[1024];
        if (ll >= sizeof line) {
            if (ll > 1 << 20) {
                snprintf(fatal, sizeof fatal, "server line too long");
                return -1;
            }
            if (!memcmp(s, "INFO", 4)) { /* a long INFO: skip it */
                pos += ll + 2;
                continue;
            }
            snprintf(fatal, sizeof fatal, "unexpected long line from nats-server");
            return -1;
        }
        memcpy(line, s, ll);
        line[ll] = 0;
        if (redis_mode) { /* `:N` per PUBLISH (its receivers), `+PONG`, or `-ERR ...` */
            if (line[0] == ':') {
                if (!strcmp(line, ":0")) {
                    s_failed++;
                    note_error("no subscriber on the Redis channel", s, ll);
                }
            } else if (!strcmp(line, "+PONG")) {
                got_pong = 1;
            } else if (line[0] == '-') {
                snprintf(fatal, sizeof fatal, "redis-server said %.400s", line);
                return -1;
            }
            pos += ll + 2;
            continue;
        }
        if (!strncmp(line, "MSG ", 4) || !strncmp(line, "HMSG ", 5)) {
            int h = line[0] == 'H';
            char *tok[6];
            int k = split(line, tok, 6);
            if (k < 4 + h) {
                snprintf(fatal, sizeof fatal, "bad %s line", tok[0]);
                return -1;
            }
            size_t total = (size_t)strtoull(tok[k - 1], NULL, 10);
            size_t hl = h ? (size_t)strtoull(tok[k - 2], NULL, 10) : 0;
            if (in.len - pos < ll + 2 + total + 2) break; /* body not complete yet */
            unsigned char *body = s + ll + 2;
            int status = 0;
            if (h && hl >= 12 && !memcmp(body, "NATS/1.0 ", 9)) status = atoi((char *)body + 9);
            on_reply(tok[1], strlen(tok[1]), body + hl, total - hl, status);
            pos += ll + 2 + total + 2;
            continue;
        }
        if (!strcmp(line, "PING")) {
            put(&out, "PONG\r\n", 6);
        } else if (!strcmp(line, "PONG")) {
            got_pong = 1;
        } else if (!strncmp(line, "-ERR", 4)) {
            snprintf(fatal, sizeof fatal, "nats-server said %.400s", line);
            return -1;
        } /* INFO, +OK: nothing to do */
        pos += ll + 2;
    }
    memmove(in.p, in.p + pos, in.len - pos);
    in.len -= pos;
    return 0;
}

static int read_in(void) {
    for (;;) {
        reserve(&in, 65536);
        ssize_t r = recv(fd, in.p + in.len, in.cap - in.len, MSG_DONTWAIT);
        if (r > 0) {
            in.len += (size_t)r;
            continue;
        }
        if (r == 0) {
            snprintf(fatal, sizeof fatal, "nats-server closed the connection");
            return -1;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        snprintf(fatal, sizeof fatal, "read from nats-server: %s", strerror(errno));
        return -1;
    }
    return process_in();
}

/* Wait up to `ns` for the socket (and stdin when `with_stdin`); 1 when stdin is readable.
 * `lazy`: wake for the timer only and then read whatever PubAcks arrived meanwhile — while
 * the window has room, waking once per tick instead of once per PubAck halves our CPU. */
static int wait_io(uint64_t ns, int with_stdin, int lazy) {
    short ev = (short)((lazy ? 0 : POLLIN) | (out.len ? POLLOUT : 0));
    struct pollfd p[2] = {{fd, ev, 0}, {0, POLLIN, 0}};
    struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
    int r = ppoll(p, with_stdin ? 2 : 1, &ts, NULL);
    if (r < 0 && errno != EINTR) {
        snprintf(fatal, sizeof fatal, "poll: %s", strerror(errno));
        return -1;
    }
    if ((lazy || (r > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))) && read_in() < 0)
        return -1;
    if (out.len && flush_out() < 0) return -1;
    return with_stdin && (p[1].revents & (POLLIN | POLLHUP)) ? 1 : 0;
}

static void connect_server(int port) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        die("cannot connect to nats-server");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char conn[512];
    if (redis_mode) { /* no handshake: an inline PING answers +PONG */
        put(&out, "PING\r\n", 6);
        uint64_t deadline = now_ns() + 10000000000ULL;
        while (!got_pong) {
            uint64_t now = now_ns();
            if (now > deadline) die("no PONG from redis-server within 10 s");
            if (wait_io(deadline - now, 0, 0) < 0) die(fatal);
        }
        return;
    }
    int n = snprintf(conn, sizeof conn,
                     "CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,"
                     "\"no_responders\":true,\"echo\":false,\"lang\":\"c\","
                     "\"version\":\"tidings-bench\",\"protocol\":1,\"name\":\"jspub\"}\r\n"
                     "SUB %s* 1\r\nPING\r\n",
                     inbox);
    put(&out, conn, (size_t)n);
    uint64_t deadline = now_ns() + 10000000000ULL;
    while (!got_pong) { /* INFO first, then our PONG: CONNECT and SUB were accepted */
        uint64_t now = now_ns();
        if (now > deadline) die("no PONG from nats-server within 10 s");
        if (wait_io(deadline - now, 0, 0) < 0) die(fatal);
    }
}

/* --- a step ------------------------------------------------------------------------------- */

static void print_done(int step, uint64_t sent, uint64_t elapsed_ns, double cpu, uint64_t batches,
                       uint64_t max_batch, uint64_t max_inflight) {
    double el = (double)elapsed_ns / 1e9;
    if (el < 1e-9) el = 1e-9;
    printf("{\"event\":\"done\",\"step\":%d,\"publisher\":\"c\",\"sent\":%llu,\"acked\":%llu,"
           "\"failed\":%llu,\"duplicates\":%llu,\"unacked\":%llu,\"tenant\":{",
           step, (unsigned long long)sent, (unsigned long long)s_acked,
           (unsigned long long)s_failed, (unsigned long long)s_dups,
           (unsigned long long)s_unacked);
    int first = 1;
    for (int i = 0; i < nrooms; i++) {
        target_t *t = &targets[rooms[i]];
        if (!t->acked) continue;
        printf("%s\"%d\":%llu", first ? "" : ",", t->n, (unsigned long long)t->acked);
        first = 0;
    }
    printf("},\"user\":%llu,\"elapsed_s\":%.4f,\"publish_rate\":%.1f,\"cpu_pct\":%.1f,"
           "\"batches\":%llu,\"max_batch\":%llu,\"max_inflight\":%llu",
           (unsigned long long)s_user, el, (double)s_acked / el, 100.0 * cpu / el,
           (unsigned long long)batches, (unsigned long long)max_batch,
           (unsigned long long)max_inflight);
    if (s_error[0]) printf(",\"error\":\"%s\"", s_error);
    printf("}\n");
    fflush(stdout);
}

/* Core NATS and Redis: the same pacing; a message is owed once written, the step ends on
 * PING/PONG (the server has handled everything before it). */
static void run_step_core(int step, double rate, double seconds) {
    s_acked = s_failed = s_dups = s_unacked = s_user = 0;
    s_error[0] = 0;
    for (int i = 0; i < ntargets; i++) targets[i].acked = 0;
    uint64_t total = rate > 0 && seconds > 0 ? (uint64_t)(rate * seconds) : 0;
    uint64_t sent = 0, batches = 0, max_batch = 0;
    double cpu0 = cpu_s();
    uint64_t start = now_ns(), next_batch = start;
    while (sent < total && !fatal[0]) {
        uint64_t now = now_ns();
        uint64_t due = (uint64_t)(rate * (double)(now - start) / 1e9) + 1;
        due = (due > total ? total : due) - sent;
        if ((int64_t)due > 0 && (now >= next_batch || due >= total - sent)) {
            for (uint64_t k = 0; k < due; k++) {
                int ti = next_target();
                if (redis_mode) build_redis(ti, step);
                else build_core(ti, step);
                targets[ti].acked++;
                s_acked++;
                if (targets[ti].slot == USER_SLOT) s_user++;
            }
            next_batch = now + TICK_NS;
            sent += due;
            batches++;
            if (due > max_batch) max_batch = due;
            if (flush_out() < 0) break;
            continue;
        }
        /* the next message is due when floor(rate * t) reaches `sent` */
        uint64_t due_at = start + (uint64_t)((double)sent / rate * 1e9) + 1000;
        if (due_at < next_batch && total - sent > 1) due_at = next_batch;
        now = now_ns();
        if (wait_io(due_at > now ? due_at - now : 0, 0, 1) < 0) break;
    }
    got_pong = 0;
    put(&out, "PING\r\n", 6);
    uint64_t deadline = now_ns() + ACK_TIMEOUT_NS;
    while (!fatal[0] && !got_pong) {
        uint64_t now = now_ns();
        if (now > deadline) {
            snprintf(s_error, sizeof s_error, "no PONG within 10 s after the step");
            break;
        }
        if (wait_io(deadline - now, 0, 0) < 0) break;
    }
    uint64_t end = now_ns();
    if (fatal[0]) {
        printf("{\"event\":\"error\",\"step\":%d,\"publisher\":\"c\",\"error\":\"%s\"}\n", step,
               fatal);
        fflush(stdout);
        exit(1);
    }
    print_done(step, sent, end - start, cpu_s() - cpu0, batches, max_batch, 0);
}

static void run_step(int step, double rate, double seconds) {
    if (core_mode) {
        run_step_core(step, rate, seconds);
        return;
    }
    s_acked = s_failed = s_dups = s_unacked = s_user = 0;
    s_error[0] = 0;
    for (int i = 0; i < ntargets; i++) targets[i].acked = 0;
    uint64_t total = rate > 0 && seconds > 0 ? (uint64_t)(rate * seconds) : 0;
    uint64_t sent = 0, batches = 0, max_batch = 0, max_inflight = 0;
    double cpu0 = cpu_s();
    uint64_t start = now_ns(), next_batch = start;
    s_last_ack = start;
    for (;;) {
        uint64_t now = now_ns();
        if (sent < total) {
            uint64_t due = (uint64_t)(rate * (double)(now - start) / 1e9) + 1;
            due = (due > total ? total : due) - sent;
            if ((int64_t)due > 0 && (now >= next_batch || due >= total - sent)) {
                uint64_t k = 0;
                while (k < due && flights[next_seq % cap_inflight].seq1 == 0) {
                    int ti = next_target();
                    flight_t *f = &flights[next_seq % cap_inflight];
                    f->seq1 = next_seq + 1;
                    f->target = ti;
                    if (!inflight) s_last_ack = now; /* the ack clock starts with the first */
                    inflight++;
                    build(ti, step, next_seq++);
                    k++;
                }
                if (k) {
                    next_batch = now + TICK_NS;
                    sent += k;
                    batches++;
                    if (k > max_batch) max_batch = k;
                    if (inflight > max_inflight) max_inflight = inflight;
                    if (flush_out() < 0) break;
                }
            }
        } else if (!inflight) {
            break;
        }
        now = now_ns();
        if (inflight && now - s_last_ack > ACK_TIMEOUT_NS) {
            for (uint64_t i = 0; i < cap_inflight; i++)
                if (flights[i].seq1) flights[i].seq1 = 0, s_unacked++;
            inflight = 0;
            if (!s_error[0])
                snprintf(s_error, sizeof s_error, "%llu publishes unacknowledged after 10 s",
                         (unsigned long long)s_unacked);
            break;
        }
        uint64_t wake = s_last_ack + ACK_TIMEOUT_NS;
        int lazy = sent < total && flights[next_seq % cap_inflight].seq1 == 0;
        if (lazy) {
            /* the next message is due when floor(rate * t) reaches `sent` */
            uint64_t due_at = start + (uint64_t)((double)sent / rate * 1e9) + 1000;
            if (due_at < next_batch && total - sent > 1) due_at = next_batch;
            if (due_at < wake) wake = due_at;
        }
        if (wait_io(wake > now ? wake - now : 0, 0, lazy) < 0) break;
    }
    uint64_t end = now_ns();
    if (fatal[0]) {
        printf("{\"event\":\"error\",\"step\":%d,\"publisher\":\"c\",\"error\":\"%s\"}\n", step,
               fatal);
        fflush(stdout);
        exit(1);
    }
    print_done(step, sent, end - start, cpu_s() - cpu0, batches, max_batch, max_inflight);
}

/* The number after `"key":` (the key with its colon: "step" is also the value of "cmd"). */
static double json_num(const char *line, const char *key) {
    const char *p = strstr(line, key);
    if (!p) return -1;
    p += strlen(key);
    while (*p == ' ') p++;
    return strtod(p, NULL);
}

static void serve(void) {
    printf("{\"event\":\"ready\",\"publisher\":\"c\"}\n");
    fflush(stdout);
    char *line = NULL;
    size_t lcap = 0;
    for (;;) {
        int r;
        while ((r = wait_io(1000000000ULL, 1, 0)) == 0) {
        }
        if (r < 0) die(fatal);
        if (getline(&line, &lcap, stdin) <= 0) break;
        if (strstr(line, "\"quit\"")) break;
        if (!strstr(line, "\"step\":")) continue;
        run_step((int)json_num(line, "\"step\":"), json_num(line, "\"rate\":"),
                 json_num(line, "\"seconds\":"));
    }
    free(line);
}

int main(int argc, char **argv) {
    setvbuf(stdin, NULL, _IONBF, 0); /* poll() on fd 0 must see every line stdio has not */
    seed_ids();
    if (argc >= 5 && argc <= 7 && !strcmp(argv[1], "--dump")) {
        long n = atol(argv[2]);
        user_share = atof(argv[3]);
        load_targets(argv[4]);
        cap_inflight = 1;
        if (argc >= 6) { /* a PAD argument: the core NATS operations (or Redis: a channel) */
            core_mode = 1;
            pad = (size_t)atol(argv[5]);
        }
        if (argc == 7) {
            if (strncmp(argv[6], "redis:", 6)) die("the 7th --dump argument is redis:CHANNEL");
            redis_mode = 1;
            channel = argv[6] + 6;
        }
        for (long i = 0; i < n; i++) {
            if (redis_mode) build_redis(next_target(), 0);
            else if (core_mode) build_core(next_target(), 0);
            else build(next_target(), 0, (uint64_t)i);
        }
        fwrite(out.p, 1, out.len, stdout);
        return 0;
    }
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: jspub PORT STREAM|raw:STREAM|-|redis:CHANNEL USER_SHARE MAX_INFLIGHT "
                        "TARGETS_FILE [PAD]\n"
                        "       jspub --dump N USER_SHARE TARGETS_FILE [PAD [redis:CHANNEL]]\n");
        return 2;
    }
    stream = argv[2];
    raw_mode = !strncmp(stream, "raw:", 4);
    if (raw_mode) stream += 4;
    redis_mode = !strncmp(stream, "redis:", 6);
    channel = stream + 6;
    if (redis_mode && (!*channel || strlen(channel) > 200)) die("bad Redis channel");
    core_mode = redis_mode || !strcmp(stream, "-");
    if (!core_mode && (!*stream || strlen(stream) > 64)) die("bad stream name");
    pad = argc == 7 ? (size_t)atol(argv[6]) : 0;
    if (pad > 4096) die("PAD is at most 4096");
    user_share = atof(argv[3]);
    cap_inflight = (uint64_t)atol(argv[4]);
    if (cap_inflight < 1) die("MAX_INFLIGHT must be at least 1");
    load_targets(argv[5]);
    flights = calloc(cap_inflight, sizeof *flights);
    connect_server(atoi(argv[1]));
    serve();
    return 0;
}
