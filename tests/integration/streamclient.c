/*
 * streamclient.c - an agent's side of the config stream for the integration tests: push/'s
 * client library with a real workload certificate, writing what it receives to files.
 *
 *   streamclient --port P --cert FILE --key FILE --trust FILE --pod NS/NAME/UID --dir DIR
 *                [--host 127.0.0.1] [--server-name weftd.weft-system.svc] [--protocol 1|2]
 *
 * DIR/events gets one line per event: "config VERSION HASH", "ack VERSION", "nack VERSION
 * REASON", "connected", "rejected CODE REASON", "disconnected REASON", "appsExited REASON".
 * DIR/config.json holds the last document received, DIR/hash its hash, DIR/protocol the protocol
 * weftd chose on the last stream opened (--protocol: the newest one offered, default 2). While
 * DIR/nack exists, every config is NACKed with the file's first line as the reason (the test
 * creates and removes it). Runs until SIGTERM or SIGINT; exit 0.
 */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "push/push.h"

struct sc {
    const char *dir;
    uv_signal_t sigterm, sigint;
    struct push_client *cli;
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;

    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)n + 1)) != NULL) {
        if (fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        } else {
            p[n] = '\0';
        }
    }
    fclose(f);
    return p;
}

static void put(const char *dir, const char *name, const char *text, const char *mode)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, mode);
    if (!f) {
        perror(path);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
}

__attribute__((format(printf, 2, 3))) static void event(struct sc *sc, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    put(sc->dir, "events", line, "a");
}

static int on_config(void *arg, uint64_t version, const char *hash, const char *doc, char *reason,
                     size_t reason_size)
{
    struct sc *sc = arg;
    char v[32], path[4096], *nack;

    snprintf(v, sizeof(v), "%llu", (unsigned long long)version);
    put(sc->dir, "config.json", doc, "w");
    put(sc->dir, "hash", hash, "w");
    event(sc, "config %s %s\n", v, hash);
    snprintf(path, sizeof(path), "%s/nack", sc->dir);
    nack = slurp(path);
    if (nack) {
        nack[strcspn(nack, "\n")] = '\0';
        snprintf(reason, reason_size, "%s", nack);
        free(nack);
        event(sc, "nack %s %s\n", v, reason);
        return 1;
    }
    event(sc, "ack %s\n", v);
    return 0;
}

static void on_state(void *arg, const struct push_client_event *ev)
{
    struct sc *sc = arg;

    if (ev->state == PUSH_CLIENT_CONNECTED) {
        char p[16];

        snprintf(p, sizeof(p), "%d\n", push_client_protocol(sc->cli));
        put(sc->dir, "protocol", p, "w");
        event(sc, "connected\n");
    } else if (ev->state == PUSH_CLIENT_REJECTED) {
        event(sc, "rejected %s %s\n", ev->code, ev->reason);
    } else {
        event(sc, "disconnected %s\n", ev->reason);
    }
}

static void on_apps_exited(void *arg, const char *reason)
{
    event(arg, "appsExited %s\n", reason);
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct sc *sc = h->data;

    (void)sig;
    push_client_free(sc->cli);
    sc->cli = NULL;
    uv_close((uv_handle_t *)&sc->sigterm, NULL);
    uv_close((uv_handle_t *)&sc->sigint, NULL);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"host", 1, NULL, 'h'}, {"port", 1, NULL, 'p'}, {"server-name", 1, NULL, 's'},
        {"cert", 1, NULL, 'c'}, {"key", 1, NULL, 'k'},  {"trust", 1, NULL, 't'},
        {"pod", 1, NULL, 'o'},  {"dir", 1, NULL, 'd'},  {"protocol", 1, NULL, 'P'},
        {NULL, 0, NULL, 0},
    };
    static const struct push_client_ops ops = {on_config, on_state, on_apps_exited, NULL};
    struct push_client_config cc;
    const char *cert = NULL, *key = NULL, *trust = NULL, *pod = NULL;
    char ns[64], name[254], uid[64];
    struct sc sc;
    int c, rc;

    memset(&cc, 0, sizeof(cc));
    memset(&sc, 0, sizeof(sc));
    cc.host = "127.0.0.1";
    cc.server_name = "weftd.weft-system.svc";
    cc.agent_version = "streamclient";
    cc.backoff_min_ms = 200;
    cc.backoff_max_ms = 1000;
    while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (c) {
        case 'h':
            cc.host = optarg;
            break;
        case 'p':
            cc.port = atoi(optarg);
            break;
        case 's':
            cc.server_name = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 't':
            trust = optarg;
            break;
        case 'o':
            pod = optarg;
            break;
        case 'd':
            sc.dir = optarg;
            break;
        case 'P':
            cc.max_protocol = (unsigned)atoi(optarg);
            break;
        default:
            return 2;
        }
    }
    if (!cert || !key || !trust || !pod || !sc.dir || cc.port <= 0 ||
        sscanf(pod, "%63[^/]/%253[^/]/%63s", ns, name, uid) != 3) {
        fprintf(stderr, "usage: streamclient --port P --cert F --key F --trust F "
                        "--pod NS/NAME/UID --dir DIR [--host H] [--server-name N]\n");
        return 2;
    }
    cc.cert_pem = slurp(cert);
    cc.key_pem = slurp(key);
    cc.trust_pem = slurp(trust);
    if (!cc.cert_pem || !cc.key_pem || !cc.trust_pem) {
        fprintf(stderr, "streamclient: cannot read the certificate, key or bundle\n");
        return 1;
    }
    cc.pod_ns = ns;
    cc.pod_name = name;
    cc.pod_uid = uid;
    signal(SIGPIPE, SIG_IGN);
    rc = push_client_new(uv_default_loop(), &cc, &ops, &sc, &sc.cli);
    if (rc) {
        fprintf(stderr, "streamclient: %s\n", err_str(rc));
        return 1;
    }
    uv_signal_init(uv_default_loop(), &sc.sigterm);
    uv_signal_init(uv_default_loop(), &sc.sigint);
    sc.sigterm.data = sc.sigint.data = &sc;
    uv_signal_start(&sc.sigterm, on_signal, SIGTERM);
    uv_signal_start(&sc.sigint, on_signal, SIGINT);
    while (uv_run(uv_default_loop(), UV_RUN_DEFAULT))
        ;
    uv_loop_close(uv_default_loop());
    free((char *)cc.cert_pem);
    free((char *)cc.key_pem);
    free((char *)cc.trust_pem);
    return 0;
}
