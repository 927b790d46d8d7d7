/*
 * driver_test.c - weft-agent's HAProxy driver (agent/haproxy.c) against a fake HAProxy: what
 * goes through the runtime API and what needs a reload, that a refused configuration keeps the
 * last good files and is reported with HAProxy's message, the certificate swap without a
 * reload, restarts with the last good files; and the renewal and retry timing (identity.c).
 * The real HAProxy is driven in tests/e2e/t0400-agent-haproxy.sh.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/agent.h"
#include "tests/unit/unit.h"

#define DOC "tests/fixtures/mesh/split-uneven/expected/default.productpage-1.json"

struct fake {
    struct buf log; /* every call, one per line */
    int check_rc;   /* what the next check answers */
    long reloads;   /* the master's counter */
    int starts;
    int del_refusals;   /* how many `del server` are refused (connections remain) */
    char checked[4096]; /* the file content seen by the last check */
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    struct buf b;
    char tmp[4096];
    size_t n;

    buf_init(&b);
    if (!f)
        return NULL;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        REQUIRE(buf_append(&b, tmp, n) == 0);
    fclose(f);
    REQUIRE(buf_reserve(&b, 1) == 0);
    return buf_take(&b);
}

static int f_check(void *ctx, const char *cfg, struct diag *diag)
{
    struct fake *f = ctx;
    char *c = slurp(cfg);

    REQUIRE(c);
    snprintf(f->checked, sizeof(f->checked), "%s", c);
    free(c);
    IGNORE_RESULT(buf_printf(&f->log, "check\n"));
    if (f->check_rc)
        diag_set(diag, "haproxy -c refused the configuration: [ALERT] fake refusal");
    return f->check_rc;
}

static int f_start(void *ctx, const char *cfg, const char *ms, int *pid)
{
    struct fake *f = ctx;

    (void)cfg;
    (void)ms;
    f->starts++;
    IGNORE_RESULT(buf_printf(&f->log, "start\n"));
    *pid = 4000 + f->starts;
    return 0;
}

static int f_cmd(void *ctx, const char *sock, const char *cmd, struct buf *reply)
{
    struct fake *f = ctx;
    const char *base = strrchr(sock, '/') + 1;

    if (strcmp(cmd, "show proc") == 0) {
        return buf_printf(reply,
                          "#<PID> <type> <reloads> <uptime> <version>\n1 master %ld [failed: 0] "
                          "0d 2.6\n",
                          f->reloads);
    }
    if (strncmp(cmd, "set ssl", 7) == 0) {
        /* log only the head: the payload holds the key */
        IGNORE_RESULT(buf_printf(&f->log, "%s %.*s\n", base, (int)strcspn(cmd, "<"), cmd));
        return buf_puts(reply, "Transaction created for certificate x!\n");
    }
    IGNORE_RESULT(buf_printf(&f->log, "%s %s\n", base, cmd));
    if (strcmp(cmd, "reload") == 0)
        f->reloads++;
    if (strncmp(cmd, "commit ssl", 10) == 0)
        return buf_puts(reply, "Committing x\nSuccess!\n");
    if (strncmp(cmd, "add server ", 11) == 0)
        return buf_puts(reply, "New server registered.\n\n");
    if (strncmp(cmd, "del server ", 11) == 0) {
        if (f->del_refusals > 0) {
            f->del_refusals--;
            return buf_puts(reply, "Server still has connections attached to it, cannot remove "
                                   "it.\n\n");
        }
        return buf_puts(reply, "Server deleted.\n\n");
    }
    if (strcmp(cmd, "show info") == 0)
        return buf_puts(reply, "Name: HAProxy\nPid: 7\nUptime_sec: 3\n");
    return 0;
}

static const struct agent_haproxy_ops fake_ops = {.check = f_check, .start = f_start, .cmd = f_cmd};

static json_t *load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);

    REQUIRE(j);
    return j;
}

struct env {
    char dir[64], cert[96], ca[96], cfg[96];
    struct agent_render_opts o;
    struct fake f;
    struct agent_driver *d;
};

static void env_init(struct env *e)
{
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/weft-drv-XXXXXX");
    REQUIRE(mkdtemp(e->dir));
    snprintf(e->cert, sizeof(e->cert), "%s/pod.pem", e->dir);
    snprintf(e->ca, sizeof(e->ca), "%s/bundle.pem", e->dir);
    snprintf(e->cfg, sizeof(e->cfg), "%s/haproxy.cfg", e->dir);
    agent_render_opts_init(&e->o);
    e->o.run_dir = e->dir;
    e->o.cert_file = e->cert;
    e->o.ca_file = e->ca;
    buf_init(&e->f.log);
    REQUIRE(agent_driver_new(&fake_ops, &e->f, &e->o, &e->d) == 0);
}

static void env_release(struct env *e)
{
    char cmd[128];

    agent_driver_free(e->d);
    buf_release(&e->f.log);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", e->dir);
    IGNORE_RESULT(system(cmd));
}

static int apply(struct env *e, const json_t *doc, enum agent_apply_kind *k, struct diag *diag)
{
    struct agent_render_out out;
    int rc;

    REQUIRE(agent_render(doc, &e->o, &out, diag) == 0);
    buf_reset(&e->f.log);
    rc = agent_driver_apply(e->d, &out, k, diag);
    agent_render_out_release(&out);
    return rc;
}

/* The endpoints of outbound[0] (productpage: one endpoint, 10.1.0.10 with an identity). */
static json_t *pp_endpoints(json_t *doc)
{
    json_t *eps = json_object_get(
        json_array_get(
            json_object_get(
                json_array_get(
                    json_object_get(
                        json_array_get(
                            json_object_get(json_array_get(json_object_get(doc, "outbound"), 0),
                                            "ports"),
                            0),
                        "routes"),
                    0),
                "backends"),
            0),
        "endpoints");
    REQUIRE(json_is_array(eps));
    return eps;
}

#define PP "oh_default_productpage_9080"

/* One of them (the document's order). */
static json_t *endpoint(json_t *doc, int i)
{
    REQUIRE(json_array_get(pp_endpoints(doc), (size_t)i));
    return json_array_get(pp_endpoints(doc), (size_t)i);
}

static void t_first_start_then_runtime_weights(void)
{
    struct env e;
    json_t *doc = load(DOC);
    enum agent_apply_kind k = AGENT_APPLY_NONE;
    struct diag dg = {0, ""};
    char *cfg;

    env_init(&e);
    CHECK(!agent_driver_configured(e.d));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "start");
    CHECK_STR(e.f.log.p, "check\nstart\n");
    CHECK(agent_driver_configured(e.d));
    CHECK_INT(agent_driver_pid(e.d), 4001);

    /* the same document again: nothing */
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "none");
    CHECK_STR(e.f.log.p ? e.f.log.p : "", "");

    /* a weight changes: the runtime API, no check, no reload; the file follows */
    json_object_set_new(endpoint(doc, 0), "weight", json_integer(5));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    CHECK(strstr(e.f.log.p, "admin.sock set server ") != NULL);
    CHECK(strstr(e.f.log.p, " weight 5\n") != NULL);
    CHECK(strstr(e.f.log.p, "check") == NULL);
    CHECK(strstr(e.f.log.p, "reload") == NULL);
    CHECK_INT(e.f.reloads, 0);
    cfg = slurp(e.cfg);
    CHECK(cfg && strstr(cfg, " weight 5") != NULL);
    free(cfg);

    /* a weight to 0 (an endpoint not ready) too */
    json_object_set_new(endpoint(doc, 0), "ready", json_false());
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    CHECK(strstr(e.f.log.p, " weight 0\n") != NULL);
    json_decref(doc);
    env_release(&e);
}

/* Traffic moving from one server to another (a split flipped from 100/0 to 0/100): the raised
 * weight is set before the lowered one, so the backend never has every weight at 0 (HAProxy
 * would answer 503, no server available, to the requests in between). */
static void t_runtime_weights_raised_first(void)
{
    struct env e;
    json_t *doc = load(DOC);
    json_t *eps = pp_endpoints(doc);
    enum agent_apply_kind k = AGENT_APPLY_NONE;
    struct diag dg = {0, ""};
    int i;

    env_init(&e);
    json_object_set_new(endpoint(doc, 0), "weight", json_integer(100));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    json_array_append_new(eps, json_pack("{s:s,s:i,s:n,s:b,s:i}", "ip", "10.1.0.11", "port", 9080,
                                         "identity", "ready", 1, "weight", 0));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    /* flipped, both ways: whichever server comes first in the document */
    for (i = 0; i < 2; i++) {
        json_object_set_new(endpoint(doc, 0), "weight", json_integer(i == 0 ? 0 : 100));
        json_object_set_new(endpoint(doc, 1), "weight", json_integer(i == 0 ? 100 : 0));
        CHECK_INT(apply(&e, doc, &k, &dg), 0);
        CHECK_STR(agent_apply_kind_name(k), "runtime");
        /* one exchange, the raised weight first */
        if (i == 0)
            CHECK_STR(e.f.log.p, "admin.sock set server " PP "/10.1.0.11_9080 weight 100; "
                                 "set server " PP "/10.1.0.10_9080_b03a3c11 weight 0\n");
        else
            CHECK_STR(e.f.log.p, "admin.sock set server " PP "/10.1.0.10_9080_b03a3c11 weight 100; "
                                 "set server " PP "/10.1.0.11_9080 weight 0\n");
    }
    json_decref(doc);
    env_release(&e);
}

static void t_reload_and_refusal(void)
{
    struct env e;
    json_t *doc = load(DOC);
    enum agent_apply_kind k = AGENT_APPLY_NONE;
    struct diag dg = {0, ""};
    char *good, *now;

    env_init(&e);
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    good = slurp(e.cfg);
    REQUIRE(good);

    /* a timeout changes: not a server, so checked and reloaded */
    json_object_set_new(
        json_array_get(
            json_object_get(json_array_get(json_object_get(doc, "outbound"), 0), "ports"), 0),
        "timeoutMs", json_integer(1234));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "reload");
    CHECK_STR(e.f.log.p, "check\nmaster.sock reload\n");
    CHECK(strstr(e.f.checked, "timeout server 1234ms") != NULL); /* the new file was checked */
    CHECK_INT(e.f.reloads, 1);
    CHECK_INT(e.f.starts, 1);
    free(good);
    good = slurp(e.cfg);
    REQUIRE(good && strstr(good, "timeout server 1234ms"));

    /* HAProxy refuses the next one: its message, no reload, the last good files in place */
    json_object_set_new(
        json_array_get(
            json_object_get(json_array_get(json_object_get(doc, "outbound"), 0), "ports"), 0),
        "timeoutMs", json_integer(99));
    e.f.check_rc = ERR_INVALID;
    CHECK_INT(apply(&e, doc, &k, &dg), ERR_INVALID);
    CHECK_STR(dg.text, "haproxy -c refused the configuration: [ALERT] fake refusal");
    CHECK_STR(e.f.log.p, "check\n");
    CHECK_INT(e.f.reloads, 1);
    now = slurp(e.cfg);
    CHECK(now && strcmp(now, good) == 0);
    free(now);
    {
        char mp[128];
        snprintf(mp, sizeof(mp), "%s/haproxy.cfg.new", e.dir);
        CHECK(access(mp, F_OK) != 0);
    }

    /* a weight change after the refusal is measured against the last good configuration:
     * the refused change is not smuggled in */
    e.f.check_rc = 0;
    json_object_set_new(
        json_array_get(
            json_object_get(json_array_get(json_object_get(doc, "outbound"), 0), "ports"), 0),
        "timeoutMs", json_integer(1234));
    json_object_set_new(endpoint(doc, 0), "weight", json_integer(9));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");

    /* the master died: a restart runs the last good files */
    CHECK_INT(agent_driver_restart(e.d, &dg), 0);
    CHECK_INT(e.f.starts, 2);
    CHECK_INT(agent_driver_pid(e.d), 4002);
    now = slurp(e.cfg);
    CHECK(now && strstr(now, "10.1.0.10:9080 weight 9") != NULL);
    free(now);
    free(good);
    json_decref(doc);
    env_release(&e);
}

/* Scale-ups, scale-downs and a changed identity through the runtime API, never a reload. */
static void t_runtime_servers(void)
{
    struct env e;
    json_t *doc = load(DOC), *eps = pp_endpoints(doc);
    enum agent_apply_kind k = AGENT_APPLY_NONE;
    struct diag dg = {0, ""};
    const char *add, *del;
    char *cfg;

    env_init(&e);
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "start");

    /* scale-up: a plaintext endpoint added; HAProxy adds servers in maintenance */
    json_array_append_new(eps, json_pack("{s:s,s:i,s:n,s:b,s:i}", "ip", "10.1.0.11", "port", 9080,
                                         "identity", "ready", 1, "weight", 1));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    /* with the idle pool a configured server has (2.6 gives an added one none) */
    CHECK_STR(e.f.log.p, "admin.sock add server " PP "/10.1.0.11_9080 10.1.0.11:9080 weight 1"
                         " pool-max-conn -1 pool-purge-delay 5s\n"
                         "admin.sock set server " PP "/10.1.0.11_9080 state ready\n");
    cfg = slurp(e.cfg);
    CHECK(cfg && strstr(cfg, "    server 10.1.0.11_9080 10.1.0.11:9080 weight 1\n") != NULL);
    free(cfg);

    /* the first endpoint's identity changes: verifyhost cannot change on a running server, so
     * the server named after the new identity is added, then the old one drained and deleted */
    json_object_set_new(json_array_get(eps, 0), "identity",
                        json_string("spiffe://cluster.local/ns/default/sa/other"));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    add = strstr(e.f.log.p, "admin.sock add server " PP "/10.1.0.10_9080_");
    del = strstr(e.f.log.p, "admin.sock del server " PP "/10.1.0.10_9080_");
    CHECK(add && del && add < del);
    CHECK(strstr(e.f.log.p, " 10.1.0.10:9080 weight 1 ssl crt ") != NULL);
    CHECK(strstr(e.f.log.p,
                 "sni str(other.default.cluster.local) verifyhost "
                 "other.default.cluster.local pool-max-conn -1 pool-purge-delay 5s\n") != NULL);
    CHECK(strstr(e.f.log.p, " state maint\n") != NULL);
    CHECK(strstr(e.f.log.p, "check") == NULL && strstr(e.f.log.p, "reload") == NULL);

    /* scale-down while the server still has connections: drained (maintenance), kept, and
     * deleted by a later sweep once HAProxy lets go */
    json_array_remove(eps, 1);
    e.f.del_refusals = 1;
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    CHECK_STR(e.f.log.p, "admin.sock set server " PP "/10.1.0.11_9080 state maint\n"
                         "admin.sock del server " PP "/10.1.0.11_9080\n");
    cfg = slurp(e.cfg);
    CHECK(cfg && strstr(cfg, "10.1.0.11") == NULL);
    free(cfg);
    buf_reset(&e.f.log);
    agent_driver_sweep(e.d);
    CHECK_STR(e.f.log.p, "admin.sock del server " PP "/10.1.0.11_9080\n");
    buf_reset(&e.f.log);
    agent_driver_sweep(e.d); /* gone: nothing left to sweep */
    CHECK_STR(e.f.log.p ? e.f.log.p : "", "");

    /* removed, kept (connections), then back before it was deleted: taken back, not added */
    json_array_append_new(eps, json_pack("{s:s,s:i,s:n,s:b,s:i}", "ip", "10.1.0.11", "port", 9080,
                                         "identity", "ready", 1, "weight", 2));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    json_array_remove(eps, 1);
    e.f.del_refusals = 1;
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    json_array_append_new(eps, json_pack("{s:s,s:i,s:n,s:b,s:i}", "ip", "10.1.0.11", "port", 9080,
                                         "identity", "ready", 1, "weight", 3));
    e.f.del_refusals = 1; /* the sweep before the apply is refused too */
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "runtime");
    CHECK_STR(e.f.log.p, "admin.sock del server " PP "/10.1.0.11_9080\n"
                         "admin.sock set server " PP "/10.1.0.11_9080 weight 3\n"
                         "admin.sock set server " PP "/10.1.0.11_9080 state ready\n");

    /* anything but servers (here a timeout) takes a reload; the new worker runs the file, so
     * no removed server is left to sweep */
    json_array_remove(eps, 1);
    e.f.del_refusals = 1;
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    json_object_set_new(
        json_array_get(
            json_object_get(json_array_get(json_object_get(doc, "outbound"), 0), "ports"), 0),
        "timeoutMs", json_integer(777));
    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    CHECK_STR(agent_apply_kind_name(k), "reload");
    buf_reset(&e.f.log);
    agent_driver_sweep(e.d);
    CHECK_STR(e.f.log.p ? e.f.log.p : "", "");
    json_decref(doc);
    env_release(&e);
}

static void t_identity_swap(void)
{
    struct env e;
    json_t *doc = load(DOC);
    enum agent_apply_kind k = AGENT_APPLY_NONE;
    struct diag dg = {0, ""};
    struct stat st;
    char *pem;

    env_init(&e);
    /* before HAProxy runs: files only */
    CHECK_INT(agent_driver_set_identity(
                  e.d,
                  "-----BEGIN CERTIFICATE-----\nA\n-----END "
                  "CERTIFICATE-----",
                  "-----BEGIN PRIVATE KEY-----\nK\n-----END PRIVATE KEY-----\n",
                  "-----BEGIN CERTIFICATE-----\nR\n-----END CERTIFICATE-----\n", &dg),
              0);
    CHECK_STR(e.f.log.p ? e.f.log.p : "", "");
    REQUIRE(stat(e.cert, &st) == 0);
    CHECK_INT(st.st_mode & 0777, 0600);
    pem = slurp(e.cert);
    CHECK_STR(pem, "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n-----BEGIN PRIVATE "
                   "KEY-----\nK\n-----END PRIVATE KEY-----\n");
    free(pem);

    CHECK_INT(apply(&e, doc, &k, &dg), 0);
    buf_reset(&e.f.log);
    /* with HAProxy running, a renewal with the same bundle: the certificate alone through the
     * runtime API, no reload */
    CHECK_INT(agent_driver_set_identity(
                  e.d,
                  "-----BEGIN CERTIFICATE-----\nB\n-----END "
                  "CERTIFICATE-----\n",
                  "-----BEGIN PRIVATE KEY-----\nL\n-----END PRIVATE KEY-----\n",
                  "-----BEGIN CERTIFICATE-----\nR\n-----END CERTIFICATE-----\n", &dg),
              0);
    {
        char want[1024];
        snprintf(want, sizeof(want), "admin.sock set ssl cert %s \nadmin.sock commit ssl cert %s\n",
                 e.cert, e.cert);
        CHECK_STR(e.f.log.p, want);
    }
    CHECK_INT(e.f.reloads, 0);
    /* a new bundle with the renewal: never `commit ssl ca-file` (HAProxy 2.6.12 breaks later
     * certificate commits after one, then crashes); both files, checked, one reload */
    buf_reset(&e.f.log);
    CHECK_INT(agent_driver_set_identity(
                  e.d,
                  "-----BEGIN CERTIFICATE-----\nC\n-----END "
                  "CERTIFICATE-----\n",
                  "-----BEGIN PRIVATE KEY-----\nM\n-----END PRIVATE KEY-----\n",
                  "-----BEGIN CERTIFICATE-----\nS\n-----END CERTIFICATE-----\n", &dg),
              0);
    CHECK_STR(e.f.log.p, "check\nmaster.sock reload\n");
    CHECK_INT(e.f.reloads, 1);
    pem = slurp(e.ca);
    CHECK_STR(pem, "-----BEGIN CERTIFICATE-----\nS\n-----END CERTIFICATE-----\n");
    free(pem);
    pem = slurp(e.cert);
    CHECK(pem && strstr(pem, "\nC\n") && strstr(pem, "\nM\n"));
    free(pem);
    /* the next renewal, same bundle: the runtime API again */
    buf_reset(&e.f.log);
    CHECK_INT(agent_driver_set_identity(
                  e.d,
                  "-----BEGIN CERTIFICATE-----\nD\n-----END "
                  "CERTIFICATE-----\n",
                  "-----BEGIN PRIVATE KEY-----\nN\n-----END PRIVATE KEY-----\n",
                  "-----BEGIN CERTIFICATE-----\nS\n-----END CERTIFICATE-----\n", &dg),
              0);
    {
        char want[1024];
        snprintf(want, sizeof(want), "admin.sock set ssl cert %s \nadmin.sock commit ssl cert %s\n",
                 e.cert, e.cert);
        CHECK_STR(e.f.log.p, want);
    }
    /* a bundle alone (the stream's trust message): the same bundle does nothing, a new one
     * reloads */
    buf_reset(&e.f.log);
    {
        bool reloaded = true;
        CHECK_INT(
            agent_driver_set_trust(
                e.d, "-----BEGIN CERTIFICATE-----\nS\n-----END CERTIFICATE-----\n", &reloaded, &dg),
            0);
        CHECK(!reloaded);
        CHECK_STR(e.f.log.p ? e.f.log.p : "", "");
        CHECK_INT(agent_driver_set_trust(e.d,
                                         "-----BEGIN CERTIFICATE-----\nS\n-----END "
                                         "CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nT\n-"
                                         "----END CERTIFICATE-----\n",
                                         &reloaded, &dg),
                  0);
        CHECK(reloaded);
        CHECK_STR(e.f.log.p, "check\nmaster.sock reload\n");
        /* a bundle HAProxy refuses: reported with its words, the last good one back on disk */
        e.f.check_rc = ERR_INVALID;
        CHECK_INT(
            agent_driver_set_trust(
                e.d, "-----BEGIN CERTIFICATE-----\nU\n-----END CERTIFICATE-----\n", &reloaded, &dg),
            ERR_INVALID);
        CHECK(strstr(dg.text, "fake refusal") != NULL);
        e.f.check_rc = 0;
        pem = slurp(e.ca);
        CHECK(pem && strstr(pem, "\nT\n") && !strstr(pem, "\nU\n"));
        free(pem);
    }
    {
        struct agent_driver_stats ds;
        agent_driver_get_stats(e.d, &ds);
        CHECK_INT((int)ds.reloads, 2);
        CHECK_INT((int)ds.bundle_reloads, 2);
        CHECK_INT((int)ds.cert_swaps, 2);
    }
    CHECK_INT(e.f.reloads, 2);
    CHECK_INT(e.f.starts, 1);
    CHECK(agent_driver_healthy(e.d));
    json_decref(doc);
    env_release(&e);
}

static void t_timing(void)
{
    /* a 60 s certificate received now: renewed at 30 s, up to 6 s earlier with jitter */
    CHECK_INT(agent_renew_delay_ms(1000, 1060, 0.0), 30000);
    CHECK_INT(agent_renew_delay_ms(1000, 1060, 0.999999), 24000);
    CHECK(agent_renew_delay_ms(1000, 1060, 0.5) == 27000);
    /* 24 h */
    CHECK_INT(agent_renew_delay_ms(0, 86400, 0.0), 43200000);
    /* expired or nearly: soon, not at once */
    CHECK_INT(agent_renew_delay_ms(1000, 999, 0.0), 1000);
    /* retries: 1 s doubling to 30 s, jittered down to half */
    CHECK_INT(agent_retry_delay_ms(0, 0, 0, 0.0), 500);
    CHECK_INT(agent_retry_delay_ms(0, 0, 0, 0.999999), 999);
    CHECK_INT(agent_retry_delay_ms(3, 0, 0, 0.0), 4000);
    CHECK_INT(agent_retry_delay_ms(10, 0, 0, 0.0), 15000);
    CHECK_INT(agent_retry_delay_ms(40, 0, 0, 0.999999), 29999);
    /* with a certificate valid 10 s more: never more than half of that */
    CHECK_INT(agent_retry_delay_ms(10, 100, 110, 0.999999), 5000);
    CHECK_INT(agent_retry_delay_ms(10, 100, 100, 0.0), 15000); /* expired: plain backoff */
}

UNIT_MAIN(UNIT(t_first_start_then_runtime_weights), UNIT(t_runtime_weights_raised_first),
          UNIT(t_reload_and_refusal), UNIT(t_runtime_servers), UNIT(t_identity_swap),
          UNIT(t_timing))
