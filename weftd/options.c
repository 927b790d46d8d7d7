/*
 * options.c - weftd's command line: one table (flag, field, parser, default, help) drives the
 * defaults, the parsing and --help.
 *
 * A row's default is text given to its own parser before the command line is read, so it is
 * checked like any value; a row without one keeps what the field held before (zero, or
 * webhook_config_init's injection defaults) and main may compute it after parsing (the
 * identity, the control-plane address). --help shows for every row the value its field holds
 * once the defaults are in, so the text never disagrees with the code.
 */
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "weftd/weftd_int.h"

#define HELP_COLUMN 27 /* where help text starts */
#define HELP_WIDTH 81  /* lines are wrapped to at most this many columns */

struct opt;

/* Parse val (NULL for a switch) into field. 0, or -1 after printing what is wrong. */
typedef int opt_parse_fn(const struct opt *o, const char *val, void *field);
/* The field's value as --help shows it, or NULL when there is nothing to show. */
typedef const char *opt_show_fn(const void *field, char *buf, size_t n);

struct opt_type {
    opt_parse_fn *parse;
    opt_show_fn *show;
};

struct opt {
    const char *name; /* the flag without "--" */
    const char *arg;  /* what the value is ("ADDR"); NULL: a switch */
    size_t off;       /* of the field in struct weftd */
    const struct opt_type *type;
    const char *def; /* parsed before the command line; NULL: the field's own value */
    const char *help;
    long min, max; /* numbers only */
};

static void bad_value(const struct opt *o, const char *val, const char *want)
{
    fprintf(stderr, "weftd: --%s: \"%s\" is not %s\n", o->name, val, want);
}

static int parse_str(const struct opt *o, const char *val, void *field)
{
    (void)o;
    *(const char **)field = val;
    return 0;
}

/* An empty value leaves the field out of the sidecar (NULL). */
static int parse_omittable(const struct opt *o, const char *val, void *field)
{
    (void)o;
    *(const char **)field = *val ? val : NULL;
    return 0;
}

static const char *show_str(const void *field, char *buf, size_t n)
{
    (void)buf;
    (void)n;
    return *(const char *const *)field;
}

static int parse_switch(const struct opt *o, const char *val, void *field)
{
    (void)o;
    (void)val;
    *(bool *)field = true;
    return 0;
}

static int parse_long(const struct opt *o, const char *val, void *field)
{
    char *end, want[64];
    long v;

    errno = 0;
    v = strtol(val, &end, 10);
    if (end == val || *end || errno || v < o->min || v > o->max) {
        if (o->max == LONG_MAX)
            snprintf(want, sizeof(want), "a number >= %ld", o->min);
        else
            snprintf(want, sizeof(want), "a number from %ld to %ld", o->min, o->max);
        bad_value(o, val, want);
        return -1;
    }
    *(long *)field = v;
    return 0;
}

static const char *show_long(const void *field, char *buf, size_t n)
{
    snprintf(buf, n, "%ld", *(const long *)field);
    return buf;
}

static int parse_mode(const struct opt *o, const char *val, void *field)
{
    if (mesh_mode_parse(val, field) == 0)
        return 0;
    bad_value(o, val, "all-authenticated, deny or permissive");
    return -1;
}

static const char *show_mode(const void *field, char *buf, size_t n)
{
    (void)buf;
    (void)n;
    return mesh_mode_name(*(const enum mesh_mode *)field);
}

static int parse_scope(const struct opt *o, const char *val, void *field)
{
    if (mesh_outbound_scope_parse(val, field) == 0)
        return 0;
    bad_value(o, val, "mesh or admitted");
    return -1;
}

static const char *show_scope(const void *field, char *buf, size_t n)
{
    (void)buf;
    (void)n;
    return mesh_outbound_scope_name(*(const enum mesh_outbound_scope *)field);
}

static int parse_log_level(const struct opt *o, const char *val, void *field)
{
    if (log_level_parse(val, field) == 0)
        return 0;
    fprintf(stderr, "weftd: --%s: unknown level \"%s\"\n", o->name, val);
    return -1;
}

static const char *show_log_level(const void *field, char *buf, size_t n)
{
    (void)buf;
    (void)n;
    return log_level_name(*(const enum log_level *)field);
}

static const struct opt_type t_str = {parse_str, show_str};
static const struct opt_type t_omittable = {parse_omittable, show_str};
static const struct opt_type t_switch = {parse_switch, NULL};
/* A bound on clients: 0 (unset) leaves each listener its own (weftd_listener_bounds). */
static const char *show_bound(const void *field, char *buf, size_t n)
{
    return *(const long *)field ? show_long(field, buf, n) : NULL;
}

static const struct opt_type t_long = {parse_long, show_long};
static const struct opt_type t_bound = {parse_long, show_bound};
static const struct opt_type t_mode = {parse_mode, show_mode};
static const struct opt_type t_scope = {parse_scope, show_scope};
static const struct opt_type t_log_level = {parse_log_level, show_log_level};

#define O(f) offsetof(struct weftd, f)

/* clang-format off */
static const struct opt opts[] = {
    {"kubeconfig", "FILE", O(opts.kubeconfig), &t_str, NULL,
     "out-of-cluster credentials (default: in-cluster, then $KUBECONFIG)", 0, 0},
    {"namespace", "NS", O(opts.namespace), &t_str, "weft-system", "weftd's namespace", 0, 0},
    {"identity", "NAME", O(opts.identity), &t_str, NULL,
     "leader-election identity (default: $POD_NAME or host)", 0, 0},
    {"admin-listen", "ADDR", O(opts.admin_listen), &t_str, "0.0.0.0:15014",
     "metrics, health, debug", 0, 0},
    {"webhook-listen", "ADDR", O(opts.webhook_listen), &t_str, "0.0.0.0:9443",
     "injection webhook", 0, 0},
    {"certs-listen", "ADDR", O(opts.certs_listen), &t_str, "0.0.0.0:15012",
     "certificate endpoint", 0, 0},
    {"stream-listen", "ADDR", O(opts.stream_listen), &t_str, "0.0.0.0:15013",
     "config stream (IPv4)", 0, 0},
    {"stream-debounce-ms", "MS", O(opts.stream_debounce_ms), &t_long, "100",
     "config stream: a burst of changes to one proxy within this is sent as one", 0, 60000},
    {"stream-protocol", "N", O(opts.stream_protocol), &t_long, "2",
     "config stream: newest protocol served (2: v2 to agents that offer it, v1 to others; 1: v1 "
     "only)",
     1, 2},
    {"disconnected-grace-s", "S", O(opts.disconnected_grace_s), &t_long, "30",
     "Programmed: a proxy on no replica's stream stops being waited for after this", 0, 86400},
    {"webhook-url", "URL", O(opts.webhook_url), &t_str, NULL,
     "register weft-injector with this URL (out of cluster)", 0, 0},
    {"webhook-service", "NAME", O(opts.webhook_service), &t_str, "weft-webhook",
     "Service in front of the webhook", 0, 0},
    {"webhook-max-inflight", "N", O(opts.webhook_max_inflight), &t_long, "1024",
     "reviews queued or running before 503s", 1, 1000000},
    {"trust-domain", "DOMAIN", O(opts.trust_domain), &t_str, "cluster.local",
     "SPIFFE trust domain", 0, 0},
    {"default-mode", "MODE", O(opts.mode), &t_mode, "all-authenticated",
     "all-authenticated | deny | permissive", 0, 0},
    {"outbound-scope", "SCOPE", O(opts.outbound_scope), &t_scope, "mesh",
     "mesh | admitted: the Services each proxy's document lists (all of them; those its "
     "identity may call: smaller, but a refused caller gets a closed connection, no 403)",
     0, 0},
    {"ca-secret", "NAME", O(opts.ca_secret), &t_str, "weft-ca", "Secret holding Weft's root", 0, 0},
    {"user-ca-secret", "NAME", O(opts.user_ca_secret), &t_str, NULL,
     "operator-supplied root or intermediate to issue from", 0, 0},
    {"cert-ttl", "SECONDS", O(opts.cert_ttl), &t_long, "86400",
     "workload certificate lifetime", CA_TTL_MIN, CA_TTL_MAX},
    {"proxy-image", "IMAGE", O(inject.proxy_image), &t_str, "weft/proxy:dev", "sidecar image", 0, 0},
    {"init-image", "IMAGE", O(inject.init_image), &t_str, "weft/init:dev",
     "init container image", 0, 0},
    {"native-sidecars", NULL, O(inject.native_sidecars), &t_switch, NULL,
     "inject weft-proxy as a native sidecar", 0, 0},
    {"proxy-cpu-request", "Q", O(inject.proxy_cpu_request), &t_omittable, NULL,
     "weft-proxy's CPU request; \"\" omits it", 0, 0},
    {"proxy-memory-request", "Q", O(inject.proxy_memory_request), &t_omittable, NULL,
     "weft-proxy's memory request; \"\" omits it", 0, 0},
    {"proxy-cpu-limit", "Q", O(inject.proxy_cpu_limit), &t_omittable, NULL,
     "weft-proxy's CPU limit; \"\" omits it", 0, 0},
    {"proxy-memory-limit", "Q", O(inject.proxy_memory_limit), &t_omittable, NULL,
     "weft-proxy's memory limit; \"\" omits it", 0, 0},
    {"proxy-log-level", "LEVEL", O(inject.log_level), &t_str, NULL, "weft-agent's log level",
     0, 0},
    {"control-plane-addr", "H:P", O(inject.control_plane_addr), &t_str, NULL,
     "where agents reach weftd (weftd.<namespace>.svc:15012)", 0, 0},
    {"image-pull-policy", "P", O(inject.image_pull_policy), &t_omittable, NULL,
     "of injected containers (cluster default)", 0, 0},
    {"log-level", "LEVEL", O(opts.log_level), &t_log_level, "info", "debug, info, warn, error",
     0, 0},
    {"request-timeout-ms", "MS", O(opts.request_timeout_ms), &t_bound, NULL,
     "every listener: a request must arrive whole within this (default: each listener's own, "
     "docs/operations.md)", 1, 3600000},
    {"max-connections", "N", O(opts.max_connections), &t_bound, NULL,
     "every listener: open connections", 1, 1000000},
    {"max-connections-per-address", "N", O(opts.max_connections_per_ip), &t_bound, NULL,
     "every listener: open connections from one client address", 1, 1000000},
    {"max-buffered-request-bytes", "N", O(opts.max_request_bytes), &t_bound, NULL,
     "every listener: request bytes held over all its connections", 1, 1L << 40},
    {"max-request-bytes-per-second-per-address", "N", O(opts.request_bytes_per_s), &t_bound, NULL,
     "every listener: request bytes read per second from one client address", 1, 1L << 40},
};
/* clang-format on */

#undef O

static void *field_of(struct weftd *d, const struct opt *o)
{
    return (char *)d + o->off;
}

/* The defaults: what webhook_config_init gives injection, then every row's default. */
static void defaults_apply(struct weftd *d)
{
    memset(d, 0, sizeof(*d));
    webhook_config_init(&d->inject);
    /* computed from the namespace after parsing unless --control-plane-addr is given */
    d->inject.control_plane_addr = NULL;
    for (size_t i = 0; i < ARRAY_LEN(opts); i++)
        if (opts[i].def && opts[i].type->parse(&opts[i], opts[i].def, field_of(d, &opts[i])))
            abort(); /* a default its own parser refuses: a mistake in the table */
}

/* Print text from column col, wrapped before HELP_WIDTH, continuing at HELP_COLUMN. */
static void print_wrapped(FILE *f, int col, const char *text)
{
    while (*text) {
        size_t room = (size_t)(HELP_WIDTH - col), n = strlen(text);

        if (n > room) {
            /* break at the last space that fits (or, if none, at the first one) */
            size_t cut = room;
            while (cut > 0 && text[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = strcspn(text, " ");
            n = cut;
        }
        fprintf(f, "%.*s\n", (int)n, text);
        text += n;
        while (*text == ' ')
            text++;
        if (*text)
            fprintf(f, "%*s", HELP_COLUMN, "");
        col = HELP_COLUMN;
    }
}

static void usage(FILE *f)
{
    struct weftd *d = calloc(1, sizeof(*d));

    if (!d) {
        fputs("weftd: out of memory\n", f);
        return;
    }
    defaults_apply(d);
    fputs("usage: weftd [options]\n", f);
    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        const struct opt *o = &opts[i];
        char flag[64], val[64], text[256];
        const char *shown = o->type->show ? o->type->show(field_of(d, o), val, sizeof(val)) : NULL;
        int col;

        snprintf(flag, sizeof(flag), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        col = fprintf(f, "  %-*s ", HELP_COLUMN - 3, flag);
        if (shown && *shown)
            snprintf(text, sizeof(text), "%s (%s)", o->help, shown);
        else
            snprintf(text, sizeof(text), "%s", o->help);
        print_wrapped(f, col, text);
    }
    free(d);
}

int weftd_opts_parse(int argc, char **argv, struct weftd *d)
{
    struct option lopts[ARRAY_LEN(opts) + 2];
    int opt;

    defaults_apply(d);
    for (size_t i = 0; i < ARRAY_LEN(opts); i++)
        lopts[i] = (struct option){opts[i].name, opts[i].arg ? required_argument : no_argument,
                                   NULL, 256 + (int)i};
    lopts[ARRAY_LEN(opts)] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[ARRAY_LEN(opts) + 1] = (struct option){NULL, 0, NULL, 0};
    while ((opt = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        if (opt >= 256 && (size_t)(opt - 256) < ARRAY_LEN(opts)) {
            const struct opt *o = &opts[opt - 256];
            if (o->type->parse(o, optarg, field_of(d, o)))
                return 2;
        } else if (opt == 'h') {
            usage(stdout); /* what follows --help is not looked at */
            return 1;
        } else {
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
