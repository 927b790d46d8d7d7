/*
 * weftd - Weft's control plane.
 *
 *   weftd [--kubeconfig FILE] [--namespace weft-system] [--webhook-url URL] [options]
 *
 * Out of cluster it uses the kubeconfig (or $KUBECONFIG); in cluster its ServiceAccount. See
 * usage() and docs/operations.md.
 */
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "weftd/weftd_int.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: weftd [options]\n"
               "  --kubeconfig FILE        out-of-cluster credentials (default: in-cluster, then\n"
               "                           $KUBECONFIG)\n"
               "  --namespace NS           weftd's namespace (weft-system)\n"
               "  --identity NAME          leader-election identity (default: $POD_NAME or host)\n"
               "  --admin-listen ADDR      metrics, health, debug (0.0.0.0:15014)\n"
               "  --webhook-listen ADDR    injection webhook (0.0.0.0:9443)\n"
               "  --certs-listen ADDR      certificate endpoint (0.0.0.0:15012)\n"
               "  --webhook-url URL        register weft-injector with this URL (out of cluster)\n"
               "  --webhook-service NAME   Service in front of the webhook (weft-webhook)\n"
               "  --webhook-max-inflight N reviews queued or running before 503s (1024)\n"
               "  --trust-domain DOMAIN    SPIFFE trust domain (cluster.local)\n"
               "  --default-mode MODE      all-authenticated | deny | permissive\n"
               "  --ca-secret NAME         Secret holding Weft's root (weft-ca)\n"
               "  --user-ca-secret NAME    operator-supplied root or intermediate to issue from\n"
               "  --cert-ttl SECONDS       workload certificate lifetime (86400)\n"
               "  --proxy-image IMAGE      sidecar image (weft/proxy:dev)\n"
               "  --init-image IMAGE       init container image (weft/init:dev)\n"
               "  --native-sidecars        inject weft-proxy as a native sidecar\n"
               "  --proxy-cpu-request Q    weft-proxy resources (100m, 128Mi, 2, 1Gi); \"\" omits\n"
               "  --proxy-memory-request Q\n"
               "  --proxy-cpu-limit Q\n"
               "  --proxy-memory-limit Q\n"
               "  --proxy-log-level LEVEL  weft-agent's log level (info)\n"
               "  --control-plane-addr H:P where agents reach weftd (weftd.<namespace>.svc:15012)\n"
               "  --image-pull-policy P    of injected containers (cluster default)\n"
               "  --log-level LEVEL        debug, info, warn, error (info)\n");
}

static void on_signal(uv_signal_t *h, int sig)
{
    struct weftd *d = h->data;
    (void)sig;
    if (d->stopping)
        return;
    d->stopping = true;
    log_info("msg=\"weftd stopping\"");
    uv_stop(d->loop);
}

static void started_leading(void *arg)
{
    struct weftd *d = arg;
    d->leading = true;
    log_info("msg=\"leading\" identity=%s", d->opts.identity);
    weftd_ca_leading(d);
    weftd_webhook_leading(d);
    weftd_sync_leading(d);
}

static void stopped_leading(void *arg)
{
    struct weftd *d = arg;
    d->leading = false;
    log_warn("msg=\"lost leadership\" identity=%s", d->opts.identity);
}

static int parse_args(int argc, char **argv, struct weftd_opts *o, struct inject_config *inj)
{
    static const struct option opts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"namespace", required_argument, NULL, 'n'},
        {"identity", required_argument, NULL, 'i'},
        {"admin-listen", required_argument, NULL, 'a'},
        {"webhook-listen", required_argument, NULL, 'w'},
        {"certs-listen", required_argument, NULL, 'c'},
        {"webhook-url", required_argument, NULL, 'u'},
        {"webhook-service", required_argument, NULL, 's'},
        {"trust-domain", required_argument, NULL, 't'},
        {"default-mode", required_argument, NULL, 'm'},
        {"ca-secret", required_argument, NULL, 'C'},
        {"user-ca-secret", required_argument, NULL, 'U'},
        {"cert-ttl", required_argument, NULL, 'T'},
        {"proxy-image", required_argument, NULL, 'P'},
        {"init-image", required_argument, NULL, 'I'},
        {"native-sidecars", no_argument, NULL, 'N'},
        {"proxy-cpu-request", required_argument, NULL, 1000},
        {"proxy-memory-request", required_argument, NULL, 1001},
        {"proxy-cpu-limit", required_argument, NULL, 1002},
        {"proxy-memory-limit", required_argument, NULL, 1003},
        {"proxy-log-level", required_argument, NULL, 1004},
        {"control-plane-addr", required_argument, NULL, 1005},
        {"image-pull-policy", required_argument, NULL, 1006},
        {"webhook-max-inflight", required_argument, NULL, 1007},
        {"log-level", required_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (opt) {
        case 'k':
            o->kubeconfig = optarg;
            break;
        case 'n':
            o->namespace = optarg;
            break;
        case 'i':
            o->identity = optarg;
            break;
        case 'a':
            o->admin_listen = optarg;
            break;
        case 'w':
            o->webhook_listen = optarg;
            break;
        case 'c':
            o->certs_listen = optarg;
            break;
        case 'u':
            o->webhook_url = optarg;
            break;
        case 's':
            o->webhook_service = optarg;
            break;
        case 't':
            o->trust_domain = optarg;
            break;
        case 'm':
            if (mesh_mode_parse(optarg, &o->mode)) {
                fprintf(stderr,
                        "weftd: --default-mode: \"%s\" is not all-authenticated, deny or "
                        "permissive\n",
                        optarg);
                return 2;
            }
            break;
        case 'C':
            o->ca_secret = optarg;
            break;
        case 'U':
            o->user_ca_secret = optarg;
            break;
        case 'T': {
            char *end;
            o->cert_ttl = strtol(optarg, &end, 10);
            if (*end || o->cert_ttl < 600) {
                fprintf(stderr, "weftd: --cert-ttl: \"%s\" is not a number of seconds >= 600\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'P':
            inj->proxy_image = optarg;
            break;
        case 'I':
            inj->init_image = optarg;
            break;
        case 'N':
            inj->native_sidecars = true;
            break;
        /* an empty quantity leaves the field out of the sidecar */
        case 1000:
            inj->proxy_cpu_request = *optarg ? optarg : NULL;
            break;
        case 1001:
            inj->proxy_memory_request = *optarg ? optarg : NULL;
            break;
        case 1002:
            inj->proxy_cpu_limit = *optarg ? optarg : NULL;
            break;
        case 1003:
            inj->proxy_memory_limit = *optarg ? optarg : NULL;
            break;
        case 1004:
            inj->log_level = optarg;
            break;
        case 1005:
            inj->control_plane_addr = optarg;
            break;
        case 1006:
            inj->image_pull_policy = *optarg ? optarg : NULL;
            break;
        case 1007: {
            char *end;
            o->webhook_max_inflight = strtol(optarg, &end, 10);
            if (*end || o->webhook_max_inflight < 1 || o->webhook_max_inflight > 1000000) {
                fprintf(stderr,
                        "weftd: --webhook-max-inflight: \"%s\" is not a number from 1 to "
                        "1000000\n",
                        optarg);
                return 2;
            }
            break;
        }
        case 'v': {
            enum log_level lvl;
            if (log_level_parse(optarg, &lvl)) {
                fprintf(stderr, "weftd: --log-level: unknown level \"%s\"\n", optarg);
                return 2;
            }
            log_set_level(lvl);
            break;
        }
        case 'h':
            usage(stdout);
            return 1;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "weftd: unexpected argument \"%s\"\n", argv[optind]);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static char host[HOST_NAME_MAX + 1];
    static char cp_addr[300];
    struct weftd d;
    struct kube_diag diag;
    struct kube_leader_opts lo;
    struct mesh_config mc;
    int rc, exit_code = 1;

    memset(&d, 0, sizeof(d));
    d.opts.namespace = "weft-system";
    d.opts.admin_listen = "0.0.0.0:15014";
    d.opts.webhook_listen = "0.0.0.0:9443";
    d.opts.certs_listen = "0.0.0.0:15012";
    d.opts.webhook_service = "weft-webhook";
    d.opts.webhook_max_inflight = 1024;
    d.opts.trust_domain = "cluster.local";
    d.opts.mode = MESH_MODE_ALL_AUTHENTICATED;
    d.opts.ca_secret = "weft-ca";
    d.opts.cert_ttl = 86400;
    d.opts.identity = getenv("POD_NAME");
    webhook_config_init(&d.inject);
    d.inject.proxy_image = "weft/proxy:dev";
    d.inject.init_image = "weft/init:dev";
    d.inject.control_plane_addr = NULL;
    rc = parse_args(argc, argv, &d.opts, &d.inject);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!d.inject.control_plane_addr) {
        /* the chart's Service "weftd" in weftd's namespace */
        snprintf(cp_addr, sizeof(cp_addr), "weftd.%s.svc:15012", d.opts.namespace);
        d.inject.control_plane_addr = cp_addr;
    }
    {
        char msg[256];

        if (webhook_config_check(&d.inject, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "weftd: injection settings: %s\n", msg);
            return 2;
        }
    }
    d.inject_opt_in = d.inject;
    d.inject_opt_in.opt_in_only = true;
    if (!d.opts.identity) {
        if (gethostname(host, sizeof(host) - 1) != 0)
            snprintf(host, sizeof(host), "weftd-%d", (int)getpid());
        d.opts.identity = host;
    }
    signal(SIGPIPE, SIG_IGN);

    memset(&diag, 0, sizeof(diag));
    rc = kube_config_load(d.opts.kubeconfig, &d.kcfg, &diag);
    if (rc) {
        fprintf(stderr, "weftd: cannot load Kubernetes credentials: %s\n",
                diag.msg[0] ? diag.msg : err_str(rc));
        return 1;
    }
    d.loop = uv_default_loop();
    rc = kube_client_new(d.loop, d.kcfg, &d.kube);
    if (rc) {
        fprintf(stderr, "weftd: cannot create the API client: %s\n", err_str(rc));
        goto out;
    }
    memset(&mc, 0, sizeof(mc));
    mc.trust_domain = d.opts.trust_domain;
    mc.mode = d.opts.mode;
    rc = mesh_model_new(&mc, &d.model);
    if (rc)
        goto oom;
    d.docs = json_object();
    d.status_pending = json_object();
    if (!d.docs || !d.status_pending)
        goto oom;

    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_init(d.loop, &d.sigint);
    d.sigterm.data = d.sigint.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_start(&d.sigint, on_signal, SIGINT);

    if ((rc = weftd_admin_start(&d)) || (rc = weftd_sync_start(&d)) || (rc = weftd_ca_start(&d)) ||
        (rc = weftd_certs_start(&d)) || (rc = weftd_webhook_start(&d))) {
        fprintf(stderr, "weftd: cannot start: %s\n", err_str(rc));
        goto out;
    }
    memset(&lo, 0, sizeof(lo));
    lo.ns = d.opts.namespace;
    lo.name = "weftd-leader";
    lo.identity = d.opts.identity;
    lo.release_on_stop = true;
    lo.started_leading = started_leading;
    lo.stopped_leading = stopped_leading;
    lo.arg = &d;
    rc = kube_leader_new(d.kube, &lo, &d.leader);
    if (rc) {
        fprintf(stderr, "weftd: cannot start leader election: %s\n", err_str(rc));
        goto out;
    }
    log_info("msg=\"weftd started\" identity=%s namespace=%s server=%s", d.opts.identity,
             d.opts.namespace, kube_config_server(d.kcfg));
    uv_run(d.loop, UV_RUN_DEFAULT);
    exit_code = 0;
    goto out;
oom:
    fprintf(stderr, "weftd: out of memory\n");
out:
    /* Orderly shutdown: stop writers first, give the Lease up, then let handles close. */
    kube_leader_free(d.leader);
    weftd_webhook_stop(&d);
    weftd_certs_stop(&d);
    weftd_ca_stop(&d);
    weftd_sync_stop(&d);
    weftd_admin_stop(&d);
    if (d.loop) {
        uv_signal_stop(&d.sigterm);
        uv_signal_stop(&d.sigint);
        uv_close((uv_handle_t *)&d.sigterm, NULL);
        uv_close((uv_handle_t *)&d.sigint, NULL);
        /* the Lease release and handle closes complete here */
        for (int i = 0; i < 50 && uv_run(d.loop, UV_RUN_NOWAIT); i++)
            usleep(10000);
    }
    kube_client_free(d.kube);
    if (d.loop)
        uv_run(d.loop, UV_RUN_NOWAIT);
    mesh_model_free(d.model);
    json_decref(d.docs);
    json_decref(d.status_pending);
    kube_config_free(d.kcfg);
    return exit_code;
}
