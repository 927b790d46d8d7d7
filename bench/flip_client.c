/*
 * flip_client.c - one meshed pod's app for bench/flip_bench.sh (BENCHMARKS.md, "Split flip:
 * apply to every client observing"): GET / on one keep-alive connection, a request every
 * INTERVAL milliseconds (start to start), through the pod's sidecar (run it as root inside the
 * pod's network namespace: weft-init's rules capture it). The backends answer their own name.
 *
 *   flip_client --addr IP --port N [--interval-ms 5] [--timeout-ms 2000] [--host NAME]
 *
 * Prints on stdout, one line each, flushed at once (timestamps: CLOCK_MONOTONIC in nanoseconds,
 * the same clock in every network namespace, so the driver compares them with its own):
 *   OBS <received_ns> <sent_ns> <name>   an answer whose body differs from the previous one
 *   ERR <ns> <reason>                    a request that failed (no answer, not 200, timeout)
 *   END requests=N errors=N retried=N connects=N max_gap_us=N
 *                                        on SIGTERM or SIGINT; max_gap_us is the longest time
 *                                        between two answers (the resolution of an observation)
 * A request sent on a reused connection that the server closed before any byte of an answer is
 * sent once more on a new connection (what HTTP clients do with idempotent requests) and counted
 * in retried=; any other failure is an error. Exit 0 after SIGTERM when no request failed, 1
 * otherwise, 2 on usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RX_CAP 16384
#define NAME_MAX_LEN 200

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct client {
    struct sockaddr_in addr;
    const char *host;
    int timeout_ms;
    int fd;
    bool reused; /* the connection has carried an answer */
    unsigned long long requests, errors, retried, connects;
    char last[NAME_MAX_LEN + 1];
    char rx[RX_CAP];
};

static void conn_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->reused = false;
}

/* Connects with a deadline; 0 or a reason in why. */
static int conn_open(struct client *c, const char **why)
{
    struct pollfd p;
    int one = 1, err = 0, rc;
    socklen_t len = sizeof(err);

    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        *why = "socket";
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    rc = connect(c->fd, (struct sockaddr *)&c->addr, sizeof(c->addr));
    if (rc < 0 && errno != EINPROGRESS) {
        *why = strerror(errno);
        conn_close(c);
        return -1;
    }
    p.fd = c->fd;
    p.events = POLLOUT;
    if (rc < 0 && (poll(&p, 1, c->timeout_ms) != 1 ||
                   getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)) {
        *why = err ? strerror(err) : "connect timed out";
        conn_close(c);
        return -1;
    }
    c->connects++;
    return 0;
}

/* Reads until the deadline; bytes read, 0 at EOF, -1 on error or timeout (why). */
static ssize_t recv_some(struct client *c, char *buf, size_t cap, uint64_t deadline,
                         const char **why)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    ssize_t n;

    for (;;) {
        uint64_t t = now_ns();
        int ms = t >= deadline ? 0 : (int)((deadline - t) / 1000000u) + 1;

        n = recv(c->fd, buf, cap, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EINTR) {
            *why = strerror(errno);
            return -1;
        }
        if (t >= deadline) {
            *why = "no answer within the timeout";
            return -1;
        }
        if (poll(&p, 1, ms) < 0 && errno != EINTR) {
            *why = strerror(errno);
            return -1;
        }
    }
}

/*
 * One request on the open connection. 0 with the body's first line in name; 1 when the
 * connection was closed before any byte (the caller may retry); -1 with a reason.
 */
static int exchange(struct client *c, char *name, const char **why)
{
    char req[256];
    int len = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", c->host);
    uint64_t deadline = now_ns() + (uint64_t)c->timeout_ms * 1000000u;
    size_t have = 0, need = 0, body_at = 0, blen;
    int status = 0;
    bool close_after = false;
    char *hdr_end = NULL, *p, *nl;

    if (send(c->fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
        *why = "send failed";
        return c->reused ? 1 : -1;
    }
    for (;;) {
        ssize_t n;

        if (have == sizeof(c->rx) - 1) {
            *why = "answer too large";
            return -1;
        }
        n = recv_some(c, c->rx + have, sizeof(c->rx) - 1 - have, deadline, why);
        if (n < 0)
            return have == 0 && c->reused && strcmp(*why, "no answer within the timeout") != 0 ? 1
                                                                                               : -1;
        if (n == 0) {
            *why = "connection closed during the answer";
            return have == 0 && c->reused ? 1 : -1;
        }
        have += (size_t)n;
        c->rx[have] = '\0';
        if (!hdr_end) {
            hdr_end = strstr(c->rx, "\r\n\r\n");
            if (!hdr_end)
                continue;
            body_at = (size_t)(hdr_end - c->rx) + 4;
            if (sscanf(c->rx, "HTTP/1.%*d %d", &status) != 1) {
                *why = "not an HTTP answer";
                return -1;
            }
            p = strcasestr(c->rx, "\r\nContent-Length:");
            if (!p || p > hdr_end) {
                *why = "answer without Content-Length";
                return -1;
            }
            need = body_at + strtoul(p + 17, NULL, 10);
            p = strcasestr(c->rx, "\r\nConnection: close");
            close_after = p && p < hdr_end;
        }
        if (have >= need)
            break;
    }
    if (status != 200) {
        static char msg[64];

        snprintf(msg, sizeof(msg), "status %d", status);
        *why = msg;
        return -1;
    }
    blen = need - body_at;
    nl = memchr(c->rx + body_at, '\n', blen);
    if (nl)
        blen = (size_t)(nl - (c->rx + body_at));
    if (blen > NAME_MAX_LEN)
        blen = NAME_MAX_LEN;
    memcpy(name, c->rx + body_at, blen);
    name[blen] = '\0';
    c->reused = true;
    if (close_after || have > need)
        conn_close(c); /* a close asked for, or bytes nobody asked for */
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: flip_client --addr IP --port N [--interval-ms 5] [--timeout-ms 2000] "
                    "[--host NAME]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},        {"port", required_argument, NULL, 'p'},
        {"interval-ms", required_argument, NULL, 'i'}, {"timeout-ms", required_argument, NULL, 't'},
        {"host", required_argument, NULL, 'H'},        {NULL, 0, NULL, 0}};
    static struct client c;
    struct sigaction sa;
    const char *addr = NULL;
    long port = 0, interval_ms = 5;
    uint64_t next, last_answer = 0, max_gap = 0;
    int o;

    c.host = "web";
    c.timeout_ms = 2000;
    c.fd = -1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            addr = optarg;
            break;
        case 'p':
            port = strtol(optarg, NULL, 10);
            break;
        case 'i':
            interval_ms = strtol(optarg, NULL, 10);
            break;
        case 't':
            c.timeout_ms = (int)strtol(optarg, NULL, 10);
            break;
        case 'H':
            c.host = optarg;
            break;
        default:
            return usage();
        }
    }
    c.addr.sin_family = AF_INET;
    c.addr.sin_port = htons((uint16_t)port);
    if (!addr || inet_pton(AF_INET, addr, &c.addr.sin_addr) != 1 || port <= 0 || port > 65535 ||
        interval_ms < 1 || interval_ms > 10000 || c.timeout_ms < 1)
        return usage();
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    next = now_ns();
    while (!stop_flag) {
        char name[NAME_MAX_LEN + 1];
        const char *why = "";
        uint64_t sent = now_ns(), got;
        int rc = -1, attempt;

        c.requests++;
        for (attempt = 0; attempt < 2; attempt++) {
            if (c.fd < 0 && conn_open(&c, &why) != 0) {
                rc = -1;
                break;
            }
            rc = exchange(&c, name, &why);
            if (rc != 1)
                break;
            conn_close(&c); /* closed under us before any answer: once more on a new one */
            if (attempt == 0)
                c.retried++;
        }
        got = now_ns();
        if (rc != 0) {
            c.errors++;
            printf("ERR %llu %s\n", (unsigned long long)got, why);
            conn_close(&c);
        } else {
            if (last_answer && got - last_answer > max_gap)
                max_gap = got - last_answer;
            last_answer = got;
            if (strcmp(name, c.last) != 0) {
                printf("OBS %llu %llu %s\n", (unsigned long long)got, (unsigned long long)sent,
                       name);
                memcpy(c.last, name, sizeof(c.last));
            }
        }
        /* start to start; a late request goes at once, and the schedule restarts from it */
        next += (uint64_t)interval_ms * 1000000u;
        got = now_ns();
        if (next <= got) {
            next = got;
        } else {
            struct timespec ts = {.tv_sec = (time_t)(next / 1000000000u),
                                  .tv_nsec = (long)(next % 1000000000u)};

            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
        }
    }
    printf("END requests=%llu errors=%llu retried=%llu connects=%llu max_gap_us=%llu\n", c.requests,
           c.errors, c.retried, c.connects, (unsigned long long)(max_gap / 1000u));
    conn_close(&c);
    return c.errors ? 1 : 0;
}
