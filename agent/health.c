/*
 * health.c - the app's probes, run by weft-agent for the kubelet (docs/injection.md, "Probes";
 * docs/agent.md, "Health on 15020"). The kubelet's probe reaches the agent on 15020; the agent
 * runs the original check over loopback, where weft-init does not redirect, and answers 200 or
 * 503. Each check is bounded by the probe's timeoutSeconds.
 */
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/agent.h"

static int port_of(const json_t *h)
{
    json_int_t p = json_integer_value(json_object_get(h, "port"));
    return json_is_integer(json_object_get(h, "port")) && p > 0 && p < 65536 ? (int)p : -1;
}

static int tcp_probe(int port, long timeout_ms, struct diag *diag)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), rc = 0, err = 0;
    socklen_t el = sizeof(err);
    struct pollfd p;

    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        rc = -errno;
        goto out;
    }
    p = (struct pollfd){.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, (int)timeout_ms) <= 0) {
        rc = -ETIMEDOUT;
        goto out;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err)
        rc = err ? -err : -errno;
out:
    close(fd);
    if (rc)
        diag_set(diag, "tcp 127.0.0.1:%d: %s", port, err_str(rc));
    return rc;
}

struct body {
    unsigned char p[64];
    size_t len;
};

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct body *b = arg;
    size_t take = sz * n;

    if (take > sizeof(b->p) - b->len)
        take = sizeof(b->p) - b->len;
    memcpy(b->p + b->len, p, take);
    b->len += take;
    return sz * n; /* the rest is dropped: only the status matters */
}

/* httpGet, or grpc (grpc.health.v1.Health/Check over h2c) when grpc is true. */
static int http_probe(const json_t *h, bool grpc, long timeout_ms, struct diag *diag)
{
    const char *scheme = json_string_value(json_object_get(h, "scheme"));
    const char *path = json_string_value(json_object_get(h, "path"));
    const char *service = json_string_value(json_object_get(h, "service"));
    int port = port_of(h);
    bool tls = !grpc && scheme && strcasecmp(scheme, "HTTPS") == 0;
    struct curl_slist *hdrs = NULL;
    unsigned char req[5 + 2 + 255];
    struct body b = {.len = 0};
    char url[2200];
    long status = 0;
    CURL *c = NULL;
    CURLcode cc;
    size_t i;
    json_t *hv;
    int rc = 0;

    if (!path || !*path)
        path = "/";
    if (port < 0 || path[0] != '/' || strlen(path) > 2048 || (service && strlen(service) > 255)) {
        diag_set(diag, "the probe's port or path is invalid");
        return ERR_INVALID;
    }
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", tls ? "https" : "http", port,
             grpc ? "/grpc.health.v1.Health/Check" : path);
    c = curl_easy_init();
    if (!c)
        return -ENOMEM;
    json_array_foreach(json_object_get(h, "httpHeaders"), i, hv)
    {
        char line[1024];
        const char *n = json_string_value(json_object_get(hv, "name"));
        const char *v = json_string_value(json_object_get(hv, "value"));
        struct curl_slist *t;

        if (!n || !v || strpbrk(n, ":\r\n") || strpbrk(v, "\r\n"))
            continue;
        snprintf(line, sizeof(line), "%s: %s", n, v);
        t = curl_slist_append(hdrs, line);
        if (!t) {
            rc = -ENOMEM;
            goto out;
        }
        hdrs = t;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    /* as the kubelet: an HTTPS probe does not verify the app's certificate */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    if (grpc) {
        size_t sl = service ? strlen(service) : 0, n = sl ? 2 + sl : 0;
        struct curl_slist *t;

        /* a length-prefixed HealthCheckRequest{service = 1} */
        req[0] = 0;
        req[1] = req[2] = req[3] = 0;
        req[4] = (unsigned char)n;
        if (sl) {
            req[5] = 0x0a;
            req[6] = (unsigned char)sl;
            memcpy(req + 7, service, sl);
        }
        curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (char *)req);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)(5 + n));
        t = curl_slist_append(hdrs, "Content-Type: application/grpc");
        if (t)
            hdrs = t;
        t = t ? curl_slist_append(hdrs, "TE: trailers") : NULL;
        if (!t) {
            rc = -ENOMEM;
            goto out;
        }
        hdrs = t;
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK) {
        rc = cc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -ECONNREFUSED;
        diag_set(diag, "%s: %s", url, curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (grpc) {
        /* HealthCheckResponse{status = 1 (SERVING)} */
        if (status != 200 || b.len < 7 || b.p[5] != 0x08 || b.p[6] != 0x01) {
            rc = -EIO;
            diag_set(diag, "%s: not SERVING (HTTP %ld, %zu bytes)", url, status, b.len);
        }
    } else if (status < 200 || status >= 400) {
        rc = -EIO;
        diag_set(diag, "%s: HTTP %ld", url, status);
    }
out:
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

int agent_probe_run(const json_t *spec, struct diag *diag)
{
    json_int_t t = json_integer_value(json_object_get(spec, "timeoutSeconds"));
    long timeout_ms = (t > 0 && t <= 3600 ? (long)t : 1) * 1000;
    const json_t *h;

    if ((h = json_object_get(spec, "httpGet")))
        return http_probe(h, false, timeout_ms, diag);
    if ((h = json_object_get(spec, "grpc")))
        return http_probe(h, true, timeout_ms, diag);
    if ((h = json_object_get(spec, "tcpSocket"))) {
        if (port_of(h) < 0) {
            diag_set(diag, "the probe's port is invalid");
            return ERR_INVALID;
        }
        return tcp_probe(port_of(h), timeout_ms, diag);
    }
    diag_set(diag, "the probe has no httpGet, tcpSocket or grpc handler");
    return ERR_INVALID;
}
