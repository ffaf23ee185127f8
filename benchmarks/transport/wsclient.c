/*
 * wsclient: a lean, single-threaded epoll WebSocket load client for the transport benchmark.
 *
 * Written in C so that the generator, pinned to its own core, is never what limits the
 * measurement of a Python server. It opens N connections to ws://127.0.0.1:PORT/PATH with
 * subprotocol tidings.v1.json, sends one masked text frame (a "hello") on each, and then counts
 * every notification it receives. A server text frame carries one or more notifications joined
 * by '\n'; each notification starts with {"seq":S,"ts":T,"step":K, ... where S is a global
 * sequence number, T the server's scheduled time in CLOCK_MONOTONIC nanoseconds and K the sweep
 * step. Per connection it checks that S is gap-free and in order; per step it histograms
 * latency = receive time (CLOCK_MONOTONIC, one reading per recv) - T.
 *
 * Control on stdin, one command a line:  report -> one JSON line of per-step stats on stdout;
 * quit -> exit. On start it prints {"event":"connected",...} once every connection is open
 * (or failed, or the connect timeout passed).
 *
 * Build: cc -O2 -o wsclient wsclient.c
 * Usage: wsclient PORT NCONNS [PATH] [CONNECT_TIMEOUT_S] [spin]
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

#define MAX_STEPS 32
#define BUCKET_NS 20000ULL             /* 20 us histogram resolution */
#define NBUCKETS 1000000ULL            /* up to 20 s; beyond goes to the last bucket */
#define MAX_INFLIGHT_CONNECTS 64
#define INIT_BUF 16384

enum state { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSED };

typedef struct {
    int fd;
    enum state st;
    unsigned char *buf;
    size_t len, cap;
    long long expect; /* next expected seq */
} conn_t;

typedef struct {
    uint64_t received, frames, gaps, gap_events, out_of_order, malformed;
    uint64_t lat_max_ns, lat_sum_us;
    uint32_t *hist;
} step_t;

static conn_t *conns;
static int nconns, port;
static const char *path = "/ws";
static int epfd;
static step_t steps[MAX_STEPS];
static uint64_t total_frames, server_closes, conn_failed, conn_open, bytes_in, pings;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void close_conn(conn_t *c, int failed) {
    if (c->st == ST_CLOSED) return;
    if (failed) conn_failed++;
    if (c->st == ST_OPEN) conn_open--;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->st = ST_CLOSED;
    free(c->buf);
    c->buf = NULL;
}

/* Blocking-ish write of a small control frame; a short write on loopback is not expected. */
static void write_all(conn_t *c, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR) continue;
            close_conn(c, 1);
            return;
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Client frames must be masked (RFC 6455 5.3). */
static void send_frame(conn_t *c, int opcode, const unsigned char *payload, size_t n) {
    unsigned char out[256];
    static const unsigned char key[4] = {0x12, 0x34, 0x56, 0x78};
    if (n > 125) return; /* only small control/hello frames are ever sent */
    out[0] = (unsigned char)(0x80 | opcode);
    out[1] = (unsigned char)(0x80 | n);
    memcpy(out + 2, key, 4);
    for (size_t i = 0; i < n; i++) out[6 + i] = payload[i] ^ key[i & 3];
    write_all(c, out, 6 + n);
}

static void start_connect(conn_t *c) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) {
        perror("socket");
        exit(2);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_nonblock(c->fd);
    c->st = ST_CONNECTING;
    c->cap = INIT_BUF;
    c->buf = malloc(c->cap);
    c->len = 0;
    c->expect = 0;
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
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tidings.v1.json\r\n"
                     "Origin: http://127.0.0.1\r\n\r\n",
                     path, port);
    c->st = ST_HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    write_all(c, (unsigned char *)req, (size_t)n);
}

static inline uint64_t parse_uint(const unsigned char **pp, const unsigned char *end, int *ok) {
    const unsigned char *p = *pp;
    uint64_t v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        digits++;
    }
    *ok = digits > 0;
    *pp = p;
    return v;
}

static inline int expect_lit(const unsigned char **pp, const unsigned char *end, const char *lit,
                             size_t n) {
    if ((size_t)(end - *pp) < n || memcmp(*pp, lit, n) != 0) return 0;
    *pp += n;
    return 1;
}

static void on_notification(conn_t *c, const unsigned char *p, const unsigned char *end,
                            uint64_t t_recv) {
    int ok1, ok2, ok3;
    if (!expect_lit(&p, end, "{\"seq\":", 7)) goto bad;
    uint64_t seq = parse_uint(&p, end, &ok1);
    if (!expect_lit(&p, end, ",\"ts\":", 6)) goto bad;
    uint64_t ts = parse_uint(&p, end, &ok2);
    if (!expect_lit(&p, end, ",\"step\":", 8)) goto bad;
    uint64_t k = parse_uint(&p, end, &ok3);
    if (!(ok1 && ok2 && ok3) || k >= MAX_STEPS) goto bad;
    step_t *s = &steps[k];
    s->received++;
    if ((long long)seq > c->expect) {
        s->gaps += (uint64_t)((long long)seq - c->expect);
        s->gap_events++;
    } else if ((long long)seq < c->expect) {
        s->out_of_order++;
    }
    if ((long long)seq >= c->expect) c->expect = (long long)seq + 1;
    uint64_t lat = t_recv > ts ? t_recv - ts : 0;
    if (lat > s->lat_max_ns) s->lat_max_ns = lat;
    s->lat_sum_us += lat / 1000;
    if (!s->hist) s->hist = calloc(NBUCKETS, sizeof(uint32_t));
    uint64_t b = lat / BUCKET_NS;
    if (b >= NBUCKETS) b = NBUCKETS - 1;
    s->hist[b]++;
    return;
bad:
    steps[0].malformed++;
}

static void on_text(conn_t *c, const unsigned char *p, size_t n, uint64_t t_recv) {
    const unsigned char *end = p + n;
    total_frames++;
    int counted = 0;
    while (p < end) {
        const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
        const unsigned char *e = nl ? nl : end;
        if (e > p) {
            on_notification(c, p, e, t_recv);
            counted = 1;
        }
        p = nl ? nl + 1 : end;
    }
    (void)counted;
}

/* Parse as many complete frames as the buffer holds; returns bytes consumed. */
static size_t parse_frames(conn_t *c, uint64_t t_recv) {
    size_t off = 0;
    for (;;) {
        unsigned char *b = c->buf + off;
        size_t avail = c->len - off;
        if (avail < 2) break;
        int opcode = b[0] & 0x0f;
        int masked = b[1] & 0x80;
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
        if (masked) hlen += 4; /* servers never mask; tolerate it by skipping the key */
        if (avail < hlen + plen) {
            if (hlen + plen > c->cap) {
                /* grow so the whole frame fits once it has arrived */
                size_t need = hlen + plen;
                memmove(c->buf, c->buf + off, avail);
                c->len = avail;
                off = 0;
                while (c->cap < need) c->cap *= 2;
                c->buf = realloc(c->buf, c->cap);
            }
            break;
        }
        unsigned char *payload = b + hlen;
        if (opcode == 1 || opcode == 0) {
            on_text(c, payload, (size_t)plen, t_recv);
        } else if (opcode == 9) { /* ping -> pong */
            pings++;
            send_frame(c, 0xA, payload, (size_t)plen);
            if (c->st == ST_CLOSED) return 0;
        } else if (opcode == 8) {
            server_closes++;
            close_conn(c, 0);
            return 0;
        }
        off += hlen + (size_t)plen;
    }
    return off;
}

static void on_readable(conn_t *c) {
    for (;;) {
        if (c->cap - c->len < 4096) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
        }
        ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (r == 0) {
            server_closes++;
            close_conn(c, 0);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            close_conn(c, 0);
            return;
        }
        bytes_in += (uint64_t)r;
        int filled = (size_t)r == c->cap - c->len;
        c->len += (size_t)r;
        uint64_t t = now_ns();
        if (c->st == ST_HANDSHAKE) {
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
            c->len -= hl;
            c->st = ST_OPEN;
            conn_open++;
            static const char hello[] = "{\"type\":\"hello\",\"token\":\"bench\"}";
            send_frame(c, 1, (const unsigned char *)hello, sizeof hello - 1);
            if (c->st != ST_OPEN) return;
        }
        size_t used = parse_frames(c, t);
        if (c->st == ST_CLOSED) return;
        if (used) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
        }
        if (!filled) return;
    }
}

static double percentile(step_t *s, double q) {
    if (!s->hist || s->received == 0) return 0.0;
    uint64_t target = (uint64_t)(q * (double)s->received);
    if (target >= s->received) target = s->received - 1;
    uint64_t acc = 0;
    for (uint64_t i = 0; i < NBUCKETS; i++) {
        acc += s->hist[i];
        if (acc > target) return (double)((i + 1) * BUCKET_NS) / 1e6; /* upper edge, ms */
    }
    return (double)(NBUCKETS * BUCKET_NS) / 1e6;
}

static void report(void) {
    printf("{\"event\":\"report\",\"open\":%llu,\"failed\":%llu,\"server_closes\":%llu,"
           "\"frames\":%llu,\"bytes\":%llu,\"pings\":%llu,\"malformed\":%llu,\"steps\":[",
           (unsigned long long)conn_open, (unsigned long long)conn_failed,
           (unsigned long long)server_closes, (unsigned long long)total_frames,
           (unsigned long long)bytes_in, (unsigned long long)pings,
           (unsigned long long)steps[0].malformed);
    int first = 1;
    for (int k = 0; k < MAX_STEPS; k++) {
        step_t *s = &steps[k];
        if (!s->received && !s->gaps && !s->out_of_order) continue;
        printf("%s{\"step\":%d,\"received\":%llu,\"gaps\":%llu,\"gap_events\":%llu,"
               "\"out_of_order\":%llu,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,"
               "\"p999_ms\":%.3f,\"max_ms\":%.3f,\"mean_ms\":%.3f}",
               first ? "" : ",", k, (unsigned long long)s->received, (unsigned long long)s->gaps,
               (unsigned long long)s->gap_events, (unsigned long long)s->out_of_order,
               percentile(s, 0.50), percentile(s, 0.90), percentile(s, 0.99),
               percentile(s, 0.999), (double)s->lat_max_ns / 1e6,
               s->received ? (double)s->lat_sum_us / (double)s->received / 1e3 : 0.0);
        first = 0;
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
        if (tmp[i] == '\n') {
            line[ll] = 0;
            if (strcmp(line, "report") == 0) report();
            else if (strcmp(line, "quit") == 0) *quit = 1;
            ll = 0;
        } else if (ll < sizeof line - 1) {
            line[ll++] = tmp[i];
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT NCONNS [PATH] [CONNECT_TIMEOUT_S] [spin]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    nconns = atoi(argv[2]);
    if (argc > 3) path = argv[3];
    double connect_timeout = argc > 4 ? atof(argv[4]) : 60.0;
    /* spin: poll without sleeping, so the server's sends never pay for waking this process */
    int spin = argc > 5 && strcmp(argv[5], "spin") == 0;
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    conns = calloc((size_t)nconns, sizeof(conn_t));
    epfd = epoll_create1(0);
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &sev);

    int next = 0, announced = 0, quit = 0;
    uint64_t t_start = now_ns();
    struct epoll_event evs[512];
    while (!quit) {
        /* keep a bounded number of handshakes in flight so the listen backlog never overflows */
        if (next < nconns) {
            int inflight = 0;
            for (int i = 0; i < next; i++)
                if (conns[i].st == ST_CONNECTING || conns[i].st == ST_HANDSHAKE) inflight++;
            while (next < nconns && inflight < MAX_INFLIGHT_CONNECTS) {
                start_connect(&conns[next++]);
                inflight++;
            }
        }
        if (!announced) {
            int pending = next < nconns;
            for (int i = 0; !pending && i < nconns; i++)
                if (conns[i].st == ST_CONNECTING || conns[i].st == ST_HANDSHAKE) pending = 1;
            double waited = (double)(now_ns() - t_start) / 1e9;
            if (!pending || waited > connect_timeout) {
                printf("{\"event\":\"connected\",\"open\":%llu,\"failed\":%llu,\"seconds\":%.3f}\n",
                       (unsigned long long)conn_open, (unsigned long long)conn_failed, waited);
                fflush(stdout);
                announced = 1;
            }
        }
        int n = epoll_wait(epfd, evs, 512, announced ? (spin ? 0 : 1000) : 20);
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
