/*
 * webhook_bench.c - the injection webhook over HTTPS with keep-alive: latency percentiles at
 * fixed request rates and the highest rate, against a trivial TLS server in the same run.
 *
 *   webhook_bench [--seconds S] [--conns N] [--rates R1,R2,...] [--closed-conns N]
 *   webhook_bench --target PORT --ca FILE [--seconds S] [--conns N] [--rates R1,...]
 *
 * With --target, only the open-loop client runs, against a running weftd's webhook on
 * 127.0.0.1:PORT whose serving certificate verifies against the root in FILE (PEM); one line
 * per rate, "target <rate>/s open: achieved ... p50 ... p99 ... errors ..." (used by
 * bench/hostile_bench.sh, legitimate reviews while weftd is under attack).
 *
 * Servers (each a fork()ed child running its own http_server_run loop on one thread, as
 * weftd's webhook port runs on weftd's one loop thread):
 *   webhook  lib/http with TLS and, for POST /inject, webhook_review() with the default
 *            injection config; the answer is sent as weftd's handler sends it
 *            (weftd/webhook_server.c: path and method checks, then the review's status and
 *            JSON unchanged).
 *   trivial  the same lib/http TLS server answering every request with a fixed 200
 *            application/json body of the same size as the webhook's answer (the transport
 *            floor: TLS, HTTP parsing, loopback).
 * Both use one serving certificate issued by ca/ (ca_issue_server, ECDSA P-256, for 127.0.0.1)
 * under a generated root, in an SSL_CTX set up as weftd's (TLS 1.2 minimum, OpenSSL defaults
 * otherwise); the client verifies it against the root.
 *
 * The request is one AdmissionReview v1 as kubelite (and kube-apiserver) sends it for a pod
 * made by a Deployment's ReplicaSet: a typical 3-container pod (app with two HTTP probes and a
 * named port, a log shipper, a metrics exporter) with defaulted fields, the projected
 * ServiceAccount token volume, ownerReferences and managedFields. Every request carries its
 * own request.uid, and every webhook answer is checked: status 200, the uid echoed, a patch.
 *
 * Load: N keep-alive TLS connections (OpenSSL, non-blocking, one epoll loop, TCP_NODELAY),
 * one request in flight per connection.
 *   open loop  request i is due at start + i / rate, whatever happened before; it goes out on
 *              the first idle connection at or after that time (a timerfd wakes the loop).
 *              Latency = answer fully read - due time, so queueing behind a slow answer counts
 *              (no coordinated omission).
 *   closed loop every connection sends its next request as soon as its answer is in (N
 *              outstanding); the achieved rate is the server's maximum for N connections.
 * Each run lasts S seconds after a short unmeasured warm-up on the same connections.
 *
 * Also measured in-process (this thread's CPU time, no I/O): webhook_review() per call, and as
 * its floor conf_json_loadb + conf_json_dump of the same review (parsing the request and
 * writing a document of that size is the least any implementation must do), with jansson's
 * json_loadb + json_dumps of the same for reference. The server's CPU time per
 * request comes from the child's CPU clock (clock_getcpuclockid) over each run.
 *
 * Exit status: 0 when every answer was correct, 1 otherwise (missing the targets is reported,
 * not an error).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <uv.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "conf/jsonio.h"
#include "core/buf.h"
#include "core/err.h"
#include "http/http.h"
#include "webhook/webhook.h"

#define MAX_BODY (4 * 1024 * 1024) /* weftd's webhook body limit (weftd/httpuv.c) */
#define UID_PREFIX "\"request\":{\"uid\":\""
#define UID_LEN 36
#define RBUF_MAX (256 * 1024)

/* ---- the request ------------------------------------------------------------------------- */

/*
 * The AdmissionReview for a pod created by the ReplicaSet controller: what the API server has
 * after defaulting and the ServiceAccount admission plugin, when the mutating webhooks run.
 * In parts (C compilers need not accept longer string literals); review_build joins them.
 */
static const char *const review_parts[] = {
    "{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\",\"request\":{"
    "\"uid\":\"00000000-0000-4000-8000-000000000000\","
    "\"kind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
    "\"resource\":{\"group\":\"\",\"version\":\"v1\",\"resource\":\"pods\"},"
    "\"requestKind\":{\"group\":\"\",\"version\":\"v1\",\"kind\":\"Pod\"},"
    "\"requestResource\":{\"group\":\"\",\"version\":\"v1\",\"resource\":\"pods\"},"
    "\"namespace\":\"shop\",\"operation\":\"CREATE\","
    "\"userInfo\":{\"username\":\"system:serviceaccount:kube-system:replicaset-controller\","
    "\"uid\":\"5b0f4e9c-7f0e-4a53-9f36-0d2b0c8d1f11\",\"groups\":[\"system:serviceaccounts\","
    "\"system:serviceaccounts:kube-system\",\"system:authenticated\"]},"
    "\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{"
    "\"generateName\":\"checkout-7d9f8b6c5d-\",\"namespace\":\"shop\",\"creationTimestamp\":null,"
    "\"labels\":{\"app\":\"checkout\",\"app.kubernetes.io/name\":\"checkout\","
    "\"app.kubernetes.io/part-of\":\"shop\",\"pod-template-hash\":\"7d9f8b6c5d\","
    "\"version\":\"v2\"},"
    "\"annotations\":{\"kubectl.kubernetes.io/restartedAt\":\"2026-11-20T09:14:02Z\","
    "\"checksum/config\":"
    "\"4f1c2d7a9b3e8f60c5d1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7\"},"
    "\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
    "\"name\":\"checkout-7d9f8b6c5d\",\"uid\":\"e3b0c442-98fc-4c14-9afb-f4c8996fb924\","
    "\"controller\":true,\"blockOwnerDeletion\":true}],"
    "\"managedFields\":[{\"manager\":\"kube-controller-manager\",\"operation\":\"Update\","
    "\"apiVersion\":\"v1\",\"time\":\"2026-11-20T09:14:03Z\",\"fieldsType\":\"FieldsV1\","
    "\"fieldsV1\":{\"f:metadata\":{\"f:annotations\":{\".\":{},"
    "\"f:kubectl.kubernetes.io/restartedAt\":{},\"f:checksum/config\":{}},"
    "\"f:generateName\":{},\"f:labels\":{\".\":{},\"f:app\":{},"
    "\"f:app.kubernetes.io/name\":{},\"f:app.kubernetes.io/part-of\":{},"
    "\"f:pod-template-hash\":{},\"f:version\":{}},\"f:ownerReferences\":{\".\":{},"
    "\"k:{\\\"uid\\\":\\\"e3b0c442-98fc-4c14-9afb-f4c8996fb924\\\"}\":{}}},"
    "\"f:spec\":{\"f:containers\":{\"k:{\\\"name\\\":\\\"checkout\\\"}\":{\".\":{},"
    "\"f:env\":{},\"f:image\":{},\"f:livenessProbe\":{},\"f:name\":{},\"f:ports\":{},"
    "\"f:readinessProbe\":{},\"f:resources\":{},\"f:volumeMounts\":{}},"
    "\"k:{\\\"name\\\":\\\"log-shipper\\\"}\":{\".\":{},\"f:args\":{},\"f:image\":{},"
    "\"f:name\":{},\"f:volumeMounts\":{}},"
    "\"k:{\\\"name\\\":\\\"metrics\\\"}\":{\".\":{},\"f:image\":{},\"f:name\":{},"
    "\"f:ports\":{}}},\"f:securityContext\":{},\"f:serviceAccountName\":{},"
    "\"f:volumes\":{}}}}]},",
    "\"spec\":{\"volumes\":["
    "{\"name\":\"config\",\"configMap\":{\"name\":\"checkout-config\",\"defaultMode\":420}},"
    "{\"name\":\"logs\",\"emptyDir\":{}},"
    "{\"name\":\"kube-api-access-x7k2p\",\"projected\":{\"sources\":["
    "{\"serviceAccountToken\":{\"expirationSeconds\":3607,\"path\":\"token\"}},"
    "{\"configMap\":{\"name\":\"kube-root-ca.crt\",\"items\":[{\"key\":\"ca.crt\","
    "\"path\":\"ca.crt\"}]}},"
    "{\"downwardAPI\":{\"items\":[{\"path\":\"namespace\",\"fieldRef\":{\"apiVersion\":\"v1\","
    "\"fieldPath\":\"metadata.namespace\"}}]}}],\"defaultMode\":420}}],"
    "\"containers\":["
    "{\"name\":\"checkout\",\"image\":\"registry.example.com/shop/checkout:2.14.1\","
    "\"ports\":[{\"name\":\"http\",\"containerPort\":8080,\"protocol\":\"TCP\"},"
    "{\"name\":\"grpc\",\"containerPort\":9090,\"protocol\":\"TCP\"}],"
    "\"env\":[{\"name\":\"LOG_LEVEL\",\"value\":\"info\"},"
    "{\"name\":\"PAYMENTS_URL\",\"value\":\"http://payments.shop.svc:8080\"},"
    "{\"name\":\"DB_PASSWORD\",\"valueFrom\":{\"secretKeyRef\":{\"name\":\"checkout-db\","
    "\"key\":\"password\"}}},"
    "{\"name\":\"POD_NAME\",\"valueFrom\":{\"fieldRef\":{\"apiVersion\":\"v1\","
    "\"fieldPath\":\"metadata.name\"}}},"
    "{\"name\":\"GOMAXPROCS\",\"valueFrom\":{\"resourceFieldRef\":{\"resource\":"
    "\"limits.cpu\",\"divisor\":\"1\"}}}],"
    "\"resources\":{\"limits\":{\"cpu\":\"2\",\"memory\":\"1Gi\"},"
    "\"requests\":{\"cpu\":\"500m\",\"memory\":\"512Mi\"}},"
    "\"volumeMounts\":[{\"name\":\"config\",\"readOnly\":true,\"mountPath\":\"/etc/checkout\"},"
    "{\"name\":\"logs\",\"mountPath\":\"/var/log/checkout\"},"
    "{\"name\":\"kube-api-access-x7k2p\",\"readOnly\":true,"
    "\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"}],"
    "\"livenessProbe\":{\"httpGet\":{\"path\":\"/healthz\",\"port\":\"http\","
    "\"scheme\":\"HTTP\"},\"initialDelaySeconds\":10,\"timeoutSeconds\":1,"
    "\"periodSeconds\":10,\"successThreshold\":1,\"failureThreshold\":3},"
    "\"readinessProbe\":{\"httpGet\":{\"path\":\"/ready\",\"port\":8080,\"scheme\":\"HTTP\","
    "\"httpHeaders\":[{\"name\":\"X-Probe\",\"value\":\"kubelet\"}]},\"timeoutSeconds\":1,"
    "\"periodSeconds\":5,\"successThreshold\":1,\"failureThreshold\":3},"
    "\"terminationMessagePath\":\"/dev/termination-log\","
    "\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"IfNotPresent\","
    "\"securityContext\":{\"allowPrivilegeEscalation\":false,\"readOnlyRootFilesystem\":true,"
    "\"capabilities\":{\"drop\":[\"ALL\"]}}},",
    "{\"name\":\"log-shipper\",\"image\":\"registry.example.com/infra/fluent-bit:3.1.9\","
    "\"args\":[\"--config\",\"/etc/checkout/fluent-bit.conf\"],"
    "\"resources\":{\"limits\":{\"memory\":\"128Mi\"},\"requests\":{\"cpu\":\"50m\","
    "\"memory\":\"64Mi\"}},"
    "\"volumeMounts\":[{\"name\":\"logs\",\"readOnly\":true,\"mountPath\":\"/var/log/checkout\"},"
    "{\"name\":\"config\",\"readOnly\":true,\"mountPath\":\"/etc/checkout\"},"
    "{\"name\":\"kube-api-access-x7k2p\",\"readOnly\":true,"
    "\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"}],"
    "\"terminationMessagePath\":\"/dev/termination-log\","
    "\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"IfNotPresent\"},"
    "{\"name\":\"metrics\",\"image\":\"registry.example.com/infra/exporter:1.8.2\","
    "\"ports\":[{\"name\":\"metrics\",\"containerPort\":9100,\"protocol\":\"TCP\"}],"
    "\"resources\":{\"limits\":{\"memory\":\"64Mi\"},\"requests\":{\"cpu\":\"10m\","
    "\"memory\":\"32Mi\"}},"
    "\"readinessProbe\":{\"tcpSocket\":{\"port\":9100},\"timeoutSeconds\":1,"
    "\"periodSeconds\":10,\"successThreshold\":1,\"failureThreshold\":3},"
    "\"volumeMounts\":[{\"name\":\"kube-api-access-x7k2p\",\"readOnly\":true,"
    "\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"}],"
    "\"terminationMessagePath\":\"/dev/termination-log\","
    "\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"IfNotPresent\"}],"
    "\"restartPolicy\":\"Always\",\"terminationGracePeriodSeconds\":30,"
    "\"dnsPolicy\":\"ClusterFirst\",\"serviceAccountName\":\"checkout\","
    "\"serviceAccount\":\"checkout\",\"securityContext\":{\"runAsNonRoot\":true,"
    "\"runAsUser\":10001,\"fsGroup\":2000,\"seccompProfile\":{\"type\":\"RuntimeDefault\"}},"
    "\"schedulerName\":\"default-scheduler\",\"tolerations\":["
    "{\"key\":\"node.kubernetes.io/not-ready\",\"operator\":\"Exists\",\"effect\":\"NoExecute\","
    "\"tolerationSeconds\":300},"
    "{\"key\":\"node.kubernetes.io/unreachable\",\"operator\":\"Exists\","
    "\"effect\":\"NoExecute\",\"tolerationSeconds\":300}],"
    "\"priority\":0,\"enableServiceLinks\":true,\"preemptionPolicy\":\"PreemptLowerPriority\"},"
    "\"status\":{}},"
    "\"oldObject\":null,\"dryRun\":false,"
    "\"options\":{\"kind\":\"CreateOptions\",\"apiVersion\":\"meta.k8s.io/v1\"}}}",
    NULL,
};

/* The review as one NUL-terminated string (free()), or NULL. */
static char *review_build(void)
{
    size_t len = 0;
    char *s;

    for (size_t i = 0; review_parts[i]; i++)
        len += strlen(review_parts[i]);
    s = malloc(len + 1);
    if (!s)
        return NULL;
    s[0] = '\0';
    for (size_t i = 0; review_parts[i]; i++)
        strcat(s, review_parts[i]);
    return s;
}

/* ---- small helpers ------------------------------------------------------------------------ */

static uint64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/* Write the request number n into a UUID's last 12 hex digits. */
static void uid_set(char *uid, uint64_t n)
{
    static const char hex[] = "0123456789abcdef";

    for (int i = UID_LEN - 1; i >= UID_LEN - 12; i--, n >>= 4)
        uid[i] = hex[n & 15];
}

/* ---- TLS material ------------------------------------------------------------------------- */

struct tls {
    SSL_CTX *server; /* as weftd's: TLS_server_method, TLS 1.2 minimum, the serving cert */
    SSL_CTX *client; /* verifies the chain against the root and the IP SAN 127.0.0.1 */
};

static int ctx_use_pem(SSL_CTX *ctx, const char *chain_pem, const char *key_pem)
{
    BIO *cb = BIO_new_mem_buf(chain_pem, -1), *kb = BIO_new_mem_buf(key_pem, -1);
    X509 *x = cb ? PEM_read_bio_X509(cb, NULL, NULL, NULL) : NULL;
    EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    int rc = -EIO;

    if (x && k && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, k) == 1 &&
        SSL_CTX_check_private_key(ctx) == 1)
        rc = 0;
    X509_free(x);
    EVP_PKEY_free(k);
    BIO_free(cb);
    BIO_free(kb);
    return rc;
}

static int ctx_trust_pem(SSL_CTX *ctx, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509_STORE *st = SSL_CTX_get_cert_store(ctx);
    X509 *x;
    int n = 0;

    if (!b)
        return -ENOMEM;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(st, x) == 1)
            n++;
        X509_free(x);
    }
    ERR_clear_error();
    BIO_free(b);
    return n > 0 ? 0 : -EIO;
}

static void tls_release(struct tls *t)
{
    SSL_CTX_free(t->server);
    SSL_CTX_free(t->client);
    memset(t, 0, sizeof(*t));
}

static int tls_init(struct tls *t)
{
    const char *dns[] = {"localhost"};
    const char *ips[] = {"127.0.0.1"};
    struct ca_signer *root = NULL;
    struct ca *ca = NULL;
    struct ca_leaf leaf = {0};
    char *key = NULL, *bundle = NULL;
    int rc;

    memset(t, 0, sizeof(*t));
    rc = ca_signer_generate_root(time(NULL), &root);
    if (!rc)
        rc = ca_new(root, &ca); /* consumes root */
    if (!rc)
        rc = ca_issue_server(ca, dns, 1, ips, 1, 3600, &leaf, &key);
    if (!rc)
        rc = ca_bundle_pem(ca, &bundle, NULL);
    if (rc)
        goto out;
    rc = -EIO;
    t->server = SSL_CTX_new(TLS_server_method());
    t->client = SSL_CTX_new(TLS_client_method());
    if (!t->server || !t->client)
        goto out;
    SSL_CTX_set_min_proto_version(t->server, TLS1_2_VERSION);
    if (ctx_use_pem(t->server, leaf.chain_pem, key) || ctx_trust_pem(t->client, bundle))
        goto out;
    SSL_CTX_set_verify(t->client, SSL_VERIFY_PEER, NULL);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_CTX_get0_param(t->client), "127.0.0.1");
    SSL_CTX_set_mode(t->client, SSL_MODE_ENABLE_PARTIAL_WRITE);
    rc = 0;
out:
    if (rc)
        tls_release(t);
    ca_leaf_release(&leaf);
    ca_key_pem_free(key);
    free(bundle);
    ca_free(ca);
    return rc;
}

/* ---- the servers (child processes) -------------------------------------------------------- */

/*
 * SERVER_WEBHOOK: the review on the server's only thread (weftd before it used workers);
 * SERVER_POOL: weftd as it is, lib/http on a libuv loop, reviews on libuv's worker pool.
 */
enum server_kind { SERVER_TRIVIAL, SERVER_WEBHOOK, SERVER_POOL };

struct server_arg {
    enum server_kind kind;
    const struct inject_config *cfg;
    const char *fixed; /* SERVER_TRIVIAL: the body */
    size_t fixed_len;
};

/* weftd's POST /inject handler (weftd/webhook_server.c), less its metrics counters. */
static void handle_webhook(const struct server_arg *a, struct http_conn *c,
                           const struct http_request *req)
{
    char *resp = NULL;
    int status = 500;

    if (strcmp(req->path, "/inject") != 0) {
        http_respond(c, 404, "text/plain", "not found\n", 10, NULL);
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        http_respond(c, 405, "text/plain", "use POST\n", 9, "Allow: POST\r\n");
        return;
    }
    if (webhook_review(a->cfg, req->body, req->body_len, &resp, &status)) {
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    http_respond(c, status, "application/json", resp, strlen(resp), NULL);
    free(resp);
}

static void handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    const struct server_arg *a = arg;

    if (a->kind == SERVER_WEBHOOK)
        handle_webhook(a, c, req);
    else
        http_respond(c, 200, "application/json", a->fixed, a->fixed_len, NULL);
}

/*
 * SERVER_POOL: the shape of weftd/webhook_server.c and weftd/httpuv.c (kept in step by hand; the
 * bench cannot link the weftd binary's files): the lib/http server's epoll descriptor polled by
 * a libuv loop, each review deferred to the worker pool and answered when it is done.
 */
struct pool_srv {
    struct http_server *s;
    struct http_uv *uv; /* drives s from the loop (lib/http) */
    const struct inject_config *cfg;
};

struct pool_job {
    uv_work_t work;
    struct pool_srv *p;
    struct http_conn *c;
    char *body;
    size_t len;
    char *resp;
    int status, rc;
};

static void pool_gone(void *arg, struct http_conn *c)
{
    struct pool_job *j = arg;
    (void)c;
    j->c = NULL;
}

static void pool_work(uv_work_t *w)
{
    struct pool_job *j = w->data;
    j->rc = webhook_review(j->p->cfg, j->body, j->len, &j->resp, &j->status);
}

static void pool_done(uv_work_t *w, int cancelled)
{
    struct pool_job *j = w->data;
    if (j->c) {
        if (cancelled || j->rc)
            http_respond(j->c, 500, "text/plain", "out of memory\n", 14, NULL);
        else
            http_respond(j->c, j->status, "application/json", j->resp, strlen(j->resp), NULL);
        http_uv_kick(j->p->uv);
    }
    free(j->resp);
    free(j->body);
    free(j);
}

static void pool_handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct pool_srv *p = arg;
    struct pool_job *j;

    if (strcmp(req->path, "/inject") != 0 || strcmp(req->method, "POST") != 0) {
        http_respond(c, 404, "text/plain", "not found\n", 10, NULL);
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j)
        j->body = malloc(req->body_len + 1);
    if (!j || !j->body) {
        free(j);
        http_respond(c, 500, "text/plain", "out of memory\n", 14, NULL);
        return;
    }
    memcpy(j->body, req->body, req->body_len);
    j->body[req->body_len] = '\0';
    j->len = req->body_len;
    j->p = p;
    j->c = c;
    j->work.data = j;
    http_defer(c, pool_gone, j);
    if (uv_queue_work(uv_default_loop(), &j->work, pool_work, pool_done)) {
        pool_work(&j->work);
        http_respond(c, j->status, "application/json", j->resp ? j->resp : "",
                     j->resp ? strlen(j->resp) : 0, NULL);
        free(j->resp);
        free(j->body);
        free(j);
    }
}

static int pool_serve(SSL_CTX *ctx, const struct inject_config *cfg, int pipe_fd)
{
    struct pool_srv p;
    int pt = -1;

    memset(&p, 0, sizeof(p));
    p.cfg = cfg;
    if (http_server_new("127.0.0.1:0", ctx, MAX_BODY, pool_handle, &p, &p.s) == 0)
        pt = http_server_port(p.s);
    if (write(pipe_fd, &pt, sizeof(pt)) != (ssize_t)sizeof(pt) || pt < 0)
        return 1;
    close(pipe_fd);
    if (http_uv_attach(uv_default_loop(), p.s, &p.uv) < 0)
        return 1;
    return uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

/* Fork a server; *pid and *port on success. The child never returns. */
static int server_start(SSL_CTX *ctx, struct server_arg *a, pid_t *pid, int *port)
{
    int p[2];
    pid_t child;
    int got = 0;

    if (pipe(p) < 0)
        return -errno;
    fflush(NULL);
    child = fork();
    if (child < 0) {
        close(p[0]);
        close(p[1]);
        return -errno;
    }
    if (child == 0) {
        struct http_server *s = NULL;
        int pt = -1;

        close(p[0]);
        if (a->kind == SERVER_POOL)
            _exit(pool_serve(ctx, a->cfg, p[1]));
        if (http_server_new("127.0.0.1:0", ctx, MAX_BODY, handle, a, &s) == 0)
            pt = http_server_port(s);
        if (write(p[1], &pt, sizeof(pt)) != (ssize_t)sizeof(pt) || pt < 0)
            _exit(1);
        close(p[1]);
        _exit(http_server_run(s) == 0 ? 0 : 1);
    }
    close(p[1]);
    if (read(p[0], &got, sizeof(got)) != (ssize_t)sizeof(got) || got <= 0) {
        close(p[0]);
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return -EIO;
    }
    close(p[0]);
    *pid = child;
    *port = got;
    return 0;
}

static void server_stop(pid_t pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

/* ---- the load generator ------------------------------------------------------------------- */

enum conn_state { CONN_IDLE, CONN_WRITING, CONN_READING, CONN_DEAD };

struct conn {
    int fd;
    SSL *ssl;
    enum conn_state state;
    char *req; /* head + body; its uid is rewritten for each request */
    size_t req_len;
    char *uid; /* inside req */
    size_t woff;
    char *rbuf;
    size_t rlen;
    size_t need; /* full answer length once the head is in, else 0 */
    uint64_t due;
    uint64_t seq;
};

struct load {
    int epfd, tfd;
    struct conn *c;
    int n;
    bool check_uid; /* the webhook echoes request.uid */
    /* the current run */
    double rate; /* 0: closed loop */
    uint64_t t0, end;
    uint64_t next, total; /* open loop: next request to send, requests in the run */
    uint64_t seq;
    int busy;
    uint64_t *lat;
    size_t nlat, cap;
    uint64_t last_done;
    long errors;
    char first_error[256];
};

static void load_error(struct load *l, const char *msg)
{
    if (!l->errors++)
        snprintf(l->first_error, sizeof(l->first_error), "%s", msg);
}

/* A request that will get no (usable) answer: count it and free its connection. */
static void conn_fail(struct load *l, struct conn *c, const char *why)
{
    load_error(l, why);
    if (c->state == CONN_WRITING || c->state == CONN_READING) {
        c->state = CONN_IDLE;
        l->busy--;
    }
}

static int conn_events(struct load *l, struct conn *c, unsigned ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};

    return epoll_ctl(l->epfd, EPOLL_CTL_MOD, c->fd, &e);
}

/* Open one verified TLS connection (blocking handshake), then make it non-blocking. */
static int conn_open(struct load *l, struct conn *c, SSL_CTX *ctx, int port, const char *req,
                     size_t req_len)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    int one = 1;
    char *u;

    memset(c, 0, sizeof(*c));
    c->fd = -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->req = malloc(req_len);
    c->rbuf = malloc(RBUF_MAX);
    if (!c->req || !c->rbuf)
        return -ENOMEM;
    memcpy(c->req, req, req_len);
    c->req_len = req_len;
    u = memmem(c->req, req_len, UID_PREFIX, strlen(UID_PREFIX));
    if (!u)
        return -EINVAL;
    c->uid = u + strlen(UID_PREFIX);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -errno;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return -errno;
    c->ssl = SSL_new(ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 || SSL_connect(c->ssl) != 1 ||
        SSL_get_verify_result(c->ssl) != X509_V_OK) {
        ERR_print_errors_fp(stderr);
        return -EIO;
    }
    if (fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK) < 0)
        return -errno;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, c->fd, &e) < 0)
        return -errno;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_shutdown(c->ssl);
        SSL_free(c->ssl);
    }
    if (c->fd >= 0)
        close(c->fd);
    free(c->req);
    free(c->rbuf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static void record(struct load *l, uint64_t v)
{
    if (l->nlat == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;
        uint64_t *p = realloc(l->lat, cap * sizeof(*p));

        if (!p) {
            load_error(l, "out of memory");
            return;
        }
        l->lat = p;
        l->cap = cap;
    }
    l->lat[l->nlat++] = v;
}

static void conn_write(struct load *l, struct conn *c)
{
    while (c->woff < c->req_len) {
        int r = SSL_write(c->ssl, c->req + c->woff, (int)(c->req_len - c->woff));

        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);

            if (e == SSL_ERROR_WANT_WRITE) {
                conn_events(l, c, EPOLLIN | EPOLLOUT);
                return;
            }
            if (e == SSL_ERROR_WANT_READ)
                return;
            conn_fail(l, c, "write failed");
            return;
        }
        c->woff += (size_t)r;
    }
    conn_events(l, c, EPOLLIN);
    c->state = CONN_READING;
}

static void conn_send(struct load *l, struct conn *c, uint64_t due)
{
    uid_set(c->uid, ++l->seq);
    c->seq = l->seq;
    c->due = due;
    c->woff = 0;
    c->rlen = 0;
    c->need = 0;
    c->state = CONN_WRITING;
    l->busy++;
    conn_write(l, c);
}

/* The answer is complete: check it, record its latency. */
static void conn_done(struct load *l, struct conn *c, uint64_t now)
{
    const char *body;
    char want[UID_LEN + 1], msg[256];

    c->rbuf[c->rlen] = '\0';
    body = strstr(c->rbuf, "\r\n\r\n");
    if (strncmp(c->rbuf, "HTTP/1.1 200 ", 13) != 0) {
        snprintf(msg, sizeof(msg), "answer is not 200: %.60s", c->rbuf);
        load_error(l, msg);
    } else if (l->check_uid) {
        memcpy(want, c->uid, UID_LEN);
        want[UID_LEN] = '\0';
        if (!strstr(body, want)) {
            snprintf(msg, sizeof(msg), "answer does not echo uid %s", want);
            load_error(l, msg);
        } else if (!strstr(body, "\"patch\":\"") || !strstr(body, "\"allowed\":true")) {
            snprintf(msg, sizeof(msg), "answer has no patch: %.200s", body);
            load_error(l, msg);
        }
    }
    record(l, now - c->due);
    l->last_done = now;
    c->state = CONN_IDLE;
    l->busy--;
}

static void conn_read(struct load *l, struct conn *c)
{
    for (;;) {
        int r;

        if (c->rlen >= RBUF_MAX - 1) {
            conn_fail(l, c, "answer too large");
            return;
        }
        r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)(RBUF_MAX - 1 - c->rlen));
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);

            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                conn_fail(l, c, "connection lost");
                if (epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL) == 0)
                    c->state = CONN_DEAD;
            }
            return;
        }
        if (c->state != CONN_READING) {
            load_error(l, "data while not reading");
            continue;
        }
        c->rlen += (size_t)r;
        if (!c->need) {
            char *end;
            const char *cl;

            c->rbuf[c->rlen] = '\0';
            end = strstr(c->rbuf, "\r\n\r\n");
            if (!end)
                continue;
            cl = strcasestr(c->rbuf, "\r\ncontent-length:");
            if (!cl || cl > end) {
                conn_fail(l, c, "answer without Content-Length");
                return;
            }
            c->need = (size_t)(end + 4 - c->rbuf) + strtoul(cl + 17, NULL, 10);
        }
        if (c->rlen >= c->need) {
            if (c->rlen > c->need)
                load_error(l, "more bytes than the answer");
            conn_done(l, c, mono_ns());
            return;
        }
    }
}

static uint64_t due_of(const struct load *l, uint64_t i)
{
    return l->t0 + (uint64_t)((double)i * 1e9 / l->rate);
}

/* Send whatever is due on idle connections; arm the timer for the next due request. */
static void dispatch(struct load *l, uint64_t now)
{
    for (int i = 0; i < l->n; i++) {
        struct conn *c = &l->c[i];

        if (c->state != CONN_IDLE)
            continue;
        if (l->rate > 0) {
            if (l->next >= l->total || due_of(l, l->next) > now)
                break;
            conn_send(l, c, due_of(l, l->next));
            l->next++;
        } else {
            if (now >= l->end)
                break;
            conn_send(l, c, now);
        }
    }
    if (l->rate > 0 && l->next < l->total && l->busy < l->n) {
        uint64_t d = due_of(l, l->next);
        struct itimerspec its = {{0, 0}, {(time_t)(d / 1000000000u), (long)(d % 1000000000u)}};

        timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL);
    }
}

/* One run: open loop at rate (> 0) for seconds, or closed loop for seconds. */
static void load_run(struct load *l, double rate, double seconds)
{
    struct epoll_event ev[64];

    l->rate = rate;
    l->t0 = mono_ns();
    l->end = l->t0 + (uint64_t)(seconds * 1e9);
    l->next = 0;
    l->total = rate > 0 ? (uint64_t)(rate * seconds) : 0;
    l->nlat = 0;
    l->last_done = l->t0;
    l->busy = 0;
    dispatch(l, mono_ns());
    for (;;) {
        uint64_t now = mono_ns();
        int n;

        if (rate > 0 && l->next >= l->total && l->busy == 0)
            break;
        if (rate <= 0 && now >= l->end && l->busy == 0)
            break;
        if (now > l->end + 30 * 1000000000ull) {
            load_error(l, "run did not finish within 30 s of its end");
            break;
        }
        n = epoll_wait(l->epfd, ev, 64, 100);
        now = mono_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = ev[i].data.ptr;

            if (!c) { /* the timerfd */
                uint64_t x;
                if (read(l->tfd, &x, sizeof(x)) < 0 && errno != EAGAIN)
                    load_error(l, "timerfd");
                continue;
            }
            if (c->state == CONN_WRITING)
                conn_write(l, c);
            if (c->state == CONN_READING || c->state == CONN_IDLE)
                conn_read(l, c);
        }
        dispatch(l, mono_ns());
    }
}

static int load_init(struct load *l, int n, SSL_CTX *ctx, int port, const char *req, size_t req_len,
                     bool check_uid)
{
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    int rc;

    memset(l, 0, sizeof(*l));
    l->tfd = -1;
    l->check_uid = check_uid;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    l->c = calloc((size_t)n, sizeof(*l->c));
    if (l->epfd < 0 || l->tfd < 0 || !l->c)
        return -ENOMEM;
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->tfd, &e) < 0)
        return -errno;
    for (int i = 0; i < n; i++)
        l->c[i].fd = -1;
    l->n = n;
    for (int i = 0; i < n; i++)
        if ((rc = conn_open(l, &l->c[i], ctx, port, req, req_len)) < 0)
            return rc;
    return 0;
}

static void load_release(struct load *l)
{
    for (int i = 0; l->c && i < l->n; i++)
        conn_close(&l->c[i]);
    free(l->c);
    free(l->lat);
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->tfd >= 0)
        close(l->tfd);
    memset(l, 0, sizeof(*l));
}

/* ---- results ------------------------------------------------------------------------------ */

struct result {
    double offered; /* 0: closed loop */
    double achieved;
    double p50, p90, p99, max; /* ms */
    double server_cpu_us;      /* server CPU per request */
    double server_util;        /* server CPU / wall */
    long errors;
};

static void summarize(struct load *l, uint64_t server_cpu_ns, uint64_t wall_ns, struct result *r)
{
    size_t n = l->nlat;
    double span;

    memset(r, 0, sizeof(*r));
    r->offered = l->rate;
    r->errors = l->errors;
    if (!n)
        return;
    qsort(l->lat, n, sizeof(*l->lat), cmp_u64);
    r->p50 = (double)l->lat[n / 2] / 1e6;
    r->p90 = (double)l->lat[n * 90 / 100] / 1e6;
    r->p99 = (double)l->lat[n * 99 / 100] / 1e6;
    r->max = (double)l->lat[n - 1] / 1e6;
    /* open loop: over at least the schedule's span (the last request is due 1/rate early) */
    span = (double)(l->last_done - l->t0) / 1e9;
    if (l->rate > 0 && span < (double)l->total / l->rate)
        span = (double)l->total / l->rate;
    r->achieved = (double)n / span;
    r->server_cpu_us = (double)server_cpu_ns / 1e3 / (double)n;
    r->server_util = wall_ns ? (double)server_cpu_ns / (double)wall_ns : 0;
}

static void print_result(const char *server, const struct result *r, int conns)
{
    char load[32];

    if (r->offered > 0)
        snprintf(load, sizeof(load), "%.0f/s open", r->offered);
    else
        snprintf(load, sizeof(load), "closed, %d conns", conns);
    printf("  %-8s %-17s %9.0f/s %7.3f %7.3f %7.3f %8.3f %9.1f %6.0f%% %6ld\n", server, load,
           r->achieved, r->p50, r->p90, r->p99, r->max, r->server_cpu_us, r->server_util * 100,
           r->errors);
}

/* All runs against one server. results[0..nrates-1] open loop, results[nrates] closed loop. */
static int bench_server(const struct tls *t, struct server_arg *a, const char *req, size_t req_len,
                        const double *rates, int nrates, int conns, int closed_conns,
                        double seconds, struct result *results, const char **tls_version)
{
    struct load l;
    pid_t pid = 0;
    clockid_t cpu;
    int port = 0, rc;
    long errors = 0;

    rc = server_start(t->server, a, &pid, &port);
    if (rc)
        return rc;
    if (clock_getcpuclockid(pid, &cpu) != 0) {
        server_stop(pid);
        return -EIO;
    }
    for (int i = 0; i <= nrates; i++) {
        int n = i < nrates ? conns : closed_conns;
        uint64_t c0, c1, w0, w1;

        rc = load_init(&l, n, t->client, port, req, req_len, a->kind != SERVER_TRIVIAL);
        if (rc) {
            load_release(&l);
            break;
        }
        *tls_version = SSL_get_version(l.c[0].ssl);
        load_run(&l, 0, 0.3); /* warm-up: caches, allocator, TLS buffers */
        errors += l.errors;
        l.errors = 0;
        c0 = clock_ns(cpu);
        w0 = mono_ns();
        load_run(&l, i < nrates ? rates[i] : 0, seconds);
        c1 = clock_ns(cpu);
        w1 = mono_ns();
        summarize(&l, c1 - c0, w1 - w0, &results[i]);
        results[i].errors += errors;
        errors = 0;
        if (results[i].errors)
            fprintf(stderr, "webhook_bench: %s: %ld bad answers, first: %s\n",
                    a->kind == SERVER_TRIVIAL ? "trivial" : "webhook", results[i].errors,
                    l.first_error);
        load_release(&l);
    }
    server_stop(pid);
    return rc;
}

/* ---- in-process cost ---------------------------------------------------------------------- */

/* CPU time per webhook_review() call (us), over about `seconds` of CPU. */
static int review_cost(const struct inject_config *cfg, const char *body, size_t len,
                       double seconds, double *us, size_t *resp_len, size_t *patch_len)
{
    uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), t;
    long n = 0;

    do {
        char *resp = NULL;
        int status = 0;

        if (webhook_review(cfg, body, len, &resp, &status) != 0)
            return -ENOMEM;
        if (status != 200 || !strstr(resp, "\"patch\":\"")) {
            fprintf(stderr, "webhook_bench: unexpected review answer (%d): %.300s\n", status, resp);
            free(resp);
            return -EINVAL;
        }
        if (n == 0) {
            json_t *j = json_loads(resp, 0, NULL);

            *resp_len = strlen(resp);
            *patch_len =
                strlen(json_string_value(json_object_get(json_object_get(j, "response"), "patch")));
            json_decref(j);
        }
        free(resp);
        n++;
        t = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    } while ((double)(t - t0) < seconds * 1e9);
    *us = (double)(t - t0) / 1e3 / (double)n;
    return 0;
}

/*
 * The floor: parse the review and serialize it again (us per round), with the reader and writer
 * webhook_review uses (conf/jsonio.h) or, for reference, with jansson's own.
 */
static double parse_dump_cost(const char *body, size_t len, double seconds, bool jansson)
{
    uint64_t t0 = clock_ns(CLOCK_THREAD_CPUTIME_ID), t;
    struct buf b;
    long n = 0;

    buf_init(&b);
    do {
        json_t *j = jansson ? json_loadb(body, len, 0, NULL) : conf_json_loadb(body, len, NULL);

        if (jansson) {
            free(json_dumps(j, JSON_COMPACT));
        } else {
            buf_reset(&b);
            IGNORE_RESULT(conf_json_dump(j, &b));
        }
        json_decref(j);
        n++;
        t = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    } while ((double)(t - t0) < seconds * 1e9);
    buf_release(&b);
    return (double)(t - t0) / 1e3 / (double)n;
}

/* ---- main --------------------------------------------------------------------------------- */

/* The 1-minute load average, as text ("?" when unknown): the bench shares its machine. */
static void loadavg(char *out, size_t len)
{
    FILE *f = fopen("/proc/loadavg", "r");

    snprintf(out, len, "?");
    if (f) {
        if (fscanf(f, "%63s", out) != 1 || len < 64)
            snprintf(out, len, "?");
        fclose(f);
    }
}

static int parse_rates(const char *s, double *rates, int max)
{
    int n = 0;

    while (*s && n < max) {
        char *end;
        double r = strtod(s, &end);

        if (end == s || r <= 0)
            return -1;
        rates[n++] = r;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

/* --target: open-loop runs against a running webhook; 0 when every answer was right. */
static int bench_target(int port, const char *ca_file, const char *req, size_t req_len,
                        const double *rates, int nrates, int conns, double seconds)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct buf pem;
    struct load l;
    long errors = 0;
    FILE *f = fopen(ca_file, "r");
    char chunk[4096];
    size_t n;

    buf_init(&pem);
    while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (buf_append(&pem, chunk, n))
            break;
    if (f)
        fclose(f);
    if (!ctx || !pem.len || ctx_trust_pem(ctx, pem.p)) {
        fprintf(stderr, "webhook_bench: cannot trust %s\n", ca_file);
        SSL_CTX_free(ctx);
        buf_release(&pem);
        return 1;
    }
    buf_release(&pem);
    for (int i = 0; i < nrates; i++) {
        struct result r;

        if (load_init(&l, conns, ctx, port, req, req_len, true)) {
            fprintf(stderr, "webhook_bench: cannot connect to 127.0.0.1:%d\n", port);
            load_release(&l);
            SSL_CTX_free(ctx);
            return 1;
        }
        load_run(&l, 0, 0.3);
        errors += l.errors;
        l.errors = 0;
        load_run(&l, rates[i], seconds);
        summarize(&l, 0, 0, &r);
        printf("target %.0f/s open: achieved %.1f/s p50 %.3f p90 %.3f p99 %.3f max %.3f ms "
               "errors %ld\n",
               rates[i], r.achieved, r.p50, r.p90, r.p99, r.max, r.errors);
        if (r.errors)
            fprintf(stderr, "webhook_bench: %ld bad answers, first: %s\n", r.errors, l.first_error);
        errors += r.errors;
        load_release(&l);
    }
    SSL_CTX_free(ctx);
    return errors ? 1 : 0;
}

int main(int argc, char **argv)
{
    double seconds = 3, rates[8] = {500, 5000};
    int nrates = 2, conns = 8, closed_conns = 8, status = 1;
    struct inject_config cfg;
    struct tls t = {0};
    struct server_arg wh = {SERVER_WEBHOOK, NULL, NULL, 0}, tr = {SERVER_TRIVIAL, NULL, NULL, 0};
    struct server_arg wp = {SERVER_POOL, NULL, NULL, 0};
    struct result rw[9], rt[9], rp[9];
    char *req = NULL, *fixed = NULL;
    char *review = NULL, load0[64], load1[64];
    size_t body_len = 0, resp_len = 0, patch_len = 0;
    double review_us = 0, floor_us, jansson_us;
    const char *tls_version = "?";
    int req_len;
    long errors = 0;
    int target = 0;
    const char *ca_file = NULL;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc)
            target = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--ca") && i + 1 < argc)
            ca_file = argv[++i];
        else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
            conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--closed-conns") && i + 1 < argc)
            closed_conns = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--rates") && i + 1 < argc)
            nrates = parse_rates(argv[++i], rates, 8);
        else {
            nrates = -1;
            break;
        }
    }
    if (nrates < 1 || seconds <= 0 || conns < 1 || conns > 1000 || closed_conns < 1 ||
        closed_conns > 1000 || (target && !ca_file) || target < 0 || target > 65535) {
        fprintf(stderr, "usage: webhook_bench [--seconds S] [--conns N] [--rates R1,R2,...] "
                        "[--closed-conns N]\n"
                        "       webhook_bench --target PORT --ca FILE [--seconds S] [--conns N] "
                        "[--rates R1,...]\n");
        return 2;
    }
    review = review_build();
    if (!review)
        return 1;
    body_len = strlen(review);
    loadavg(load0, sizeof(load0));
    signal(SIGPIPE, SIG_IGN);
    webhook_config_init(&cfg);
    wh.cfg = &cfg;
    wp.cfg = &cfg;

    /* in-process cost first: it also gives the answer's size for the trivial server */
    if (!target && review_cost(&cfg, review, body_len, 1.0, &review_us, &resp_len, &patch_len)) {
        fprintf(stderr, "webhook_bench: webhook_review failed on the bench's review\n");
        goto out;
    }
    floor_us = target ? 0 : parse_dump_cost(review, body_len, 1.0, false);
    jansson_us = target ? 0 : parse_dump_cost(review, body_len, 0.5, true);

    req = malloc(body_len + 512);
    fixed = malloc(resp_len + 1);
    if (!req || !fixed)
        goto out;
    req_len = snprintf(req, 512,
                       "POST /inject?timeout=10s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "User-Agent: kube-apiserver-admission\r\nAccept: application/json, */*\r\n"
                       "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                       body_len);
    memcpy(req + req_len, review, body_len);
    req_len += (int)body_len;
    if (target) {
        status = bench_target(target, ca_file, req, (size_t)req_len, rates, nrates, conns, seconds);
        goto out;
    }
    memset(fixed, 'x', resp_len);
    fixed[0] = '"';
    fixed[resp_len - 1] = '"'; /* a JSON string of the same size */
    fixed[resp_len] = '\0';
    tr.fixed = fixed;
    tr.fixed_len = resp_len;

    if (tls_init(&t)) {
        fprintf(stderr, "webhook_bench: cannot make the TLS certificate\n");
        goto out;
    }
    if (bench_server(&t, &tr, req, (size_t)req_len, rates, nrates, conns, closed_conns, seconds, rt,
                     &tls_version) ||
        bench_server(&t, &wh, req, (size_t)req_len, rates, nrates, conns, closed_conns, seconds, rw,
                     &tls_version) ||
        bench_server(&t, &wp, req, (size_t)req_len, rates, nrates, conns, closed_conns, seconds, rp,
                     &tls_version)) {
        fprintf(stderr, "webhook_bench: cannot run the load\n");
        goto out;
    }
    printf("webhook: AdmissionReview %zu bytes (3-container pod), answer %zu bytes (patch %zu "
           "bytes base64); %s keep-alive, %d conns open loop, %d closed; %.1f s per run\n",
           body_len, resp_len, patch_len, tls_version, conns, closed_conns, seconds);
    loadavg(load1, sizeof(load1));
    printf("  machine: %ld CPUs online, load average %s before, %s after; servers are one "
           "thread each (as weftd's loop)\n",
           sysconf(_SC_NPROCESSORS_ONLN), load0, load1);
    printf("  in process: webhook_review %.1f us/call CPU (%.0f/s per core); floor json parse + "
           "dump of the review %.1f us (jansson's own: %.1f us); ratio %.2f\n",
           review_us, 1e6 / review_us, floor_us, jansson_us, review_us / floor_us);
    printf("  %-8s %-17s %11s %7s %7s %7s %8s %9s %7s %6s\n", "server", "load", "achieved",
           "p50 ms", "p90 ms", "p99 ms", "max ms", "srv us/rq", "srv cpu", "errors");
    for (int i = 0; i <= nrates; i++) {
        print_result("trivial", &rt[i], closed_conns);
        print_result("webhook", &rw[i], closed_conns);
        print_result("weftd", &rp[i], closed_conns);
        errors += rt[i].errors + rw[i].errors + rp[i].errors;
    }
    printf("  ratios webhook / trivial:");
    for (int i = 0; i < nrates; i++)
        printf(" p99 at %.0f/s %.2f;", rates[i], rt[i].p99 > 0 ? rw[i].p99 / rt[i].p99 : 0);
    printf(" max rate %.2f; server CPU per request %.2f\n",
           rt[nrates].achieved > 0 ? rw[nrates].achieved / rt[nrates].achieved : 0,
           rt[nrates].server_cpu_us > 0 ? rw[nrates].server_cpu_us / rt[nrates].server_cpu_us : 0);
    printf("  webhook_review share of the webhook server's CPU per request (closed loop): "
           "%.0f%%\n",
           rw[nrates].server_cpu_us > 0 ? 100 * review_us / rw[nrates].server_cpu_us : 0);
    printf("  (webhook: the review on the server's one thread; weftd: weftd's shape, reviews on "
           "libuv's worker pool)\n");
    for (int i = 0; i < nrates; i++)
        if (rates[i] == 500)
            printf("  target p99 < 2 ms at 500/s: %s (weftd %.3f ms; one thread %.3f ms)\n",
                   rp[i].p99 < 2 && rp[i].achieved > 450 ? "met" : "MISSED", rp[i].p99, rw[i].p99);
    printf("  target > 5,000 reviews/s: %s (closed loop: weftd %.0f/s; one thread %.0f/s)\n",
           rp[nrates].achieved > 5000 ? "met" : "MISSED", rp[nrates].achieved, rw[nrates].achieved);
    status = errors ? 1 : 0;
out:
    tls_release(&t);
    free(req);
    free(fixed);
    free(review);
    return status;
}
