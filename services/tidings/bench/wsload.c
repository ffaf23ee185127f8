/*
 * wsload: the load client of `tidings bench` — one single-threaded epoll process holding many
 * WebSocket connections, speaking one of three protocols, checking every delivery.
 *
 * Written in C (after benchmarks/transport/wsclient.c) so the generator is not what limits a
 * Python server; `tidings bench` runs several of these, pinned to the generator's core.
 *
 *   wsload PROTO PORT SPECFILE [CONNECT_TIMEOUT_S]
 *
 * PROTO: tidings  GET /ws, subprotocol tidings.v1.json; sends the spec line as its first text
 *                 frame (a hello with the connection's JWT); ready on the `synced` frame.
 *        nats     GET / on nats-server's WebSocket listener; sends CONNECT, then one SUB per
 *                 subject on the spec line (space separated), then PING; ready on PONG.
 *                 Deliveries are MSG, or HMSG when a stream republished them (nats-js).
 *        sio      GET /socket.io/?EIO=4&transport=websocket; answers the Engine.IO open packet
 *                 with `40<spec line>` (the Socket.IO auth object); ready on the `40` answer.
 * SPECFILE: one line per connection (that many connections are opened).
 *
 * Every notification carries, in its data object, {"k":STEP,"s":SLOT,"i":INDEX,"t":NS,...}:
 * the sweep step, which of the connection's rooms it went to (0 tenant/room, 1 user), the
 * publisher's gap-free index within that room, and the publish time (CLOCK_MONOTONIC ns, the
 * same clock this process reads on receipt). Per connection and slot it counts gaps, duplicates
 * and out-of-order arrivals (a 64-deep window tells the last two apart); per step it histograms
 * latency at 20 us resolution.
 *
 * stdin, one command a line: `report` -> one JSON line of counters (connections; frames, bytes
 * and reads since start: deliveries per read shows how much the server put in one write) and
 * per-step counters; `hist K` -> the
 * sparse latency histogram of step K ([[bucket, count], ...], bucket = 20 us); `quit`.
 * On start it prints {"event":"connected",...} once every connection is ready (or failed, or
 * the connect timeout passed). Sockets close with RST (SO_LINGER 0): a sweep opens and closes
 * tens of thousands of loopback connections, and TIME_WAIT would exhaust the ephemeral ports.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STEPS 64
#define SLOTS 2
#define BUCKET_NS 20000ULL
#define NBUCKETS 1000000ULL /* 20 s; later arrivals go to the last bucket */
#define MAX_INFLIGHT 64
#define INIT_BUF 4096

enum proto { P_TIDINGS, P_NATS, P_SIO };
enum state { ST_CONNECTING, ST_UPGRADE, ST_HELLO, ST_READY, ST_CLOSED };

typedef struct {
    int fd;
    unsigned char st;
    unsigned char *buf; /* raw bytes from the socket */
    uint32_t len, cap;
    unsigned char *nbuf; /* nats: the protocol byte stream carried by WS frames */
    uint32_t nlen, ncap;
    int64_t expect[SLOTS];
    uint64_t seen[SLOTS]; /* bit j: index expect-1-j arrived */
    char *spec;
} conn_t;

typedef struct {
    uint64_t received, dups, ooo, gaps, max_ns, sum_us;
    uint32_t *hist;
} step_t;

static enum proto proto;
static conn_t *conns;
static int nconns, port, epfd;
static step_t steps[MAX_STEPS];
static uint64_t n_open, n_ready, n_failed, n_closed, n_errors, frames, bytes_in, pings,
    malformed, reads;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void close_conn(conn_t *c, int failed) {
    if (c->st == ST_CLOSED) return;
    if (failed) n_failed++;
    else n_closed++;
    if (c->st == ST_READY) n_ready--;
    if (c->st >= ST_HELLO && c->st != ST_CLOSED) n_open--;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->st = ST_CLOSED;
    free(c->buf);
    free(c->nbuf);
    c->buf = c->nbuf = NULL;
}

static void write_all(conn_t *c, const unsigned char *p, size_t n) {
    int spins = 0;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if ((errno == EAGAIN || errno == EINTR) && ++spins < 100000) continue;
            close_conn(c, 1);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* A masked client frame (RFC 6455 5.3) of any small size. */
static void send_frame(conn_t *c, int opcode, const unsigned char *payload, size_t n) {
    static const unsigned char key[4] = {0x37, 0xfa, 0x21, 0x3d};
    unsigned char stackbuf[1024];
    size_t h = n < 126 ? 2 : 4;
    if (n >= 65536) return;
    unsigned char *out = h + 4 + n <= sizeof stackbuf ? stackbuf : malloc(h + 4 + n);
    out[0] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        out[1] = (unsigned char)(0x80 | n);
    } else {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(n >> 8);
        out[3] = (unsigned char)(n & 0xff);
    }
    memcpy(out + h, key, 4);
    for (size_t i = 0; i < n; i++) out[h + 4 + i] = payload[i] ^ key[i & 3];
    write_all(c, out, h + 4 + n);
    if (out != stackbuf) free(out);
}

static void start_connect(conn_t *c) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) {
        c->st = ST_CLOSED;
        n_failed++;
        return;
    }
    int one = 1;
    struct linger lg = {1, 0};
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    c->st = ST_CONNECTING;
    c->cap = INIT_BUF;
    c->buf = malloc(c->cap);
    c->len = 0;
    int r = connect(c->fd, (struct sockaddr *)&a, sizeof a);
    if (r < 0 && errno != EINPROGRESS) {
        close_conn(c, 1);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void on_connected(conn_t *c) {
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
    if (err) {
        close_conn(c, 1);
        return;
    }
    const char *path = proto == P_TIDINGS ? "/ws"
                       : proto == P_NATS  ? "/"
                                          : "/socket.io/?EIO=4&transport=websocket";
    const char *sub = proto == P_TIDINGS ? "Sec-WebSocket-Protocol: tidings.v1.json\r\n" : "";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n%sOrigin: http://127.0.0.1\r\n\r\n",
                     path, port, sub);
    c->st = ST_UPGRADE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    write_all(c, (unsigned char *)req, (size_t)n);
}

static void mark_ready(conn_t *c) {
    if (c->st == ST_HELLO) {
        c->st = ST_READY;
        n_ready++;
    }
}

static inline int64_t parse_int(const unsigned char **pp, const unsigned char *end) {
    const unsigned char *p = *pp;
    int64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (*p - '0');
        p++;
        digits++;
    }
    *pp = p;
    return digits ? v : -1;
}

static inline int lit(const unsigned char **pp, const unsigned char *end, const char *s, size_t n) {
    if ((size_t)(end - *pp) < n || memcmp(*pp, s, n) != 0) return 0;
    *pp += n;
    return 1;
}

/* One delivery: p points at {"k":... inside the notification's data object. */
static void on_delivery(conn_t *c, const unsigned char *p, const unsigned char *end,
                        uint64_t t_recv) {
    int64_t k, s, i, t;
    if (!lit(&p, end, "{\"k\":", 5) || (k = parse_int(&p, end)) < 0) goto bad;
    if (!lit(&p, end, ",\"s\":", 5) || (s = parse_int(&p, end)) < 0) goto bad;
    if (!lit(&p, end, ",\"i\":", 5) || (i = parse_int(&p, end)) < 0) goto bad;
    if (!lit(&p, end, ",\"t\":", 5) || (t = parse_int(&p, end)) < 0) goto bad;
    if (k >= MAX_STEPS || s >= SLOTS) goto bad;
    step_t *st = &steps[k];
    st->received++;
    int64_t e = c->expect[s];
    if (i >= e) {
        uint64_t shift = (uint64_t)(i + 1 - e);
        st->gaps += (uint64_t)(i - e);
        c->seen[s] = (shift >= 64 ? 0 : c->seen[s] << shift) | 1;
        c->expect[s] = i + 1;
    } else {
        uint64_t back = (uint64_t)(e - 1 - i);
        if (back < 64 && (c->seen[s] >> back) & 1) {
            st->dups++;
        } else {
            st->ooo++;
            if (st->gaps) st->gaps--;
            if (back < 64) c->seen[s] |= 1ULL << back;
        }
    }
    uint64_t lat = t_recv > (uint64_t)t ? t_recv - (uint64_t)t : 0;
    if (lat > st->max_ns) st->max_ns = lat;
    st->sum_us += lat / 1000;
    if (!st->hist) st->hist = calloc(NBUCKETS, sizeof(uint32_t));
    uint64_t b = lat / BUCKET_NS;
    st->hist[b < NBUCKETS ? b : NBUCKETS - 1]++;
    return;
bad:
    malformed++;
}

static const unsigned char *find(const unsigned char *p, const unsigned char *end, const char *s) {
    return memmem(p, (size_t)(end - p), s, strlen(s));
}

/* tidings: a text frame holds one or more JSON objects separated by '\n'. */
static void on_tidings_text(conn_t *c, const unsigned char *p, size_t n, uint64_t t) {
    const unsigned char *end = p + n;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *e = nl ? nl : end;
        if (e - p > 22 && memcmp(p, "{\"type\":\"notification\"", 22) == 0) {
            const unsigned char *d = find(p, e, "\"data\":{\"k\":");
            if (d) on_delivery(c, d + 7, e, t);
            else malformed++;
        } else if (find(p, e, "\"type\":\"synced\"")) {
            mark_ready(c);
        } else if (find(p, e, "\"type\":\"error\"")) {
            n_errors++;
        }
        p = nl ? nl + 1 : end;
    }
}

/* Engine.IO: "2" ping, "40{...}" connected, "42[\"n\",{...}]" an event. */
static void on_sio_text(conn_t *c, const unsigned char *p, size_t n, uint64_t t) {
    if (n == 0) return;
    if (p[0] == '2' && n == 1) {
        pings++;
        send_frame(c, 1, (const unsigned char *)"3", 1);
    } else if (p[0] == '0') { /* open packet: connect to the default namespace */
        size_t sl = strlen(c->spec);
        unsigned char *msg = malloc(sl + 2);
        msg[0] = '4';
        msg[1] = '0';
        memcpy(msg + 2, c->spec, sl);
        send_frame(c, 1, msg, sl + 2);
        free(msg);
    } else if (n >= 2 && p[0] == '4' && p[1] == '2') {
        const unsigned char *d = find(p, p + n, "{\"k\":");
        if (d) on_delivery(c, d, p + n, t);
        else malformed++;
    } else if (n >= 2 && p[0] == '4' && p[1] == '0') {
        mark_ready(c);
    } else if (n >= 2 && p[0] == '4' && p[1] == '4') {
        n_errors++;
    }
}

/* NATS over WebSocket: frames carry a byte stream of INFO/MSG/PING/PONG/+OK/-ERR. */
static void on_nats_bytes(conn_t *c, const unsigned char *p, size_t n, uint64_t t) {
    if (c->ncap - c->nlen < n) {
        while (c->ncap - c->nlen < n) c->ncap = c->ncap ? c->ncap * 2 : 4096;
        c->nbuf = realloc(c->nbuf, c->ncap);
    }
    memcpy(c->nbuf + c->nlen, p, n);
    c->nlen += (uint32_t)n;
    size_t off = 0;
    for (;;) {
        unsigned char *b = c->nbuf + off, *end = c->nbuf + c->nlen;
        unsigned char *crlf = memmem(b, (size_t)(end - b), "\r\n", 2);
        if (!crlf) break;
        if (end - b >= 4 && memcmp(b, "MSG ", 4) == 0) {
            /* MSG <subject> <sid> [reply] <size> : the size is the last token */
            const unsigned char *sp = crlf;
            while (sp > b && sp[-1] != ' ') sp--;
            const unsigned char *q = sp;
            int64_t size = parse_int(&q, crlf);
            if (size < 0) {
                malformed++;
                off = (size_t)(crlf + 2 - c->nbuf);
                continue;
            }
            unsigned char *payload = crlf + 2;
            if (end - payload < size + 2) break; /* wait for the rest */
            on_delivery(c, payload, payload + size, t);
            off = (size_t)(payload + size + 2 - c->nbuf);
            continue;
        }
        if (end - b >= 5 && memcmp(b, "HMSG ", 5) == 0) {
            /* HMSG <subject> <sid> [reply] <header size> <total size> (a republished message:
             * the nats-js peer): the data object follows the headers */
            const unsigned char *sp = crlf;
            while (sp > b && sp[-1] != ' ') sp--;
            const unsigned char *q = sp;
            int64_t total = parse_int(&q, crlf);
            const unsigned char *hp = sp - 1;
            while (hp > b && hp[-1] != ' ') hp--;
            q = hp;
            int64_t hsize = parse_int(&q, sp - 1);
            if (total < 0 || hsize < 0 || hsize > total || sp - 1 <= b) {
                malformed++;
                off = (size_t)(crlf + 2 - c->nbuf);
                continue;
            }
            unsigned char *payload = crlf + 2;
            if (end - payload < total + 2) break; /* wait for the rest */
            on_delivery(c, payload + hsize, payload + total, t);
            off = (size_t)(payload + total + 2 - c->nbuf);
            continue;
        }
        if (end - b >= 4 && memcmp(b, "PING", 4) == 0) {
            pings++;
            send_frame(c, 2, (const unsigned char *)"PONG\r\n", 6);
            if (c->st == ST_CLOSED) return;
        } else if (end - b >= 4 && memcmp(b, "PONG", 4) == 0) {
            mark_ready(c);
        } else if (end - b >= 4 && memcmp(b, "-ERR", 4) == 0) {
            n_errors++;
        }
        off = (size_t)(crlf + 2 - c->nbuf);
    }
    if (off) {
        memmove(c->nbuf, c->nbuf + off, c->nlen - off);
        c->nlen -= (uint32_t)off;
    }
}

static void on_open(conn_t *c) {
    c->st = ST_HELLO;
    n_open++;
    if (proto == P_TIDINGS) {
        send_frame(c, 1, (const unsigned char *)c->spec, strlen(c->spec));
    } else if (proto == P_NATS) {
        char msg[4096];
        int n = snprintf(msg, sizeof msg,
                         "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,"
                         "\"name\":\"wsload\",\"lang\":\"c\",\"version\":\"1\"}\r\n");
        char *save = NULL, *copy = strdup(c->spec);
        int sid = 1;
        for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
            n += snprintf(msg + n, sizeof msg - (size_t)n, "SUB %s %d\r\n", tok, sid++);
        free(copy);
        n += snprintf(msg + n, sizeof msg - (size_t)n, "PING\r\n");
        send_frame(c, 2, (const unsigned char *)msg, (size_t)n);
    }
    /* sio: wait for the Engine.IO open packet */
}

static size_t parse_frames(conn_t *c, uint64_t t) {
    size_t off = 0;
    for (;;) {
        unsigned char *b = c->buf + off;
        size_t avail = c->len - off;
        if (avail < 2) break;
        int opcode = b[0] & 0x0f;
        uint64_t plen = b[1] & 0x7f;
        size_t hlen = 2;
        if (plen == 126) {
            if (avail < 4) break;
            plen = ((uint64_t)b[2] << 8) | b[3];
            hlen = 4;
        } else if (plen == 127) {
            if (avail < 10) break;
            plen = 0;
            for (int i = 0; i < 8; i++) plen = (plen << 8) | b[2 + i];
            hlen = 10;
        }
        if (b[1] & 0x80) hlen += 4;
        if (avail < hlen + plen) {
            if (hlen + plen > c->cap) { /* make room for the whole frame */
                memmove(c->buf, b, avail);
                c->len = (uint32_t)avail;
                off = 0;
                while (c->cap < hlen + plen) c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
                return 0;
            }
            break;
        }
        unsigned char *payload = b + hlen;
        frames++;
        if (opcode == 1 || opcode == 2 || opcode == 0) {
            if (proto == P_NATS) on_nats_bytes(c, payload, (size_t)plen, t);
            else if (proto == P_TIDINGS) on_tidings_text(c, payload, (size_t)plen, t);
            else on_sio_text(c, payload, (size_t)plen, t);
            if (c->st == ST_CLOSED) return 0;
        } else if (opcode == 9) {
            pings++;
            send_frame(c, 0xA, payload, (size_t)plen);
            if (c->st == ST_CLOSED) return 0;
        } else if (opcode == 8) {
            close_conn(c, 0);
            return 0;
        }
        off += hlen + (size_t)plen;
    }
    return off;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->cap - c->len < 2048) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r == 0) {
            close_conn(c, c->st < ST_READY);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            close_conn(c, c->st < ST_READY);
            return;
        }
        bytes_in += (uint64_t)r;
        reads++;
        int filled = (uint32_t)r == c->cap - c->len;
        c->len += (uint32_t)r;
        uint64_t t = now_ns();
        if (c->st == ST_UPGRADE) {
            unsigned char *hdr_end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (!hdr_end) {
                if (!filled) return;
                continue;
            }
            if (c->len < 12 || memcmp(c->buf + 9, "101", 3) != 0) {
                close_conn(c, 1);
                return;
            }
            size_t hl = (size_t)(hdr_end + 4 - c->buf);
            memmove(c->buf, c->buf + hl, c->len - hl);
            c->len -= (uint32_t)hl;
            on_open(c);
            if (c->st == ST_CLOSED) return;
        }
        size_t used = parse_frames(c, t);
        if (c->st == ST_CLOSED) return;
        if (used) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= (uint32_t)used;
        }
        if (!filled) return;
    }
}

static void report(void) {
    printf("{\"event\":\"report\",\"conns\":%d,\"open\":%llu,\"ready\":%llu,\"failed\":%llu,"
           "\"closed\":%llu,\"errors\":%llu,\"frames\":%llu,\"bytes\":%llu,\"pings\":%llu,"
           "\"malformed\":%llu,\"reads\":%llu,\"steps\":[",
           nconns, (unsigned long long)n_open, (unsigned long long)n_ready,
           (unsigned long long)n_failed, (unsigned long long)n_closed,
           (unsigned long long)n_errors, (unsigned long long)frames,
           (unsigned long long)bytes_in, (unsigned long long)pings,
           (unsigned long long)malformed, (unsigned long long)reads);
    int first = 1;
    for (int k = 0; k < MAX_STEPS; k++) {
        step_t *s = &steps[k];
        if (!s->received && !s->gaps) continue;
        printf("%s{\"step\":%d,\"received\":%llu,\"dups\":%llu,\"out_of_order\":%llu,"
               "\"gaps\":%llu,\"max_ns\":%llu,\"sum_us\":%llu}",
               first ? "" : ",", k, (unsigned long long)s->received,
               (unsigned long long)s->dups, (unsigned long long)s->ooo,
               (unsigned long long)s->gaps, (unsigned long long)s->max_ns,
               (unsigned long long)s->sum_us);
        first = 0;
    }
    printf("]}\n");
    fflush(stdout);
}

static void hist(int k) {
    printf("{\"event\":\"hist\",\"step\":%d,\"bucket_ns\":%llu,\"hist\":[", k,
           (unsigned long long)BUCKET_NS);
    if (k >= 0 && k < MAX_STEPS && steps[k].hist) {
        int first = 1;
        for (uint64_t i = 0; i < NBUCKETS; i++) {
            if (!steps[k].hist[i]) continue;
            printf("%s[%llu,%u]", first ? "" : ",", (unsigned long long)i, steps[k].hist[i]);
            first = 0;
        }
    }
    printf("]}\n");
    fflush(stdout);
}

static void on_stdin(int *quit) {
    static char line[256];
    static size_t ll = 0;
    char tmp[256];
    ssize_t r = read(0, tmp, sizeof tmp);
    if (r <= 0) {
        *quit = 1;
        return;
    }
    for (ssize_t i = 0; i < r; i++) {
        if (tmp[i] != '\n') {
            if (ll < sizeof line - 1) line[ll++] = tmp[i];
            continue;
        }
        line[ll] = 0;
        ll = 0;
        if (strcmp(line, "report") == 0) report();
        else if (strncmp(line, "hist ", 5) == 0) hist(atoi(line + 5));
        else if (strcmp(line, "quit") == 0) *quit = 1;
    }
}

static char **read_specs(const char *file, int *count) {
    FILE *f = fopen(file, "r");
    if (!f) {
        perror(file);
        exit(2);
    }
    int cap = 1024, n = 0;
    char **out = malloc(sizeof(char *) * (size_t)cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t l;
    while ((l = getline(&line, &lcap, f)) > 0) {
        while (l > 0 && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = 0;
        if (n == cap) out = realloc(out, sizeof(char *) * (size_t)(cap *= 2));
        out[n++] = strdup(line);
    }
    free(line);
    fclose(f);
    *count = n;
    return out;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s tidings|nats|sio PORT SPECFILE [CONNECT_TIMEOUT_S]\n", argv[0]);
        return 2;
    }
    proto = strcmp(argv[1], "nats") == 0  ? P_NATS
            : strcmp(argv[1], "sio") == 0 ? P_SIO
                                          : P_TIDINGS;
    port = atoi(argv[2]);
    char **specs = read_specs(argv[3], &nconns);
    double connect_timeout = argc > 4 ? atof(argv[4]) : 60.0;
    setvbuf(stdout, NULL, _IOFBF, 1 << 20);
    conns = calloc((size_t)nconns, sizeof(conn_t));
    for (int i = 0; i < nconns; i++) conns[i].spec = specs[i];
    epfd = epoll_create1(0);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);

    int next = 0, announced = 0, quit = 0;
    uint64_t t_start = now_ns();
    struct epoll_event evs[1024];
    while (!quit) {
        if (!announced) {
            /* a bounded number of connections between connect() and ready */
            int inflight = (int)((uint64_t)next - n_ready - n_failed - n_closed);
            while (next < nconns && inflight < MAX_INFLIGHT) {
                start_connect(&conns[next++]);
                inflight++;
            }
            double waited = (double)(now_ns() - t_start) / 1e9;
            int pending = next < nconns || (uint64_t)nconns > n_ready + n_failed + n_closed;
            if (!pending || waited > connect_timeout) {
                printf("{\"event\":\"connected\",\"conns\":%d,\"ready\":%llu,\"failed\":%llu,"
                       "\"closed\":%llu,\"errors\":%llu,\"seconds\":%.3f}\n",
                       nconns, (unsigned long long)n_ready, (unsigned long long)n_failed,
                       (unsigned long long)n_closed, (unsigned long long)n_errors, waited);
                fflush(stdout);
                announced = 1;
            }
        }
        int n = epoll_wait(epfd, evs, 1024, announced ? 1000 : 20);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (!c) {
                on_stdin(&quit);
                continue;
            }
            if (c->st == ST_CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (c->st == ST_CLOSED) continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c);
        }
    }
    return 0;
}
