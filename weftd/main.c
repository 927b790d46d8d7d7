/*
 * weftd - Weft's control plane.
 *
 *   weftd [--kubeconfig FILE] [--namespace weft-system] [--webhook-url URL] [options]
 *
 * Out of cluster it uses the kubeconfig (or $KUBECONFIG); in cluster its ServiceAccount. The
 * options are in options.c (weftd --help); see docs/operations.md.
 */
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "weftd/weftd_int.h"

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

int main(int argc, char **argv)
{
    static char host[HOST_NAME_MAX + 1];
    static char cp_addr[300];
    struct weftd d;
    struct diag diag;
    struct kube_leader_opts lo;
    struct mesh_config mc;
    int rc, exit_code = 1;

    rc = weftd_opts_parse(argc, argv, &d);
    if (rc)
        return rc == 1 ? 0 : rc;
    log_set_level(d.opts.log_level);
    if (!d.opts.identity)
        d.opts.identity = getenv("POD_NAME");
    if (!d.inject.control_plane_addr) {
        /* the chart's Service "weftd" in weftd's namespace */
        snprintf(cp_addr, sizeof(cp_addr), "weftd.%s.svc:15012", d.opts.namespace);
        d.inject.control_plane_addr = cp_addr;
    }
    diag_clear(&diag);
    if (webhook_config_check(&d.inject, &diag) != 0) {
        fprintf(stderr, "weftd: injection settings: %s\n", diag.text);
        return 2;
    }
    d.inject_opt_in = d.inject;
    d.inject_opt_in.opt_in_only = true;
    if (!d.opts.identity) {
        if (gethostname(host, sizeof(host) - 1) != 0)
            snprintf(host, sizeof(host), "weftd-%d", (int)getpid());
        d.opts.identity = host;
    }
    signal(SIGPIPE, SIG_IGN);

    diag_clear(&diag);
    rc = kube_config_load(d.opts.kubeconfig, &d.kcfg, &diag);
    if (rc) {
        fprintf(stderr, "weftd: cannot load Kubernetes credentials: %s\n",
                diag.text[0] ? diag.text : err_str(rc));
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
    mc.outbound_scope = d.opts.outbound_scope;
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
        (rc = weftd_stream_start(&d)) || (rc = weftd_programmed_start(&d)) ||
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
    weftd_stream_stop(&d);
    weftd_programmed_stop(&d);
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
