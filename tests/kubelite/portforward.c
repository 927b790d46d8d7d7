/*
 * portforward.c - POST/GET pods/<name>/portforward: `kubectl port-forward`.
 *
 * A real API server upgrades the connection, proxies it to the kubelet of the pod's node, and the
 * container runtime connects each forwarded connection to 127.0.0.1:<port> inside the pod's
 * network namespace. kubelite runs beside its node: kubelet-lite writes the path of each pod's
 * network namespace to <dir>/<pod uid>/netns (<dir> named by the Node's annotation
 * kubelet-lite.weft.dev/pod-log-dir, as for pods/log), and kubelite enters it itself.
 *
 * Protocols, as kubectl 1.27-1.33 speak them:
 * - SPDY/3.1 (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: portforward.k8s.io`): every
 *   kubectl. Per forwarded connection the client opens two streams with the headers
 *   streamType (error | data), port and requestID; we answer each SYN_STREAM with a SYN_REPLY,
 *   connect once both are there, and copy bytes between the data stream and the socket. A
 *   failure is written as text on the error stream (kubectl prints it); the end of the socket
 *   half-closes both streams. Header blocks are zlib streams (one per direction, primed with
 *   the SPDY/3 dictionary).
 * - WebSocket (`Upgrade: websocket`, subprotocol `SPDY/3.1+portforward.k8s.io`, KEP-4006):
 *   kubectl from 1.30 on (when its PortForwardWebsockets gate is on: by default from 1.31)
 *   tries this first: the same SPDY frames, tunneled as the payload of binary WebSocket
 *   messages. A refused WebSocket upgrade makes kubectl fall back to SPDY.
 *
 * Each session (one upgraded connection) runs on a thread of its own that has entered the pod's
 * network namespace (setns(2) is per thread), so every socket it makes is the pod's. Bounds:
 * sessions at once, streams per session, bytes buffered per stream (past it the client's
 * connection is not read: TCP pushes back), bytes queued to the client (past it the pod's
 * sockets are not read), frame size, a pair's second stream within 30 s (the kubelet's
 * streamCreationTimeout), and an idle timeout (--stream-idle-timeout, the kubelet's
 * streamingConnectionIdleTimeout, 4 h by default).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/pfproto.h"

#define LOG_DIR_ANNOTATION "kubelet-lite.weft.dev/pod-log-dir"
#define PF_PROTOCOL "portforward.k8s.io"
#define PF_WS_PROTOCOL "SPDY/3.1+portforward.k8s.io"

#define PF_MAX_SESSIONS 64 /* upgraded connections at once (then 429) */

/* Lower-case Go's wording of an errno ("connection refused"). */
static void go_errstr(int err, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", strerror(err));
    if (out[0])
        out[0] = (char)tolower((unsigned char)out[0]);
}

static void pair_connect(struct pf_session *s, struct pf_pair *p);

/* Connecting to the address of this attempt failed with err: the next address, or the end. */
static void pair_attempt_failed(struct pf_session *s, struct pf_pair *p, int err)
{
    char e6[96], why[1400];

    if (p->attempt == 0) {
        go_errstr(err, p->v4err, sizeof(p->v4err));
        p->attempt = 1;
        pair_connect(s, p);
        return;
    }
    go_errstr(err, e6, sizeof(e6));
    snprintf(why, sizeof(why),
             "failed to execute portforward in network namespace \"%s\": failed to connect to "
             "localhost:%d inside namespace \"%s\", IPv4: dial tcp4 127.0.0.1:%d: connect: %s "
             "IPv6 dial tcp6 [::1]:%d: connect: %s ",
             s->netns, p->port, s->netns, p->port, p->v4err, p->port, e6);
    kl_pf_pair_fail(s, p, why);
}

/*
 * Connect to the pod's port as containerd does: 127.0.0.1 first, then [::1]. Non-blocking: a
 * listener whose backlog is full must not hold the session.
 */
static void pair_connect(struct pf_session *s, struct pf_pair *p)
{
    struct sockaddr_in a4 = {0};
    struct sockaddr_in6 a6 = {0};
    int fam = p->attempt == 0 ? AF_INET : AF_INET6;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err;

    if (fd < 0) {
        err = errno;
    } else if (fam == AF_INET) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)p->port);
        a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        err = connect(fd, (struct sockaddr *)&a4, sizeof(a4)) == 0 ? 0 : errno;
    } else {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)p->port);
        a6.sin6_addr = in6addr_loopback;
        err = connect(fd, (struct sockaddr *)&a6, sizeof(a6)) == 0 ? 0 : errno;
    }
    if (err == 0 || err == EINPROGRESS) {
        p->fd = fd;
        p->connecting = err == EINPROGRESS;
        p->connected = err == 0;
        return;
    }
    if (fd >= 0)
        close(fd);
    pair_attempt_failed(s, p, err);
}

/* A non-blocking connect finished (POLLOUT): connected, or the next address. */
static void pair_connect_done(struct pf_session *s, struct pf_pair *p)
{
    int err = 0;
    socklen_t l = sizeof(err);
    if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
        err = errno;
    p->connecting = false;
    if (!err) {
        p->connected = true;
        return;
    }
    close(p->fd);
    p->fd = -1;
    pair_attempt_failed(s, p, err);
}

/* Read what the client sent. */
static void client_read(struct pf_session *s)
{
    for (int round = 0; round < 8; round++) {
        ssize_t n;
        if (buf_reserve(&s->in, PF_READ_CHUNK)) {
            s->failed = true;
            return;
        }
        if (s->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_read(s->ssl, s->in.p + s->in.len, PF_READ_CHUNK);
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    s->failed = true;
                return;
            }
            n = r;
        } else {
            n = read(s->fd, s->in.p + s->in.len, PF_READ_CHUNK);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return;
            if (n <= 0) {
                s->failed = true;
                return;
            }
        }
        s->in.len += (size_t)n;
        kl_pf_input(s);
        if (s->in.len + s->spdy.len > 2 * PF_FRAME_MAX + 64) {
            s->failed = true; /* cannot happen with whole frames consumed; a guard */
            return;
        }
    }
}

static void client_flush(struct pf_session *s)
{
    while (s->out_off < s->out.len) {
        size_t left = s->out.len - s->out_off;
        ssize_t n;
        if (s->ssl) {
            int r;
            ERR_clear_error();
            r = SSL_write(s->ssl, s->out.p + s->out_off, (int)(left > 65536 ? 65536 : left));
            if (r <= 0) {
                int e = SSL_get_error(s->ssl, r);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    s->failed = true;
                break;
            }
            n = r;
        } else {
            n = write(s->fd, s->out.p + s->out_off, left);
            if (n < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            if (n <= 0) {
                s->failed = true;
                break;
            }
        }
        s->out_off += (size_t)n;
        s->last_active = kl_pf_now();
    }
    if (s->out_off == s->out.len) {
        buf_reset(&s->out);
        s->out_off = 0;
    } else if (s->out_off > (256u << 10)) {
        buf_consume(&s->out, s->out_off);
        s->out_off = 0;
    }
}

/* The pod's socket has bytes (or its end). */
static void pod_read(struct pf_session *s, struct pf_pair *p)
{
    char b[PF_READ_CHUNK];
    ssize_t n = read(p->fd, b, sizeof(b));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        kl_pf_pair_finish(s, p, true); /* the pod's end closed: both streams end */
        return;
    }
    kl_pf_send_data(s, p->data_id, false, b, (size_t)n);
    s->last_active = kl_pf_now();
}

static void pod_write(struct pf_session *s, struct pf_pair *p)
{
    while (p->to_pod.len) {
        ssize_t n = send(p->fd, p->to_pod.p, p->to_pod.len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            kl_pf_pair_finish(s, p, true);
            return;
        }
        buf_consume(&p->to_pod, (size_t)n);
    }
    if (p->client_fin && !p->shut_wr) {
        shutdown(p->fd, SHUT_WR);
        p->shut_wr = true;
    }
}

static void session_free(struct pf_session *s)
{
    kl_pf_release(s);
    if (s->ssl) {
        SSL_shutdown(s->ssl);
        SSL_free(s->ssl);
    }
    if (s->fd >= 0)
        close(s->fd);
    if (s->netns_fd >= 0)
        close(s->netns_fd);
    free(s);
}

/* Is fd the network namespace this thread is in already (a hostNetwork pod)? */
static bool same_netns(int fd)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && stat("/proc/thread-self/ns/net", &b) == 0 &&
           a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

static void *session_run(void *arg)
{
    struct pf_session *s = arg;
    struct kl_pf *pf = s->pf;
    struct pollfd pfd[1 + PF_MAX_PAIRS];
    struct pf_pair *polled[PF_MAX_PAIRS];

    if (s->netns_fd >= 0 && !same_netns(s->netns_fd) && setns(s->netns_fd, CLONE_NEWNET) < 0) {
        log_warn("msg=\"port-forward cannot enter the pod's network namespace\" pod=%s netns=%s "
                 "err=\"%s\"",
                 s->pod, s->netns, strerror(errno));
        s->failed = true;
    }
    log_info("msg=\"port-forward session\" pod=%s netns=%s protocol=%s", s->pod, s->netns,
             s->ws ? "websocket" : "spdy");
    s->last_active = kl_pf_now();
    while (!s->failed && !atomic_load(&pf->stop)) {
        size_t np = 0, backlog = 0;
        bool read_client = !s->closing;
        double t;
        int rc;

        for (size_t i = 0; i < s->npairs; i++) {
            if (s->pairs[i]->to_pod.len > PF_STREAM_BUF)
                read_client = false; /* one pod socket is slow: TCP pushes the client back */
        }
        backlog = s->out.len - s->out_off;
        if (backlog > PF_OUT_MAX)
            read_client = false; /* a client that does not read gets no more answers queued */
        if (s->closing && !backlog)
            break;
        if (s->closing && kl_pf_now() - s->closing_since > PF_CLOSE_GRACE)
            break; /* its GOAWAY was not taken */
        pfd[0].fd = s->fd;
        pfd[0].events = (short)((read_client ? POLLIN : 0) | (backlog ? POLLOUT : 0));
        pfd[0].revents = 0;
        for (size_t i = 0; i < s->npairs; i++) {
            struct pf_pair *p = s->pairs[i];
            short ev = 0;
            if (p->done || p->fd < 0)
                continue;
            if (p->connecting)
                ev = POLLOUT;
            else if (p->connected) {
                if (backlog < PF_OUT_MAX)
                    ev |= POLLIN;
                if (p->to_pod.len || (p->client_fin && !p->shut_wr))
                    ev |= POLLOUT;
            }
            pfd[1 + np].fd = p->fd;
            pfd[1 + np].events = ev;
            pfd[1 + np].revents = 0;
            polled[np++] = p;
        }
        rc = poll(pfd, 1 + np, s->ssl && SSL_pending(s->ssl) && read_client ? 0 : 500);
        if (rc < 0 && errno != EINTR) {
            s->failed = true;
            break;
        }
        if (pfd[0].revents & (POLLERR | POLLNVAL))
            s->failed = true;
        if (read_client &&
            ((pfd[0].revents & (POLLIN | POLLHUP)) || (s->ssl && SSL_pending(s->ssl))))
            client_read(s);
        for (size_t i = 0; i < np && !s->failed; i++) {
            struct pf_pair *p = polled[i];
            short re = pfd[1 + i].revents;
            if (p->done || !re)
                continue;
            if (p->connecting) {
                pair_connect_done(s, p);
                continue;
            }
            if (re & POLLOUT)
                pod_write(s, p);
            if (!p->done && (re & (POLLIN | POLLHUP | POLLERR)))
                pod_read(s, p);
        }
        /* bytes that arrived for sockets just connected, or with nothing polled yet */
        for (size_t i = 0; i < s->npairs; i++) {
            struct pf_pair *p = s->pairs[i];
            if (!p->done && p->connected && (p->to_pod.len || (p->client_fin && !p->shut_wr)))
                pod_write(s, p);
        }
        kl_pf_sweep(s);
        client_flush(s);
        t = kl_pf_now();
        if (t - s->last_active > s->idle_timeout && !s->closing) {
            log_info("msg=\"port-forward session idle, closing\" pod=%s idle_s=%.0f", s->pod,
                     s->idle_timeout);
            kl_pf_send_goaway(s, 0);
            client_flush(s);
        }
    }
    if (!s->failed && atomic_load(&pf->stop) && !s->closing) {
        kl_pf_send_goaway(s, 0);
        client_flush(s);
    }
    log_info("msg=\"port-forward session ended\" pod=%s", s->pod);
    session_free(s);
    atomic_fetch_sub(&pf->sessions, 1);
    return NULL;
}

/* Does the comma-separated header value list contain token (case-insensitive)? */
static bool hdr_has(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        const char *e;
        while (*v == ' ' || *v == ',' || *v == '\t')
            v++;
        e = v;
        while (*e && *e != ',')
            e++;
        {
            const char *t = e;
            while (t > v && (t[-1] == ' ' || t[-1] == '\t'))
                t--;
            if ((size_t)(t - v) == tl && strncasecmp(v, token, tl) == 0)
                return true;
        }
        v = e;
    }
    return false;
}

/* Every X-Stream-Protocol-Version value of the request (the header may repeat). */
static bool req_offers(const struct http_request *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->nhdrs; i++) {
        if (strcmp(req->hdr_names[i], name) == 0 && hdr_has(req->hdr_values[i], token))
            return true;
    }
    return false;
}

static void ws_accept_key(const char *key, char out[64])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    char cat[256];
    snprintf(cat, sizeof(cat), "%s%s", key, guid);
    EVP_Digest(cat, strlen(cat), md, &mdl, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdl);
}

void kl_pod_portforward(struct kl *kl, struct http_conn *c, const struct http_request *req,
                        const char *ns, const char *name)
{
    struct rstore *pods = kl_store_get(kl, "", "pods", false);
    struct rstore *nodes = kl_store_get(kl, "", "nodes", false);
    const char *upgrade = http_req_header(req, "upgrade");
    const char *node_name, *dir, *uid;
    const json_t *pod, *node;
    char key[600], msg[1200], path[4400], netns[256] = "", resp[512];
    bool ws;
    struct pf_session *s = NULL;
    pthread_t th;
    pthread_attr_t attr;
    FILE *f;
    int netns_fd = -1, rc;

    if (strcmp(req->method, "POST") != 0 && strcmp(req->method, "GET") != 0) {
        kl_respond_status(c, 405, "MethodNotAllowed",
                          "the server does not allow this method on the requested resource", NULL,
                          NULL, NULL, NULL);
        return;
    }
    kl_key(ns, name, key, sizeof(key));
    pod = pods ? kl_store_lookup(pods, key) : NULL;
    if (!pod) {
        snprintf(msg, sizeof(msg), "pods \"%s\" not found", name);
        kl_respond_status(c, 404, "NotFound", msg, "pods", name, "", NULL);
        return;
    }
    node_name = jstr(json_object_get(pod, "spec"), "nodeName");
    if (!node_name || !*node_name) {
        snprintf(msg, sizeof(msg), "pod %s does not have a host assigned", name);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return;
    }
    ws = upgrade && strcasecmp(upgrade, "websocket") == 0;
    if (ws ? !req_offers(req, "sec-websocket-protocol", PF_WS_PROTOCOL) ||
                 !http_req_header(req, "sec-websocket-key")
           : !upgrade || !hdr_has(upgrade, "SPDY/3.1")) {
        /* a refused WebSocket upgrade makes kubectl fall back to SPDY */
        kl_respond_status(c, 400, "BadRequest",
                          ws ? "unable to upgrade: no supported WebSocket subprotocol (supported: "
                               "[" PF_WS_PROTOCOL "])"
                             : "unable to upgrade: missing upgrade headers in request",
                          NULL, NULL, NULL, NULL);
        return;
    }
    if (!ws && !req_offers(req, "x-stream-protocol-version", PF_PROTOCOL)) {
        kl_respond_status(c, 403, "Forbidden",
                          "unable to upgrade: unable to negotiate protocol: server supports "
                          "[" PF_PROTOCOL "]",
                          NULL, NULL, NULL, NULL);
        return;
    }
    kl_key(NULL, node_name, key, sizeof(key));
    node = nodes ? kl_store_lookup(nodes, key) : NULL;
    dir = jstr(jget2(node, "metadata", "annotations"), LOG_DIR_ANNOTATION);
    uid = jstr_or(json_object_get(pod, "metadata"), "uid", "");
    if (!dir || dir[0] != '/' || strchr(uid, '/') || !uid[0]) {
        snprintf(
            msg, sizeof(msg),
            "node %s cannot forward ports (kubelite enters the network namespaces of a "
            "kubelet-lite node, which names its pod directory in the annotation " LOG_DIR_ANNOTATION
            ")",
            node_name);
        kl_respond_status(c, 400, "BadRequest", msg, NULL, NULL, NULL, NULL);
        return;
    }
    snprintf(path, sizeof(path), "%s/%s/netns", dir, uid);
    f = fopen(path, "re");
    if (f) {
        if (!fgets(netns, sizeof(netns), f))
            netns[0] = '\0';
        fclose(f);
        netns[strcspn(netns, "\n")] = '\0';
    }
    if (netns[0] != '/') {
        /* the kubelet's answer for a pod it does not run (yet) */
        snprintf(msg, sizeof(msg), "pod not found (\"%s_%s\")", name, ns);
        kl_respond_status(c, 404, "NotFound", msg, NULL, NULL, NULL, NULL);
        return;
    }
    netns_fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (netns_fd < 0) {
        snprintf(msg, sizeof(msg), "cannot open the network namespace %s of pod %s/%s: %s", netns,
                 ns, name, strerror(errno));
        kl_respond_status(c, 500, "InternalError", msg, NULL, NULL, NULL, NULL);
        return;
    }
    if (atomic_fetch_add(&kl->pf.sessions, 1) >= PF_MAX_SESSIONS) {
        atomic_fetch_sub(&kl->pf.sessions, 1);
        close(netns_fd);
        log_warn("msg=\"port-forward refused: too many sessions\" max=%d", PF_MAX_SESSIONS);
        kl_respond_status(c, 429, "TooManyRequests",
                          "too many port-forward connections at once, try again later", NULL, NULL,
                          NULL, NULL);
        return;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        goto fail;
    s->pf = &kl->pf;
    s->fd = -1;
    s->netns_fd = netns_fd;
    netns_fd = -1;
    s->pair_ready = pair_connect;
    s->idle_timeout = kl->pf.idle_timeout > 0 ? kl->pf.idle_timeout : 4 * 3600;
    snprintf(s->netns, sizeof(s->netns), "%s", netns);
    snprintf(s->pod, sizeof(s->pod), "%s/%s", ns, name);
    snprintf(s->uid, sizeof(s->uid), "%s", uid);
    if (kl_pf_init(s, ws))
        goto fail;
    if (ws) {
        char acc[64];
        ws_accept_key(http_req_header(req, "sec-websocket-key"), acc);
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                 "Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: " PF_WS_PROTOCOL
                 "\r\n\r\n",
                 acc);
    } else {
        snprintf(resp, sizeof(resp),
                 "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "
                 "SPDY/3.1\r\nX-Stream-Protocol-Version: " PF_PROTOCOL "\r\n\r\n");
    }
    if (buf_puts(&s->out, resp))
        goto fail;
    {
        char *early = NULL;
        size_t early_len = 0;
        rc = http_conn_takeover(c, &s->fd, &s->ssl, &early, &early_len);
        if (rc)
            goto fail;
        if (early_len && buf_append(&s->in, early, early_len)) {
            free(early);
            goto fail_taken;
        }
        free(early);
    }
    {
        /* the session thread does blocking-free I/O on non-blocking sockets */
        int fl = fcntl(s->fd, F_GETFL);
        if (fl >= 0)
            fcntl(s->fd, F_SETFL, fl | O_NONBLOCK);
    }
    if (s->ssl)
        SSL_set_mode(s->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (s->in.len)
        kl_pf_input(s);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&th, &attr, session_run, s);
    pthread_attr_destroy(&attr);
    if (rc) {
        log_warn("msg=\"port-forward: no thread\" err=\"%s\"", strerror(rc));
        goto fail_taken;
    }
    return;
fail_taken:
    /* the connection is ours: nothing can be answered on it any more */
    session_free(s);
    atomic_fetch_sub(&kl->pf.sessions, 1);
    return;
fail:
    if (s)
        session_free(s);
    if (netns_fd >= 0)
        close(netns_fd);
    atomic_fetch_sub(&kl->pf.sessions, 1);
    kl_respond_status(c, 500, "InternalError", "port-forward: out of memory", NULL, NULL, NULL,
                      NULL);
}

void kl_portforward_shutdown(struct kl *kl)
{
    atomic_store(&kl->pf.stop, true);
    for (int i = 0; i < 40 && atomic_load(&kl->pf.sessions) > 0; i++)
        usleep(50 * 1000);
}
