/*
 * kubelite - a single-process Kubernetes API server for Weft's development and tests.
 *
 *   kubelite --listen 127.0.0.1:PORT --kubeconfig-out FILE [--data-dir DIR] [--insecure]
 *
 * Serves HTTPS with a self-signed certificate and an admin bearer token (both written into the
 * kubeconfig), or plain HTTP with --insecure. Ready when the kubeconfig file exists.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base64.h"
#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/openapi.h"
#include "tls/tls.h"

#define MAX_BODY (3u * 1024 * 1024) /* kube-apiserver's request body limit */

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: kubelite --listen ADDR:PORT --kubeconfig-out FILE [options]\n"
               "  --data-dir DIR           persist objects (and the serving identity) in DIR\n"
               "  --insecure               plain HTTP, no authentication (loopback only)\n"
               "  --openapi-dir DIR        official OpenAPI v3 documents (default: beside the\n"
               "                           source tree, tests/kubelite/openapi)\n"
               "  --watch-history N        events kept for watch resumption (default 20000)\n"
               "  --bookmark-interval SEC  bookmark period for watches (default 5)\n"
               "  --log-level LEVEL        debug, info, warn, error (default info)\n"
               "  --advertise-address IP   the address pods reach this server at: publishes the\n"
               "                           kubernetes Service, kube-root-ca.crt and adds the\n"
               "                           ServiceAccount token volume to pods\n"
               "  --stream-idle-timeout SEC a port-forward connection without traffic ends\n"
               "                           after this (default 14400, the kubelet's)\n"
               "fault injection (tests; see docs/kubelite.md, PUT /kubelite/faults):\n"
               "  --fault-seed N           seed of every fault decision (default 1)\n"
               "  --fault-drop-watch P     per watch event: end the stream instead (0..1)\n"
               "  --fault-expire P         per WATCH from a resourceVersion: 410 Expired (0..1)\n"
               "  --fault-error P          per resource request: 500 or 429 instead (0..1)\n");
}

/* A probability flag: a number from 0 to 1. */
static int parse_prob(const char *flag, const char *arg, double *out)
{
    char *end;
    double p = strtod(arg, &end);
    if (end == arg || *end || !(p >= 0 && p <= 1)) {
        fprintf(stderr, "kubelite: --%s: \"%s\" is not a probability from 0 to 1\n", flag, arg);
        return -EINVAL;
    }
    *out = p;
    return 0;
}

static int read_file(const char *path, char **out)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *p;
    if (!f)
        return -errno;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc((size_t)n + 1);
    if (!p || fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        fclose(f);
        return -EIO;
    }
    p[n] = '\0';
    fclose(f);
    *out = p;
    return 0;
}

static int write_file(const char *path, const char *data, size_t len, mode_t mode)
{
    char tmp[PATH_MAX];
    FILE *f;
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    f = fopen(tmp, "wb");
    if (!f)
        return -errno;
    fchmod(fileno(f), mode);
    if (fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        unlink(tmp);
        return -EIO;
    }
    if (rename(tmp, path) < 0)
        return -errno;
    return 0;
}

/* A self-signed P-256 serving certificate for 127.0.0.1, localhost, the `kubernetes` Service's
 * names and ClusterIP, and advertise (may be NULL). PEMs in *cert, *key. */
static int make_serving_cert(const char *advertise, char **cert_pem, char **key_pem)
{
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *name;
    X509V3_CTX ctx;
    X509_EXTENSION *ext;
    BIO *b = NULL;
    BUF_MEM *bm;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    int rc = -ENOMEM;
    char san[512];
    struct {
        int nid;
        const char *val;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment,keyCertSign"},
        {NID_ext_key_usage, "serverAuth"},
        {NID_subject_alt_name, san},
    };

    snprintf(san, sizeof(san),
             "IP:127.0.0.1,IP:" KL_KUBERNETES_IP ",DNS:localhost,DNS:kubernetes,"
             "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
             "DNS:kubernetes.default.svc.cluster.local%s%s",
             advertise ? ",IP:" : "", advertise ? advertise : "");

    if (!pkey || !x)
        goto out;
    X509_set_version(x, 2);
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
    X509_set_pubkey(x, pkey);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"kubelite", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    for (size_t i = 0; i < ARRAY_LEN(exts); i++) {
        ext = X509V3_EXT_conf_nid(NULL, &ctx, exts[i].nid, exts[i].val);
        if (!ext)
            goto out;
        X509_add_ext(x, ext, -1);
        X509_EXTENSION_free(ext);
    }
    if (!X509_sign(x, pkey, EVP_sha256()))
        goto out;
    b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_X509(b, x))
        goto out;
    BIO_get_mem_ptr(b, &bm);
    *cert_pem = strndup(bm->data, bm->length);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_PrivateKey(b, pkey, NULL, NULL, 0, NULL, NULL))
        goto out;
    BIO_get_mem_ptr(b, &bm);
    *key_pem = strndup(bm->data, bm->length);
    rc = (*cert_pem && *key_pem) ? 0 : -ENOMEM;
out:
    BIO_free(b);
    BN_free(bn);
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

static SSL_CTX *make_ssl_ctx(const char *cert_pem, const char *key_pem)
{
    SSL_CTX *ctx = NULL;

    if (tls_server_ctx_new(&ctx) == 0 && tls_set_identity(ctx, cert_pem, key_pem) != 0) {
        SSL_CTX_free(ctx);
        ctx = NULL;
    }
    return ctx;
}

static int write_kubeconfig(const char *path, const char *server, const char *ca_pem,
                            const char *token)
{
    struct buf b;
    char *ca = ca_pem ? base64_encode(ca_pem, strlen(ca_pem)) : NULL;
    int rc;

    buf_init(&b);
    rc = buf_printf(&b,
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: kubelite\n  cluster:\n"
                    "    server: %s\n",
                    server);
    if (!rc && ca)
        rc = buf_printf(&b, "    certificate-authority-data: %s\n", ca);
    if (!rc)
        rc = buf_printf(&b,
                        "users:\n- name: admin\n  user:\n%s%s%s"
                        "contexts:\n- name: kubelite\n  context:\n    cluster: kubelite\n"
                        "    user: admin\n    namespace: default\ncurrent-context: kubelite\n",
                        token ? "    token: " : "    {}\n", token ? token : "", token ? "\n" : "");
    if (!rc)
        rc = write_file(path, b.p, b.len, 0600);
    buf_release(&b);
    free(ca);
    return rc;
}

/* Serving identity: reused from the data dir so kubeconfigs survive restarts. */
static int load_identity(const char *data_dir, const char *advertise, char **cert, char **key,
                         char **token)
{
    char p1[PATH_MAX], p2[PATH_MAX], p3[PATH_MAX];
    int rc;

    if (data_dir) {
        snprintf(p1, sizeof(p1), "%s/serving.crt", data_dir);
        snprintf(p2, sizeof(p2), "%s/serving.key", data_dir);
        snprintf(p3, sizeof(p3), "%s/admin.token", data_dir);
        if (read_file(p1, cert) == 0 && read_file(p2, key) == 0 && read_file(p3, token) == 0) {
            (*token)[strcspn(*token, "\r\n")] = '\0';
            return 0;
        }
        free(*cert);
        free(*key);
        free(*token);
        *cert = *key = *token = NULL;
    }
    rc = make_serving_cert(advertise, cert, key);
    if (rc)
        return rc;
    {
        unsigned char r[24];
        char *t = malloc(sizeof(r) * 2 + 1);
        if (!t)
            return -ENOMEM;
        RAND_bytes(r, sizeof(r));
        for (size_t i = 0; i < sizeof(r); i++)
            sprintf(t + 2 * i, "%02x", r[i]);
        *token = t;
    }
    if (data_dir) {
        mkdir(data_dir, 0700);
        if ((rc = write_file(p1, *cert, strlen(*cert), 0644)) ||
            (rc = write_file(p2, *key, strlen(*key), 0600)) ||
            (rc = write_file(p3, *token, strlen(*token), 0600)))
            return rc;
    }
    return 0;
}

static void default_openapi_dir(const char *argv0, char *out, size_t outlen)
{
    char exe[PATH_MAX - 64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    struct stat st;
    (void)argv0;
    if (n > 0) {
        char *slash;
        exe[n] = '\0';
        /* <repo>/build/bin/kubelite -> <repo>/tests/kubelite/openapi */
        for (int i = 0; i < 3 && (slash = strrchr(exe, '/')); i++)
            *slash = '\0';
        snprintf(out, outlen, "%s/tests/kubelite/openapi", exe);
        if (stat(out, &st) == 0)
            return;
    }
    snprintf(out, outlen, "tests/kubelite/openapi");
}

static int seed(struct kl *kl)
{
    static const char *const namespaces[] = {"default", "kube-system", "kube-public",
                                             "kube-node-lease"};
    struct rtype *rt = kl_rtype_find(kl, "", "v1", "namespaces");
    for (size_t i = 0; i < ARRAY_LEN(namespaces); i++) {
        char key[128], uid[37], now[40];
        json_t *ns;
        int rc;
        kl_key(NULL, namespaces[i], key, sizeof(key));
        if (kl_store_lookup(rt->store, key))
            continue;
        kl_new_uid(kl, uid);
        kl_now_rfc3339(now, sizeof(now));
        ns = json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:{s:s}},s:{s:[s]},s:{s:s}}", "apiVersion", "v1",
                       "kind", "Namespace", "metadata", "name", namespaces[i], "uid", uid,
                       "creationTimestamp", now, "labels", "kubernetes.io/metadata.name",
                       namespaces[i], "spec", "finalizers", "kubernetes", "status", "phase",
                       "Active");
        rc = kl_commit(kl, rt->store, key, ns, NULL);
        if (rc)
            return rc;
    }
    return 0;
}

/* Release everything, so leak checkers see a clean exit. */
static void kl_release(struct kl *kl)
{
    while (kl->inflight)
        kl_write_free(kl->inflight);
    for (size_t i = 0; i < kl->ntypes; i++)
        kl_rtype_free(kl->types[i]);
    free(kl->types);
    for (size_t i = 0; i < kl->nstores; i++) {
        json_decref(kl->store_list[i]->objs);
        free(kl->store_list[i]->id);
        free(kl->store_list[i]);
    }
    free(kl->store_list);
    for (size_t i = 0; i < kl->hist_len; i++) {
        struct event *ev = &kl->hist[(kl->hist_head + i) % kl->hist_cap];
        json_decref(ev->obj);
        json_decref(ev->old);
    }
    free(kl->hist);
    openapi_free(kl->oa);
    EVP_PKEY_free(kl->sa_key);
}

static void tick(void *arg)
{
    struct kl *kl = arg;
    if (stop_requested)
        http_server_stop(kl->http);
    kl_watch_tick(kl);
    kl_hooks_tick(kl);
    kl_pod_log_tick(kl);
    kl_controllers_run(kl);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"kubeconfig-out", required_argument, NULL, 'k'},
        {"data-dir", required_argument, NULL, 'd'},
        {"insecure", no_argument, NULL, 'i'},
        {"openapi-dir", required_argument, NULL, 'o'},
        {"watch-history", required_argument, NULL, 'w'},
        {"bookmark-interval", required_argument, NULL, 'b'},
        {"log-level", required_argument, NULL, 'v'},
        {"advertise-address", required_argument, NULL, 'A'},
        {"fault-seed", required_argument, NULL, 'S'},
        {"fault-drop-watch", required_argument, NULL, 'D'},
        {"fault-expire", required_argument, NULL, 'E'},
        {"fault-error", required_argument, NULL, 'F'},
        {"stream-idle-timeout", required_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *kubeconfig = NULL, *oadir = NULL;
    char oadir_buf[PATH_MAX], server[300];
    bool insecure = false;
    struct kl kl;
    char *cert = NULL, *key = NULL, *token = NULL;
    SSL_CTX *ssl = NULL;
    int rc = 1, opt;
    long history = 20000;
    struct sigaction sa;
    struct kl_faults faults;

    memset(&kl, 0, sizeof(kl));
    kl.bookmark_interval = 5;
    kl_faults_init(&faults, 1);
    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen = optarg;
            break;
        case 'k':
            kubeconfig = optarg;
            break;
        case 'd':
            kl.data_dir = optarg;
            break;
        case 'i':
            insecure = true;
            break;
        case 'o':
            oadir = optarg;
            break;
        case 'w':
            history = atol(optarg);
            break;
        case 'b':
            kl.bookmark_interval = atof(optarg);
            break;
        case 'I': {
            char *end;
            double v = strtod(optarg, &end);
            if (end == optarg || *end || !(v > 0 && v <= 86400 * 7)) {
                fprintf(stderr,
                        "kubelite: --stream-idle-timeout: \"%s\" is not a number of seconds "
                        "(0 < N <= 604800)\n",
                        optarg);
                return 2;
            }
            kl.pf.idle_timeout = v;
            break;
        }
        case 'v': {
            enum log_level lvl;
            if (log_level_parse(optarg, &lvl)) {
                fprintf(stderr, "kubelite: --log-level: unknown level \"%s\"\n", optarg);
                return 2;
            }
            log_set_level(lvl);
            break;
        }
        case 'A': {
            struct in_addr a;
            if (inet_pton(AF_INET, optarg, &a) != 1) {
                fprintf(stderr, "kubelite: --advertise-address: \"%s\" is not an IPv4 address\n",
                        optarg);
                return 2;
            }
            kl.advertise = optarg;
            break;
        }
        case 'S': {
            char *end;
            unsigned long long seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end) {
                fprintf(stderr, "kubelite: --fault-seed: \"%s\" is not a number\n", optarg);
                return 2;
            }
            faults.seed = faults.rng = seed;
            break;
        }
        case 'D':
            if (parse_prob("fault-drop-watch", optarg, &faults.drop_watch))
                return 2;
            break;
        case 'E':
            if (parse_prob("fault-expire", optarg, &faults.expire))
                return 2;
            break;
        case 'F':
            if (parse_prob("fault-error", optarg, &faults.error))
                return 2;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (!listen || !kubeconfig || history < 16 || kl.bookmark_interval <= 0) {
        usage(stderr);
        return 2;
    }
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    kl.faults = faults;
    if (!oadir) {
        default_openapi_dir(argv[0], oadir_buf, sizeof(oadir_buf));
        oadir = oadir_buf;
    }
    rc = openapi_load_dir(oadir, &kl.oa);
    if (rc) {
        fprintf(stderr, "kubelite: cannot load OpenAPI documents from %s: %s\n", oadir,
                err_str(rc));
        return 1;
    }
    kl.hist_cap = (size_t)history;
    kl.hist = calloc(kl.hist_cap, sizeof(*kl.hist));
    if (!kl.hist || kl_registry_init(&kl)) {
        fprintf(stderr, "kubelite: out of memory\n");
        return 1;
    }
    rc = kl_persist_open(&kl);
    if (rc) {
        fprintf(stderr, "kubelite: --data-dir %s: %s\n", kl.data_dir, err_str(rc));
        return 1;
    }
    {
        /* Re-establish CRDs loaded from disk. */
        struct rstore *st =
            kl_store_get(&kl, "apiextensions.k8s.io", "customresourcedefinitions", false);
        const char *k;
        json_t *crd;
        if (st)
            json_object_foreach(st->objs, k, crd)
            {
                if (kl_crd_activate(&kl, crd))
                    fprintf(stderr, "kubelite: cannot re-establish CRD %s\n", k);
            }
    }
    rc = kl_tokens_init(&kl);
    if (rc) {
        fprintf(stderr, "kubelite: cannot set up the service-account signing key: %s\n",
                err_str(rc));
        return 1;
    }
    if (seed(&kl)) {
        fprintf(stderr, "kubelite: cannot create the default namespaces\n");
        return 1;
    }
    if (!insecure) {
        rc = load_identity(kl.data_dir, kl.advertise, &cert, &key, &token);
        if (rc || !(ssl = make_ssl_ctx(cert, key))) {
            fprintf(stderr, "kubelite: cannot set up TLS: %s\n", err_str(rc));
            return 1;
        }
        kl.admin_token = token;
        kl.ca_pem = cert;
    }
    rc = http_server_new(listen, ssl, MAX_BODY, kl_handle, &kl, &kl.http);
    if (rc) {
        fprintf(stderr, "kubelite: cannot listen on %s: %s\n", listen, err_str(rc));
        return 1;
    }
    http_server_set_tick(kl.http, 100, tick, &kl);
    if (kl.advertise) {
        kl.advertise_port = http_server_port(kl.http);
        kl_publish_kubernetes_service(&kl);
    }
    rc = kl_admission_init(&kl);
    if (rc) {
        fprintf(stderr, "kubelite: cannot set up the webhook client: %s\n", err_str(rc));
        return 1;
    }
    snprintf(server, sizeof(server), "%s://127.0.0.1:%d", insecure ? "http" : "https",
             http_server_port(kl.http));
    rc = write_kubeconfig(kubeconfig, server, cert, token);
    if (rc) {
        fprintf(stderr, "kubelite: cannot write %s: %s\n", kubeconfig, err_str(rc));
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_info("msg=\"kubelite serving\" server=%s kubeconfig=%s", server, kubeconfig);
    if (faults.drop_watch > 0 || faults.expire > 0 || faults.error > 0)
        log_info("msg=\"fault injection\" seed=%llu drop_watch=%g expire=%g error=%g",
                 (unsigned long long)faults.seed, faults.drop_watch, faults.expire, faults.error);
    rc = http_server_run(kl.http);
    log_info("msg=\"kubelite stopping\" injected_watch_drops=%llu injected_expires=%llu "
             "injected_errors=%llu",
             (unsigned long long)kl.faults.drops, (unsigned long long)kl.faults.expires,
             (unsigned long long)kl.faults.errors);
    kl_portforward_shutdown(&kl);
    http_server_free(kl.http); /* ends watches and deferred requests first */
    kl_admission_release(&kl);
    kl_release(&kl);
    if (kl.wal)
        fclose(kl.wal);
    SSL_CTX_free(ssl);
    free(cert);
    free(key);
    free(token);
    return rc ? 1 : 0;
}
