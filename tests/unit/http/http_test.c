/*
 * http_test.c - lib/http's request framing, over a real socket: what a client may send to
 * weftd's webhook and CA endpoints. Framing must be strict and unambiguous (request smuggling),
 * and the answer must not depend on how the bytes are split across reads.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include "core/buf.h"
#include "http/http.h"
#include "tests/unit/unit.h"

/* Echo what the parser gave: the body's length and bytes. */
static void echo(void *arg, struct http_conn *c, const struct http_request *req)
{
    char head[64];
    struct buf b;

    (void)arg;
    buf_init(&b);
    snprintf(head, sizeof(head), "body=%zu:", req->body_len);
    REQUIRE(buf_puts(&b, head) == 0 && buf_append(&b, req->body, req->body_len) == 0);
    http_respond(c, 200, "text/plain", b.p, b.len, NULL);
    buf_release(&b);
}

static pid_t server_pid;
static int server_port;

/* A plain-HTTP server in a child process, 4 KiB body limit. */
static void server_start(void)
{
    struct http_server *s = NULL;

    REQUIRE(http_server_new("127.0.0.1:0", NULL, 4096, echo, NULL, &s) == 0);
    server_port = http_server_port(s);
    server_pid = fork();
    REQUIRE(server_pid >= 0);
    if (server_pid == 0) {
        IGNORE_RESULT(http_server_run(s));
        _exit(0);
    }
    http_server_free(s);
}

static void server_stop(void)
{
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
}

/*
 * Send len bytes on a new connection, in two writes split at split (with a pause between, so
 * that the server reads them separately), and return the first response's status line and
 * body ("200 body=3:abc"), or "closed" when the server closed without answering.
 */
static char *exchange(const char *req, size_t len, size_t split)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port)};
    struct timespec pause = {0, 30 * 1000 * 1000};
    struct buf in;
    char chunk[4096], *resp, *body, *out;
    int fd = socket(AF_INET, SOCK_STREAM, 0), status = 0;
    long clen = -1;

    REQUIRE(fd >= 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    if (split > len)
        split = len;
    REQUIRE(send(fd, req, split, MSG_NOSIGNAL) == (ssize_t)split);
    if (split < len) {
        nanosleep(&pause, NULL);
        /* the server may already have answered and closed: a short send is fine */
        IGNORE_RESULT(send(fd, req + split, len - split, MSG_NOSIGNAL));
    }
    buf_init(&in);
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;

        if (poll(&p, 1, 3000) <= 0)
            break;
        n = recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0)
            break;
        REQUIRE(buf_append(&in, chunk, (size_t)n) == 0);
        body = strstr(in.p, "\r\n\r\n");
        if (body) {
            const char *cl = strcasestr(in.p, "\r\nContent-Length: ");
            clen = cl ? atol(cl + 18) : 0;
            if ((long)(in.len - (size_t)(body + 4 - in.p)) >= clen)
                break;
        }
    }
    close(fd);
    resp = in.p;
    body = resp ? strstr(resp, "\r\n\r\n") : NULL;
    if (!body || sscanf(resp, "HTTP/1.1 %d", &status) != 1) {
        buf_release(&in);
        return strdup("closed");
    }
    REQUIRE(asprintf(&out, "%d %.*s", status, (int)clen, body + 4) > 0);
    buf_release(&in);
    return out;
}

#define POST "POST /x HTTP/1.1\r\nHost: h\r\n"

/*
 * The answer to req must start with status (and contain text, when given), whether it arrives
 * at once or split at any of a few points.
 */
static void expect_at(int line, const char *req, const char *status, const char *text)
{
    size_t len = strlen(req);
    size_t splits[] = {len, 1, len / 2, len - 1, (size_t)(strstr(req, "\r\n\r\n") - req) + 3};

    for (size_t i = 0; i < ARRAY_LEN(splits); i++) {
        char *got = exchange(req, len, splits[i]);

        if (strncmp(got, status, strlen(status)) != 0 || (text && !strstr(got, text))) {
            fprintf(stderr, "  line %d, split at %zu of %zu: got \"%s\", want %s ... %s\n", line,
                    splits[i], len, got, status, text ? text : "");
            unit__failures++;
        }
        free(got);
    }
}

#define expect(req, status, text) expect_at(__LINE__, req, status, text)

static void t_chunked(void)
{
    server_start();
    expect(POST "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
           "200 body=5:abcde", NULL);
    expect(POST "Transfer-Encoding: Chunked\r\n\r\n3;name=value\r\nabc\r\n0\r\n\r\n",
           "200 body=3:abc", NULL);
    expect(POST "Transfer-Encoding: chunked\r\n\r\nA \r\n0123456789\r\n000\r\n\r\n",
           "200 body=10:0123456789", NULL);
    expect(POST "Transfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: t\r\n\r\n", "200 body=0:", NULL);
    /* data not followed by CRLF */
    expect(POST "Transfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n", "400",
           "malformed HTTP request");
    /* sizes strtoull would take */
    expect(POST "Transfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n", "400",
           "malformed HTTP request");
    expect(POST "Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n", "400",
           "malformed HTTP request");
    expect(POST "Transfer-Encoding: chunked\r\n\r\n+3\r\nabc\r\n0\r\n\r\n", "400",
           "malformed HTTP request");
    expect(POST "Transfer-Encoding: chunked\r\n\r\n3zz\r\nabc\r\n0\r\n\r\n", "400",
           "malformed HTTP request");
    expect(POST "Transfer-Encoding: chunked\r\n\r\n\r\n0\r\nTrailer: o\r\n\r\n", "400",
           "malformed HTTP request");
    expect(POST "Transfer-Encoding: chunked\r\n\r\n1000000000000000\r\n", "400",
           "malformed HTTP request");
    /* a trailer line that is not a field */
    expect(POST "Transfer-Encoding: chunked\r\n\r\n0\r\nnot a field\r\n\r\n", "400",
           "malformed HTTP request");
    /* over the body limit */
    expect(POST "Transfer-Encoding: chunked\r\n\r\n1001\r\n", "413", NULL);
    server_stop();
}

static void t_framing(void)
{
    server_start();
    expect(POST "Content-Length: 3\r\n\r\nabc", "200 body=3:abc", NULL);
    expect(POST "\r\n", "200 body=0:", NULL);
    /* codings we do not decode, and look-alikes of chunked */
    expect(POST "Transfer-Encoding: chunkedO\r\n\r\n0\r\n\r\n", "501",
           "only Transfer-Encoding: chunked is supported");
    expect(POST "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", "501",
           "only Transfer-Encoding: chunked is supported");
    /* ambiguous framing */
    expect(POST "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
           "400", "ambiguous framing");
    expect(POST "Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "400", "ambiguous framing");
    expect(POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400",
           "ambiguous framing");
    /* lengths strtoull would take */
    expect(POST "Content-Length: +3\r\n\r\nabc", "400", "malformed HTTP request");
    expect(POST "Content-Length: -1\r\n\r\n", "400", "malformed HTTP request");
    expect(POST "Content-Length: 3x\r\n\r\nabc", "400", "malformed HTTP request");
    expect(POST "Content-Length: 99999999999999999999\r\n\r\n", "400", "malformed HTTP request");
    expect(POST "Content-Length: 5000\r\n\r\n", "413", NULL);
    server_stop();
}

static void t_head_limit(void)
{
    /* a 70 KB head is refused whether it arrives at once or in pieces */
    struct buf req;
    char *got;

    server_start();
    buf_init(&req);
    REQUIRE(buf_puts(&req, POST) == 0);
    for (int i = 0; i < 700; i++)
        REQUIRE(buf_printf(&req, "X-Filler-%03d: %090d\r\n", i, 0) == 0);
    REQUIRE(buf_puts(&req, "\r\n") == 0);
    REQUIRE(req.len > 64 * 1024);
    got = exchange(req.p, req.len, req.len);
    CHECK(strncmp(got, "400 ", 4) == 0 && strstr(got, "request header too large"));
    free(got);
    got = exchange(req.p, req.len, 1000);
    CHECK(strncmp(got, "400 ", 4) == 0 && strstr(got, "request header too large"));
    free(got);
    buf_release(&req);
    server_stop();
}

UNIT_MAIN(UNIT(t_chunked), UNIT(t_framing), UNIT(t_head_limit))
