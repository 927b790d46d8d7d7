/*
 * mesh_load.c - an open-loop HTTP/1.1 load generator for bench/mesh_bench.sh (BENCHMARKS.md,
 * "Sidecar").
 *
 *   mesh_load --addr IP --port N [--rate 1000] [--seconds 10] [--warmup 2] [--conns 16]
 *             [--path /] [--host NAME]
 *
 * Request i is due at start + i/rate whatever happened before (open loop: a slow answer does not
 * slow the sender, so queueing shows in the figures instead of hiding, "coordinated omission").
 * It goes out on an idle keep-alive connection, or waits for the first one to free up; its
 * latency runs from its due time to the last byte of the answer. Answers must be 200 with a
 * Content-Length body. Requests due during the warm-up are sent but not recorded. A connection
 * the server closes is replaced by a new one; a request in flight on it that got no byte of an
 * answer is sent once more on another connection and counted in retried= (what HTTP clients do
 * with idempotent requests when a keep-alive connection is closed under them); any other
 * closed, refused or non-200 answer is an error. Requests go to the connections in turn. Bytes on
 * an idle connection (HAProxy's 408 on one that has not carried a request within `timeout
 * http-request`) close and replace it, counted in idle_closed=, not an error.
 * Prints one line: sent= ok= errors= late= retried= idle_closed= recorded= p50_us= p90_us= p99_us=
 * max_us= body_bytes= (late: sent more than 1 ms after its due time). Exit 1 when any request
 * failed.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
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

#define MAX_CONNS 256
#define RX_CAP 65536

struct conn {
    int fd;
    bool busy;
    uint64_t due_ns; /* of the request in flight */
    bool record;
    bool retry; /* the request in flight is already a retry */
    size_t rx_len;
    char rx[RX_CAP];
};

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int dial(const char *addr, int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0 || inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A complete answer at the head of c->rx: its total length, 0 if incomplete, -1 if bad. */
static long answer_len(struct conn *c, int *status, size_t *body)
{
    char *end, *cl;
    size_t head;

    c->rx[c->rx_len] = '\0';
    end = strstr(c->rx, "\r\n\r\n");
    if (!end)
        return c->rx_len >= RX_CAP - 1 ? -1 : 0;
    head = (size_t)(end - c->rx) + 4;
    if (sscanf(c->rx, "HTTP/1.1 %d", status) != 1)
        return -1;
    cl = strcasestr(c->rx, "\r\ncontent-length:");
    if (!cl || cl > end)
        return -1;
    *body = strtoul(cl + 17, NULL, 10);
    if (head + *body >= RX_CAP)
        return -1;
    return c->rx_len >= head + *body ? (long)(head + *body) : 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"addr", 1, NULL, 'a'},    {"port", 1, NULL, 'p'},   {"rate", 1, NULL, 'r'},
        {"seconds", 1, NULL, 's'}, {"warmup", 1, NULL, 'w'}, {"conns", 1, NULL, 'c'},
        {"path", 1, NULL, 'P'},    {"host", 1, NULL, 'H'},   {NULL, 0, NULL, 0},
    };
    const char *addr = NULL, *path = "/", *host = "bench";
    int port = 0, rate = 1000, nconns = 16, opt, ep;
    double seconds = 10, warmup = 2;
    static struct conn conns[MAX_CONNS];
    uint64_t *lat, start, total, next = 0, queued = 0, sent = 0, ok = 0, errors = 0, late = 0;
    /* requests whose keep-alive connection the server closed before any byte of the answer:
     * sent again once on another connection, as HTTP clients do with idempotent requests */
    uint64_t retry_due[MAX_CONNS], retried = 0, idle_closed = 0;
    int rr = 0; /* the connection the next request tries first: all of them stay in use */
    bool retry_rec[MAX_CONNS];
    size_t nretry = 0;
    size_t nlat = 0, body_bytes = 0;
    char req[512];
    int reqlen;

    while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (opt) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'r':
            rate = atoi(optarg);
            break;
        case 's':
            seconds = atof(optarg);
            break;
        case 'w':
            warmup = atof(optarg);
            break;
        case 'c':
            nconns = atoi(optarg);
            break;
        case 'P':
            path = optarg;
            break;
        case 'H':
            host = optarg;
            break;
        default:
            fprintf(stderr, "usage: mesh_load --addr IP --port N [--rate R] [--seconds S] "
                            "[--warmup S] [--conns N] [--path P] [--host H]\n");
            return 2;
        }
    }
    if (!addr || port < 1 || port > 65535 || rate < 1 || nconns < 1 || nconns > MAX_CONNS ||
        seconds <= 0 || warmup < 0) {
        fprintf(stderr,
                "mesh_load: --addr and --port are required; rate, conns (1-%d) and "
                "seconds must be positive\n",
                MAX_CONNS);
        return 2;
    }
    reqlen = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path, host);
    total = (uint64_t)((warmup + seconds) * rate);
    lat = calloc(total, sizeof(*lat));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (!lat || ep < 0)
        return 1;
    for (int i = 0; i < nconns; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

        conns[i].fd = dial(addr, port);
        if (conns[i].fd < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) != 0) {
            fprintf(stderr, "mesh_load: connect %s:%d: %s\n", addr, port, strerror(errno));
            return 1;
        }
    }
    start = now_ns();
    while (next < total || queued || nretry || sent > ok + errors) {
        uint64_t t = now_ns();
        struct epoll_event evs[64];
        int n;

        /* everything due by now joins the queue; the queue goes out on idle connections */
        while (next < total && start + next * 1000000000ull / (uint64_t)rate <= t) {
            next++;
            queued++;
        }
        for (int m = 0; m < nconns && (queued || nretry); m++) {
            int i = (rr + m) % nconns;
            struct conn *c = &conns[i];
            uint64_t idx = next - queued;

            if (c->busy || c->fd < 0)
                continue;
            if (nretry) {
                nretry--;
                c->due_ns = retry_due[nretry];
                c->record = retry_rec[nretry];
                c->retry = true;
                queued++; /* sent below like a new one */
                sent--;
            } else {
                c->due_ns = start + idx * 1000000000ull / (uint64_t)rate;
                c->record = idx >= (uint64_t)(warmup * rate);
                c->retry = false;
            }
            if (send(c->fd, req, (size_t)reqlen, MSG_NOSIGNAL) != reqlen) {
                errors++;
                sent++;
                queued--;
                close(c->fd);
                c->fd = -1;
                continue;
            }
            if (t - c->due_ns > 1000000) /* sent more than 1 ms after its due time */
                late++;
            c->busy = true;
            c->rx_len = 0;
            rr = (i + 1) % nconns;
            sent++;
            queued--;
        }
        if (queued) {
            bool any = false;
            for (int i = 0; i < nconns; i++)
                any |= conns[i].fd >= 0;
            if (!any) { /* every connection failed */
                errors += queued + (total - next);
                break;
            }
        }
        {
            uint64_t due = start + next * 1000000000ull / (uint64_t)rate;
            uint64_t wait = next < total ? (due > t ? due - t : 0) : 1000000000ull;
            struct timespec ts = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};

            /* nanosecond timeout: a millisecond one would spin or oversleep at 1,000/s */
            n = epoll_pwait2(ep, evs, 64, &ts, NULL);
        }
        if (n == 0 && next >= total && !queued && !nretry)
            break; /* answers that never came */
        if (now_ns() > start + (uint64_t)((warmup + seconds) * 1e9) + 10000000000ull) {
            errors += queued + nretry; /* 10 s past the last due time: what is left failed */
            queued = nretry = 0;
            break;
        }
        for (int k = 0; k < n; k++) {
            struct conn *c = &conns[evs[k].data.u32];
            ssize_t r = recv(c->fd, c->rx + c->rx_len, RX_CAP - 1 - c->rx_len, 0);
            int status = 0;
            size_t body = 0;
            long len;

            if (r <= 0) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};

                if (c->busy && c->rx_len == 0 && !c->retry && nretry < MAX_CONNS) {
                    retry_due[nretry] = c->due_ns;
                    retry_rec[nretry++] = c->record;
                    retried++;
                } else if (c->busy) {
                    errors++;
                }
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->busy = false;
                c->rx_len = 0;
                /* a new connection in its place, as a client would open */
                c->fd = dial(addr, port);
                if (c->fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
                    close(c->fd);
                    c->fd = -1;
                }
                continue;
            }
            c->rx_len += (size_t)r;
            len = answer_len(c, &status, &body);
            if (len == 0)
                continue;
            if (!c->busy) {
                /* a server's notice on an idle connection (HAProxy's 408 when
                 * `timeout http-request` expires on a connection that has not sent a request
                 * yet) and its close: no request of ours; the connection is replaced */
                struct epoll_event ev = {.events = EPOLLIN, .data.u32 = evs[k].data.u32};

                idle_closed++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->rx_len = 0;
                c->fd = dial(addr, port);
                if (c->fd >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
                    close(c->fd);
                    c->fd = -1;
                }
                continue;
            }
            if (len < 0 || status != 200) {
                fprintf(stderr, "mesh_load: bad answer: %.120s\n", c->rx);
                errors++;
                c->busy = false;
                c->rx_len = 0;
                continue;
            }
            if (c->record)
                lat[nlat++] = now_ns() - c->due_ns;
            body_bytes = body;
            ok++;
            c->busy = false;
            memmove(c->rx, c->rx + len, c->rx_len - (size_t)len);
            c->rx_len -= (size_t)len;
        }
    }
    if (sent > ok + errors)
        errors = sent - ok; /* never answered */
    qsort(lat, nlat, sizeof(*lat), cmp_u64);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] / 1000 : 0)
    printf("sent=%llu ok=%llu errors=%llu late=%llu retried=%llu idle_closed=%llu recorded=%zu "
           "p50_us=%llu p90_us=%llu p99_us=%llu max_us=%llu body_bytes=%zu\n",
           (unsigned long long)sent, (unsigned long long)ok, (unsigned long long)errors,
           (unsigned long long)late, (unsigned long long)retried, (unsigned long long)idle_closed,
           nlat, (unsigned long long)PCT(0.50), (unsigned long long)PCT(0.90),
           (unsigned long long)PCT(0.99), (unsigned long long)(nlat ? lat[nlat - 1] / 1000 : 0),
           body_bytes);
    free(lat);
    return errors ? 1 : 0;
}
