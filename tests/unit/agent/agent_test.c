/*
 * agent_test.c - agent/: weft-init's plan and rules (agent_ipt_*). The rules themselves are
 * checked on the wire by tests/e2e/t0100-init-redirect.sh; here: argument parsing, the rule text
 * per family and the merge with a table that holds other rules.
 */
#include <glob.h>
#include <sys/socket.h>

#include "agent/agent.h"
#include "tests/unit/unit.h"

static char *rules_of(const struct agent_ipt_plan *p, int family)
{
    struct buf b;

    buf_init(&b);
    REQUIRE(agent_ipt_rules(p, family, &b) == 0);
    return buf_take(&b);
}

static void t_plan_parse(void)
{
    struct agent_ipt_plan p;
    struct diag dg = {0, ""};

    agent_ipt_plan_init(&p);
    CHECK(p.in_all && p.out_all);
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-inbound-ports", " 7777, 15020,15090,7777 ", &dg), 0);
    CHECK_INT(p.n_ex_in_ports, 3); /* duplicate dropped */
    CHECK_INT(p.ex_in_ports[0], 7777);
    CHECK_INT(agent_ipt_plan_set(&p, "include-inbound-ports", "", &dg), 0);
    CHECK(!p.in_all);
    CHECK_INT(p.n_in_ports, 0);
    CHECK_INT(agent_ipt_plan_set(&p, "include-inbound-ports", "*", &dg), 0);
    CHECK(p.in_all);
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-outbound-ip-ranges",
                                 "10.1.2.3/8,10.0.0.0/8,fd00::1/8", &dg),
              0);
    CHECK_INT(p.n_ex_ranges, 2); /* host bits cleared: 10.1.2.3/8 == 10.0.0.0/8 */

    CHECK_INT(agent_ipt_plan_set(&p, "exclude-inbound-ports", "*", &dg), ERR_INVALID);
    CHECK_STR(dg.text,
              "--exclude-inbound-ports: \"*\" is not allowed here (want comma-separated ports "
              "1-65535)");
    CHECK_INT(p.n_ex_in_ports, 3); /* unchanged on error */
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-outbound-ports", "80,0", &dg), ERR_INVALID);
    CHECK_STR(dg.text, "--exclude-outbound-ports: invalid item \"0\" (want comma-separated ports "
                       "1-65535)");
    CHECK_INT(agent_ipt_plan_set(&p, "exclude-outbound-ports", "80,,81", &dg), ERR_INVALID);
    CHECK_STR(dg.text,
              "--exclude-outbound-ports: empty item in \"80,,81\" (want comma-separated ports "
              "1-65535)");
    CHECK_INT(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "10.0.0.0/33", &dg),
              ERR_INVALID);
    CHECK_INT(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "10.0.0.1", &dg), ERR_INVALID);
    CHECK_INT(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "fd00::/129", &dg), ERR_INVALID);
    CHECK_INT(agent_ipt_plan_set(&p, "bogus", "1", &dg), ERR_INVALID);
    agent_ipt_plan_release(&p);
    agent_ipt_plan_release(NULL);
}

static void t_rules(void)
{
    struct agent_ipt_plan p;
    struct diag dg = {0, ""};
    char *r4, *r6;

    agent_ipt_plan_init(&p);
    REQUIRE(agent_ipt_plan_set(&p, "exclude-inbound-ports", "15020,15090", &dg) == 0);
    REQUIRE(agent_ipt_plan_set(&p, "exclude-outbound-ip-ranges", "10.96.0.0/12,fd00::/8", &dg) ==
            0);
    REQUIRE(agent_ipt_plan_set(&p, "exclude-outbound-ports", "5432", &dg) == 0);
    r4 = rules_of(&p, AF_INET);
    CHECK_STR(r4, ":WEFT_INBOUND - [0:0]\n"
                  ":WEFT_IN_REDIRECT - [0:0]\n"
                  ":WEFT_OUTPUT - [0:0]\n"
                  ":WEFT_REDIRECT - [0:0]\n"
                  "-A PREROUTING -p tcp -j WEFT_INBOUND\n"
                  "-A OUTPUT -p tcp -j WEFT_OUTPUT\n"
                  "-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006\n"
                  "-A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports 15001\n"
                  "-A WEFT_INBOUND -p tcp -m tcp --dport 15020 -j RETURN\n"
                  "-A WEFT_INBOUND -p tcp -m tcp --dport 15090 -j RETURN\n"
                  "-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT\n"
                  "-A WEFT_OUTPUT -s 127.0.0.6/32 -o lo -j RETURN\n"
                  "-A WEFT_OUTPUT ! -d 127.0.0.1/32 -o lo -p tcp -m owner --uid-owner 1337 -j "
                  "WEFT_INBOUND\n"
                  "-A WEFT_OUTPUT -o lo -j RETURN\n"
                  "-A WEFT_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"
                  "-A WEFT_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN\n"
                  "-A WEFT_OUTPUT -d 10.96.0.0/12 -j RETURN\n"
                  "-A WEFT_OUTPUT -j WEFT_REDIRECT\n");
    r6 = rules_of(&p, AF_INET6);
    CHECK(strstr(r6, "-A WEFT_OUTPUT -s ::6/128 -o lo -j RETURN\n"));
    CHECK(strstr(r6, "! -d ::1/128 -o lo"));
    CHECK(strstr(r6, "-A WEFT_OUTPUT -d fd00::/8 -j RETURN\n"));
    CHECK(!strstr(r6, "10.96"));
    free(r4);
    free(r6);

    /* Include lists: only the listed ports / ranges; an excluded port is never included. */
    REQUIRE(agent_ipt_plan_set(&p, "include-inbound-ports", "8080,15020", &dg) == 0);
    REQUIRE(agent_ipt_plan_set(&p, "include-outbound-ip-ranges", "10.0.0.0/8", &dg) == 0);
    r4 = rules_of(&p, AF_INET);
    CHECK(strstr(r4, "-A WEFT_INBOUND -p tcp -m tcp --dport 8080 -j WEFT_IN_REDIRECT\n"));
    CHECK(!strstr(r4, "--dport 15020"));
    CHECK(!strstr(r4, "-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT"));
    CHECK(strstr(r4, "-A WEFT_OUTPUT -d 10.0.0.0/8 -j WEFT_REDIRECT\n"));
    CHECK(!strstr(r4, "-A WEFT_OUTPUT -j WEFT_REDIRECT"));
    r6 = rules_of(&p, AF_INET6);
    CHECK(!strstr(r6, "-j WEFT_REDIRECT\n")); /* no IPv6 range is included */
    free(r4);
    free(r6);
    agent_ipt_plan_release(&p);
}

static void t_merge(void)
{
    struct agent_ipt_plan p;
    struct buf once, twice;
    struct diag dg = {0, ""};
    char *r = NULL;
    const char *saved = "# Generated by iptables-save v1.8.9 (nf_tables)\n"
                        "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\nCOMMIT\n"
                        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n"
                        ":OUTPUT DROP [0:0]\n:POSTROUTING ACCEPT [0:0]\n:CNI_X - [0:0]\n"
                        ":WEFT_OLD - [0:0]\n"
                        "-A OUTPUT -d 192.0.2.1/32 -j CNI_X\n"
                        "-A OUTPUT -p tcp -j WEFT_OUTPUT\n"
                        "-A PREROUTING -p tcp -g WEFT_OLD\n"
                        "-A WEFT_OLD -j RETURN\n"
                        "-A CNI_X -j RETURN\n"
                        "COMMIT\n# Completed\n";

    agent_ipt_plan_init(&p);
    r = rules_of(&p, AF_INET);
    buf_init(&once);
    buf_init(&twice);
    REQUIRE(agent_ipt_merge(saved, r, &once, &dg) == 0);
    /* other tables are not restored; the nat table keeps others' chains, policies and rules */
    CHECK(!strstr(once.p, "*filter"));
    CHECK(strncmp(once.p, "*nat\n:PREROUTING ACCEPT [0:0]\n", 30) == 0);
    CHECK(strstr(once.p, ":OUTPUT DROP [0:0]\n"));
    CHECK(strstr(once.p, ":CNI_X - [0:0]\n"));
    CHECK(strstr(once.p, "-A OUTPUT -d 192.0.2.1/32 -j CNI_X\n-A CNI_X -j RETURN\n"));
    CHECK(!strstr(once.p, "WEFT_OLD"));
    /* exactly one jump to each of our chains */
    {
        int n = 0;

        for (const char *s = once.p; (s = strstr(s, "-j WEFT_OUTPUT\n")); s++)
            n++;
        CHECK_INT(n, 1);
    }
    CHECK(strstr(once.p, "COMMIT\n") && strlen(strstr(once.p, "COMMIT\n")) == 7);
    /* merging the result again gives the same table (what iptables-save would show) */
    REQUIRE(agent_ipt_merge(once.p, r, &twice, &dg) == 0);
    CHECK_STR(twice.p, once.p);

    /* an empty save (legacy without a nat table yet) */
    buf_reset(&once);
    REQUIRE(agent_ipt_merge("", r, &once, &dg) == 0);
    CHECK(strncmp(once.p, "*nat\n:WEFT_INBOUND - [0:0]\n", 27) == 0);

    /* a table iptables cannot show is refused, not overwritten */
    buf_reset(&once);
    CHECK_INT(agent_ipt_merge("*nat\n# Table `nat' is incompatible, use 'nft' tool.\nCOMMIT\n", r,
                              &once, &dg),
              ERR_UNSUPPORTED);
    CHECK(strstr(dg.text, "refusing to overwrite"));
    CHECK_INT(agent_ipt_merge("*nat\n[1:2] -A OUTPUT -j X\nCOMMIT\n", r, &once, &dg), ERR_PARSE);
    buf_release(&once);
    buf_release(&twice);
    free(r);
    agent_ipt_plan_release(&p);
}

/* ---- the renderer ---- */

#define MESH "tests/fixtures/mesh/"

static json_t *load(const char *path)
{
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);

    if (!j) {
        fprintf(stderr, "  %s: %s\n", path, e.text);
        exit(1);
    }
    return j;
}

static int render(const json_t *doc, struct agent_render_out *out, struct diag *diag)
{
    struct agent_render_opts o;

    agent_render_opts_init(&o);
    o.run_dir = "/run/w";
    o.cert_file = "/run/w/pod.pem";
    o.ca_file = "/run/w/bundle.pem";
    return agent_render(doc, &o, out, diag);
}

/* position of needle in hay, or -1 */
static long pos(const char *hay, const char *needle)
{
    const char *p = strstr(hay, needle);

    return p ? (long)(p - hay) : -1;
}

/* occurrences of needle in hay */
static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;

    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The value at a slash-separated path ("inbound/1/allow/0"): digits index arrays. */
static json_t *jp(json_t *v, const char *path)
{
    char part[64];

    while (v && *path) {
        size_t n = strcspn(path, "/");

        snprintf(part, sizeof(part), "%.*s", (int)n, path);
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(part)) : json_object_get(v, part);
        path += n + (path[n] == '/');
    }
    REQUIRE(v != NULL);
    return v;
}

#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        if (pos((hay), (needle)) < 0) {                                                            \
            fprintf(stderr, "  %s:%d: missing: %s\n", __FILE__, __LINE__, (needle));               \
            unit__failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* a port's protocol carries HTTP (http, http2, grpc); HTTP/2 (http2, grpc) */
static bool is_http(const json_t *port)
{
    const char *p = json_string_value(json_object_get(port, "protocol"));

    return p && (!strcmp(p, "http") || !strcmp(p, "http2") || !strcmp(p, "grpc"));
}

static bool is_h2(const json_t *port)
{
    const char *p = json_string_value(json_object_get(port, "protocol"));

    return p && (!strcmp(p, "http2") || !strcmp(p, "grpc"));
}

/* Every golden document of the controller renders; deterministic; every outbound service port
 * is in the map with a backend that exists, every endpoint a server with its weight and, when
 * it has an identity, mutual TLS with that identity's name. */
static void t_render_fixtures(void)
{
    glob_t g;
    size_t docs = 0;

    REQUIRE(glob(MESH "*/expected/*.json", 0, NULL, &g) == 0);
    for (size_t f = 0; f < g.gl_pathc; f++) {
        struct agent_render_out a, b;
        struct diag dg = {0, ""};
        json_t *doc, *svc, *p, *r, *be, *e;
        size_t i, j, k, l, m;

        if (strstr(g.gl_pathv[f], "status.json"))
            continue;
        doc = load(g.gl_pathv[f]);
        docs++;
        if (render(doc, &a, &dg) != 0) {
            fprintf(stderr, "  %s: %s\n", g.gl_pathv[f], dg.text);
            unit__failures++;
            json_decref(doc);
            continue;
        }
        REQUIRE(render(doc, &b, &dg) == 0);
        CHECK_STR(a.config.p, b.config.p);
        {
            /* mutual TLS on 15006 (behind the plaintext detector in permissive mode), ALPN
             * h2 offered where an inbound port is HTTP/2 */
            bool h2 = false, permissive = !strcmp(json_string_value(json_object_get(doc, "mode")),
                                                  "permissive");
            char bind[300];

            json_array_foreach(json_object_get(doc, "inbound"), i, p)
            {
                h2 |= is_h2(p);
            }
            snprintf(bind, sizeof(bind),
                     "%s ssl crt /run/w/pod.pem ca-file /run/w/bundle.pem verify required%s\n",
                     permissive ? "frontend weft_inbound_tls\n    bind /run/w/inbound-tls.sock "
                                  "mode 600 accept-proxy"
                                : "frontend weft_inbound\n    bind :15006",
                     h2 ? " alpn h2,http/1.1" : "");
            CHECK_HAS(a.config.p, bind);
        }
        CHECK_HAS(a.config.p, "    bind 127.0.0.1:15001\n");
        {
            /* the gRPC status filter: loaded, and on a backend, for each grpc port and nowhere
             * else (a document without one renders no Lua at all) */
            size_t grpc = 0;

            json_array_foreach(json_object_get(doc, "inbound"), i, p)
            {
                grpc += !strcmp(json_string_value(json_object_get(p, "protocol")), "grpc");
            }
            json_array_foreach(json_object_get(doc, "outbound"), i, svc)
            {
                json_array_foreach(json_object_get(svc, "ports"), j, p)
                {
                    /* one backend per route, or per endpoint of a headless Service */
                    size_t n = json_is_true(json_object_get(svc, "headless"))
                                   ? json_array_size(json_object_get(p, "endpoints"))
                                   : json_array_size(json_object_get(p, "routes"));

                    if (!strcmp(json_string_value(json_object_get(p, "protocol")), "grpc"))
                        grpc += n;
                }
            }
            CHECK_INT((long)count(a.config.p, "    filter lua.weft-grpc\n"), (long)grpc);
            CHECK_INT((long)count(a.config.p, "    lua-load /run/w/grpc.lua\n"), grpc ? 1 : 0);
            /* "lua-load ...grpc.lua", then one filter line per grpc backend */
            CHECK_INT((long)count(a.config.p, "lua"), grpc ? 2 + (long)grpc : 0);
        }
        CHECK_HAS(a.config.p, "http-request use-service prometheus-exporter if { path /metrics }");
        CHECK_HAS(a.config.p, "stats socket /run/w/admin.sock mode 600 level admin");
        CHECK_HAS(a.config.p, "option idle-close-on-response");
        CHECK(pos(a.config.p, "127.0.0.1:") == pos(a.config.p, "127.0.0.1:15001"));
        json_array_foreach(json_object_get(doc, "outbound"), i, svc)
        {
            json_array_foreach(json_object_get(svc, "ports"), j, p)
            {
                char key[128];

                if (json_is_true(json_object_get(svc, "headless")))
                    continue;
                snprintf(key, sizeof(key), "%s:%lld o%c_%s_%s_%lld\n",
                         json_string_value(json_object_get(svc, "clusterIP")),
                         json_integer_value(json_object_get(p, "port")), is_http(p) ? 'h' : 't',
                         json_string_value(json_object_get(svc, "namespace")),
                         json_string_value(json_object_get(svc, "service")),
                         json_integer_value(json_object_get(p, "port")));
                CHECK_HAS(a.outbound_map.p, key);
                json_array_foreach(json_object_get(p, "routes"), k, r)
                {
                    json_array_foreach(json_object_get(r, "backends"), l, be)
                    {
                        json_array_foreach(json_object_get(be, "endpoints"), m, e)
                        {
                            char line[512], cn[600], name[128], tag[16] = "";
                            /* server-first-plaintext: no TLS even to meshed endpoints */
                            const char *id =
                                strcmp(json_string_value(json_object_get(p, "protocol")),
                                       "server-first-plaintext")
                                    ? json_string_value(json_object_get(e, "identity"))
                                    : NULL;
                            long long w = json_is_true(json_object_get(e, "ready"))
                                              ? json_integer_value(json_object_get(e, "weight"))
                                              : 0;

                            if (id) {
                                /* spiffe://td/ns/NS/sa/SA -> SA.NS.td; the server's name ends
                                 * with the FNV-1a hash of that name */
                                char td[64], ns[64], sa[128];
                                uint32_t h = 2166136261u;

                                REQUIRE(sscanf(id, "spiffe://%63[^/]/ns/%63[^/]/sa/%127s", td, ns,
                                               sa) == 3);
                                snprintf(cn, sizeof(cn), "%s.%s.%s", sa, ns, td);
                                for (const char *q = cn; *q; q++)
                                    h = (h ^ (unsigned char)*q) * 16777619u;
                                snprintf(tag, sizeof(tag), "_%08x", h);
                            }
                            snprintf(name, sizeof(name), "%s_%lld%s",
                                     json_string_value(json_object_get(e, "ip")),
                                     json_integer_value(json_object_get(e, "port")), tag);
                            snprintf(line, sizeof(line), "    server %s %s:%lld weight %lld%s",
                                     name, json_string_value(json_object_get(e, "ip")),
                                     json_integer_value(json_object_get(e, "port")), w,
                                     id ? " ssl crt /run/w/pod.pem ca-file /run/w/bundle.pem "
                                          "verify required sni str("
                                     : is_h2(p) ? " proto h2\n"
                                                : "\n");
                            CHECK_HAS(a.config.p, line);
                            if (id) {
                                char sni[1300];

                                snprintf(sni, sizeof(sni), "sni str(%s) verifyhost %s%s\n", cn, cn,
                                         is_h2(p) ? " alpn h2" : "");
                                CHECK_HAS(a.config.p, sni);
                            }
                        }
                    }
                }
            }
        }
        /* every map value names a backend, or a dispatch handled by use_backend rules */
        for (char *line = a.outbound_map.p; line && *line;) {
            char *sp = strchr(line, ' '), *nl = strchr(line, '\n'), name[400], want[420];

            REQUIRE(sp && nl);
            snprintf(name, sizeof(name), "%.*s", (int)(nl - sp - 1), sp + 1);
            snprintf(want, sizeof(want), "backend %s\n", name);
            if (pos(a.config.p, want) < 0) {
                snprintf(want, sizeof(want), "-m str %s }", name);
                CHECK_HAS(a.config.p, want);
            }
            line = nl + 1;
        }
        agent_render_out_release(&a);
        agent_render_out_release(&b);
        json_decref(doc);
    }
    globfree(&g);
    CHECK(docs >= 20);
}

/* RetryPolicy: retries to another server each time, L7 retries for idempotent methods only. */
static void t_render_retries(void)
{
    json_t *doc = load(MESH "retries/expected/default.client-1.json");
    struct agent_render_out o;
    struct diag dg = {0, ""};
    const char *c, *b;

    REQUIRE(render(doc, &o, &dg) == 0);
    c = o.config.p;
    {
        /* retries and a whole-request timeout (90 s): an outer layer bounds all tries, the
         * inner backend retries with the per-try timeout */
        static const char want[] =
            "\nbackend oh_default_ratings_9080\n    mode http\n"
            "    # the whole request, all tries included\n    timeout server 90000ms\n"
            "    server whole unix@/run/w/try1.sock\n"
            "\nfrontend weft_oh_default_ratings_9080_try\n    mode http\n"
            "    bind unix@/run/w/try1.sock mode 600\n    no log\n"
            "    default_backend oh_default_ratings_9080_try\n"
            "\nbackend oh_default_ratings_9080_try\n    mode http\n    balance roundrobin\n"
            "    http-reuse always\n    retries 2\n    option redispatch 1\n"
            "    http-request disable-l7-retry unless { method GET HEAD OPTIONS TRACE PUT DELETE "
            "}\n"
            "    retry-on conn-failure response-timeout 503\n    timeout server 500ms\n"
            "    server ";

        b = strstr(c, "\nbackend oh_default_ratings_9080\n");
        REQUIRE(b);
        CHECK(strncmp(b, want, strlen(want)) == 0);
    }
    /* a tcp port: retries of the connection only, no HTTP rule */
    {
        static const char want[] =
            "\nbackend ot_default_ratings_6379\n    mode tcp\n    balance "
            "roundrobin\n    retries 1\n    option redispatch 1\n    server ";

        b = strstr(c, "\nbackend ot_default_ratings_6379\n");
        REQUIRE(b);
        CHECK(strncmp(b, want, strlen(want)) == 0);
    }
    agent_render_out_release(&o);
    json_decref(doc);
}

/* Access rules: the evaluation order (deny, audit, allow, default), peers as subjects, the app on
 * the pod's own IP from 127.0.0.6, the 403 with x-weft-denied. */
static void t_render_access(void)
{
    json_t *doc = load(MESH "policies/expected/shop.api-1.json");
    struct agent_render_out o;
    struct diag dg = {0, ""};
    const char *c;

    REQUIRE(render(doc, &o, &dg) == 0);
    c = o.config.p;
    /* tcp port 5432: deny rules, audit, then the default (deny) */
    CHECK_HAS(c, "    acl in_5432 dst_port 5432\n");
    CHECK_HAS(c, "var(sess.weft_peer) -m str "
                 "'/O=cluster.local/OU=payments/CN=billing.payments.cluster.local'");
    CHECK_HAS(c, "var(sess.weft_peer) -m beg '/O=cluster.local/OU=monitoring/CN='");
    /* the peer's subject is formatted once per connection, not per request */
    CHECK_HAS(c, "    tcp-request session set-var(sess.weft_peer) ssl_c_s_dn\n");
    CHECK(!strstr(c, "acl peer_1 ssl_c_s_dn"));
    CHECK(pos(c, "tcp-request content reject if in_5432 peer_") <
          pos(c, "tcp-request content set-var(txn.weft_audit) "
                 "str(),concat(,txn.weft_audit,;shop/audit-monitoring) if in_5432"));
    CHECK(pos(c, "concat(,txn.weft_audit,;shop/audit-monitoring) if in_5432") <
          pos(c, "tcp-request content reject if in_5432\n"));
    /* each deny first names its policy in the decision variable, on the same condition */
    CHECK(pos(c, "tcp-request content set-var(txn.weft_denied) str(shop/default) if in_5432\n") <
          pos(c, "tcp-request content reject if in_5432\n"));
    CHECK(pos(c, "http-request set-var(txn.weft_denied) str(shop/api-deny-billing-admin) if "
                 "in_8080 peer_") > 0);
    CHECK(pos(c, "http-request set-var(txn.weft_denied) str(shop/default) if in_8080\n") <
          pos(c, "\"denied by the mesh: shop/default\\n\""));
    /* every decision logged to the agent's socket too, connections without data included */
    CHECK_HAS(c, "    log global\n    log fd@3 len 4096 format raw local0 info\n"
                 "    no option dontlognull\n");
    CHECK_HAS(c, " denied=%[var(txn.weft_denied)] audit=%[var(txn.weft_audit),regsub(^;,)]\"\n");
    /* http port 8080: switch to HTTP; deny (with its L7 path), audit, allow, default 403 */
    CHECK_HAS(c, "    tcp-request content switch-mode http if in_8080\n");
    {
        long deny = pos(c, "hdr x-weft-denied \"shop/api-deny-billing-admin\" if in_8080 peer_");
        long audit = pos(c, "http-request set-var(txn.weft_audit) "
                            "str(),concat(,txn.weft_audit,;shop/audit-monitoring) if in_8080");
        long allow = pos(c, "http-request allow if in_8080 peer_");
        long dflt = pos(c, "http-request deny deny_status 403 content-type text/plain string "
                           "\"denied by the mesh: shop/default\\n\" hdr x-weft-denied "
                           "\"shop/default\" if in_8080\n");

        CHECK(deny > 0 && audit > deny && allow > audit && dflt > allow);
    }
    CHECK_HAS(c, "    acl l7_5_p path -m str '/admin'\n    acl l7_5_p path -m beg '/admin/'\n");
    /* the allow's two L7 alternatives: (GET and /public) or x-team: blue */
    CHECK_HAS(c, " l7_8_m l7_8_p or in_8080 peer_7 l7_9_h0\n");
    CHECK_HAS(c, "    acl l7_9_h0 req.fhdr(x-team) -m str 'blue'\n");
    /* the app, on the pod's IP, from the address weft-init lets through */
    CHECK_HAS(c, "backend in_8080\n    mode http\n    server app 10.2.0.1:8080 source 127.0.0.6\n");
    CHECK_HAS(c, "backend in_5432\n    mode tcp\n    server app 10.2.0.1:5432 source 127.0.0.6\n");
    CHECK(pos(c, "127.0.0.1:8080") < 0);
    /* never forward to the proxy's own ports */
    CHECK_HAS(c, "tcp-request content reject if { dst_port 15001 15006 15020 15090 }\n");
    CHECK_HAS(c, "{ dst 127.0.0.0/8 ::1 10.2.0.1 }");
    agent_render_out_release(&o);

    /* mode deny: ports the document does not name are refused; all-authenticated passes them */
    json_object_set_new(doc, "mode", json_string("deny"));
    REQUIRE(render(doc, &o, &dg) == 0);
    CHECK_HAS(o.config.p, "    tcp-request content reject unless { dst_port 5432 8080 }\n");
    agent_render_out_release(&o);
    json_decref(doc);
}

/* The access log: by default a request the app answered below 500 is not logged (inbound:
 * unless audited; denials answer from HAProxy, where no http-response rule runs); with
 * --access-log all nothing is silenced. */
static void t_render_access_log(void)
{
    json_t *doc = load(MESH "policies/expected/shop.api-1.json");
    struct agent_render_out o;
    struct agent_render_opts ro;
    struct diag dg = {0, ""};
    const char *quiet_in = "    http-response set-log-level silent if { status lt 500 } "
                           "!{ var(txn.weft_audit) -m found }\n";
    const char *quiet_out = "    http-response set-log-level silent if { status lt 500 }\n";
    long fe_out;

    REQUIRE(render(doc, &o, &dg) == 0);
    CHECK_HAS(o.config.p, quiet_in);
    /* in the frontends, before their backends are chosen */
    CHECK(pos(o.config.p, quiet_in) < pos(o.config.p, "    use_backend in_8080 if in_8080\n"));
    fe_out = pos(o.config.p, "\nfrontend weft_outbound\n");
    CHECK(fe_out > 0 && pos(o.config.p + fe_out, quiet_out) > 0);
    CHECK(pos(o.config.p + fe_out, quiet_out) <
          pos(o.config.p + fe_out, "    default_backend weft_passthrough\n"));
    agent_render_out_release(&o);

    agent_render_opts_init(&ro);
    ro.run_dir = "/run/w";
    ro.cert_file = "/run/w/pod.pem";
    ro.ca_file = "/run/w/bundle.pem";
    ro.access_log_all = true;
    REQUIRE(agent_render(doc, &ro, &o, &dg) == 0);
    CHECK(pos(o.config.p, "set-log-level silent if { status") < 0);
    agent_render_out_release(&o);
    json_decref(doc);
}

/* Permissive mode: the inbound port tells TLS from plaintext; TLS goes on to the mutual-TLS
 * frontend through a unix socket with a PROXY header; plaintext reaches the app only on ports
 * whose default is allow-any and that no Deny of every peer covers. */
static void t_render_permissive(void)
{
    json_t *doc = load(MESH "policies/expected/shop.api-1.json"), *in;
    struct agent_render_out o;
    struct diag dg = {0, ""};
    const char *c;

    json_object_set_new(doc, "mode", json_string("permissive"));
    in = json_object_get(doc, "inbound");
    json_object_set_new(json_array_get(in, 0), "default", json_string("allow-any"));
    REQUIRE(render(doc, &o, &dg) == 0);
    c = o.config.p;
    /* the peer bounds on the listeners every pod reaches, before anything is read */
    CHECK_HAS(c, "    maxconn 64\n"
                 "    # any pod reaches it: 8 connections per peer address (a scraper needs one)\n"
                 "    stick-table type ipv6 size 1k expire 60s store conn_cur\n"
                 "    tcp-request connection track-sc0 src\n"
                 "    tcp-request connection reject if { sc0_conn_cur gt 8 }\n");
    CHECK_HAS(c,
              "frontend weft_inbound\n"
              "    # permissive: TLS to weft_inbound_tls, plaintext to the app where admitted\n"
              "    bind :15006\n"
              "    maxconn 3072\n"
              "    # at most 512 connections per peer address, counted before the TLS handshake\n"
              "    stick-table type ipv6 size 16k expire 60s store conn_cur\n"
              "    tcp-request connection track-sc0 src\n"
              "    tcp-request connection reject if { sc0_conn_cur gt 512 }\n");
    CHECK_HAS(c, "    tcp-request inspect-delay 1s\n");
    CHECK(pos(c, "    tcp-request content reject if { dst_port 15001 15006 15020 15090 }\n") <
          pos(c, "    tcp-request content accept if { req.ssl_hello_type 1 }\n"));
    /* 8080's default is deny (an Allow applies): no plaintext there; 5432 admits it */
    CHECK(pos(c, "    tcp-request content accept if { req.ssl_hello_type 1 }\n") <
          pos(c, "    tcp-request content reject if { dst_port 8080 }\n"));
    CHECK_HAS(c, "    use_backend weft_in_tls if { req.ssl_hello_type 1 }\n"
                 "    default_backend weft_in_other\n"
                 "\nbackend weft_in_tls\n"
                 "    server tls /run/w/inbound-tls.sock send-proxy-v2\n");
    CHECK_HAS(c, "frontend weft_inbound_tls\n"
                 "    bind /run/w/inbound-tls.sock mode 600 accept-proxy ssl crt /run/w/pod.pem "
                 "ca-file /run/w/bundle.pem verify required\n");
    /* over TLS, allow-any is any mesh peer, after the port's deny rules */
    CHECK(pos(c, "tcp-request content reject if in_5432 peer_") <
          pos(c, "    tcp-request content accept if in_5432\n"));
    CHECK(pos(c, ":15006 ssl") < 0);
    CHECK(pos(c, "h2c") < 0); /* no grpc port: plaintext stays TCP everywhere */
    agent_render_out_release(&o);

    /* a Deny of every peer closes the port to plaintext too */
    json_array_append_new(json_object_get(json_array_get(in, 0), "deny"),
                          json_pack("{s:s,s:{s:b}}", "policy", "all", "peers", "any", 1));
    REQUIRE(render(doc, &o, &dg) == 0);
    CHECK_HAS(o.config.p, "    tcp-request content reject if { dst_port 5432 8080 }\n");
    agent_render_out_release(&o);
    json_decref(doc);
}

static void t_render_ipv6_and_quoting(void)
{
    json_t *doc = load(MESH "policies/expected/shop.api-1.json");
    struct agent_render_opts opts;
    struct agent_render_out o;
    struct diag dg = {0, ""};
    json_t *l7;

    json_object_set_new(json_object_get(doc, "proxy"), "ip", json_string("fd00::5"));
    /* a regular expression with a quote and a space survives single quoting */
    l7 = json_pack("[{s:[{s:s,s:s}]}]", "paths", "type", "RegularExpression", "value", "/a b'c");
    json_object_set_new(
        json_array_get(json_object_get(json_array_get(json_object_get(doc, "inbound"), 1), "deny"),
                       0),
        "l7", l7);
    agent_render_opts_init(&opts);
    opts.ipv6 = true;
    REQUIRE(agent_render(doc, &opts, &o, &dg) == 0);
    CHECK_HAS(o.config.p, "    server app [fd00::5]:8080 source [::6]:0\n");
    CHECK_HAS(o.config.p, "    bind [::1]:15001\n");
    CHECK_HAS(o.config.p, "path -m reg '^(/a b'\\''c)$'\n");
    agent_render_out_release(&o);
    json_decref(doc);
}

static void expect_error(const char *what, json_t *doc, int want, const char *msg_want)
{
    struct agent_render_out o;
    struct diag dg = {0, ""};

    CHECK_INT(render(doc, &o, &dg), want);
    if (strcmp(dg.text, msg_want) != 0) {
        fprintf(stderr, "  %s:\n    got  %s\n    want %s\n", what, dg.text, msg_want);
        unit__failures++;
    }
    CHECK(o.config.p == NULL && o.runtime == NULL);
    json_decref(doc);
}

/*
 * Protocols (the "protocols" fixture, mode permissive): HTTP/2 ports get ALPN h2 between the
 * sidecars and h2c to the app, grpc ports log grpc-status, server-first ports skip the
 * plaintext detection; http and tcp ports are unchanged.
 */
#define GRPC_VAR_LINE                                                                              \
    "    http-response set-var(txn.weft_grpc) res.fhdr(grpc-status) if { res.fhdr(grpc-status) "   \
    "-m found } !{ res.fhdr(grpc-status) -m str 0 }\n"
/* a grpc backend: its series, the Trailers-Only code, the status filter */
#define GRPC_BACKEND(series)                                                                       \
    "    http-request set-var(txn.weft_gsvc) str(" series ")\n" GRPC_VAR_LINE                      \
    "    filter lua.weft-grpc\n"
static void t_render_protocols(void)
{
    json_t *api = load(MESH "protocols/expected/proto.api-1.json");
    json_t *cl = load(MESH "protocols/expected/proto.client-1.json"), *p;
    struct agent_render_out o;
    struct diag dg = {0, ""};
    const char *c;
    size_t i;

    REQUIRE(render(api, &o, &dg) == 0);
    c = o.config.p;
    CHECK_HAS(c, "verify required alpn h2,http/1.1\n");
    CHECK_HAS(c, "\nbackend in_8081\n    mode http\n    server app 10.7.0.1:8081 source "
                 "127.0.0.6 proto h2\n");
    CHECK_HAS(c, "\nbackend in_50051\n    mode http\n" GRPC_BACKEND(
                     "proto/api") "    server app 10.7.0.1:50051 source 127.0.0.6 proto h2\n");
    /* the filter is loaded (the document has grpc ports), every grpc answer reaches the agent */
    CHECK_HAS(c, "    log stdout format raw local0 info\n    lua-load /run/w/grpc.lua\n");
    CHECK_HAS(c, "    log fd@3 len 4096 format raw local0 debug\n");
    CHECK_HAS(c, "\nbackend in_8080\n    mode http\n    server app 10.7.0.1:8080 source "
                 "127.0.0.6\n");
    CHECK_HAS(c, "\nbackend in_3306\n    mode tcp\n    server app 10.7.0.1:3306 source "
                 "127.0.0.6\n");
    CHECK_HAS(c, "%ts grpc=%[var(txn.weft_grpc)] grpc_call=inbound/%[var(txn.weft_gsvc)] "
                 "denied=%[var(txn.weft_denied)] audit=");
    CHECK_HAS(c, "    tcp-request content switch-mode http if in_50051\n");
    /* a failed call (HTTP 200, grpc-status other than 0) stays in the decisions-only log; the
     * others of grpc ports go to the agent only (debug: below stdout's info) */
    CHECK_HAS(c,
              "    http-response set-log-level silent if { status lt 500 } !{ var(txn.weft_audit) "
              "-m found } !{ var(txn.weft_grpc) -m found } !{ var(txn.weft_gsvc) -m found }\n"
              "    http-response set-log-level debug if { status lt 500 } !{ var(txn.weft_audit) "
              "-m found } !{ var(txn.weft_grpc) -m found } { var(txn.weft_gsvc) -m found }\n");
    /* 8082: the Services disagree, tcp */
    CHECK_HAS(c, "    tcp-request content accept if in_8082\n");
    /* server-first: mutual TLS when the ClientHello comes, else closed (never plaintext) */
    CHECK_HAS(c, "    acl server_first dst_port 2525 3306\n");
    CHECK(pos(c, "    tcp-request content accept if server_first\n") < 0);
    CHECK(pos(c, "    tcp-request content accept if { req.ssl_hello_type 1 }\n") <
          pos(c, "    tcp-request content reject if server_first\n"));
    CHECK(pos(c, "    tcp-request content reject if server_first\n") <
          pos(c, "    default_backend weft_in_other\n"));
    CHECK(pos(c, "    use_backend weft_in_tls if server_first\n") <
          pos(c, "    default_backend weft_in_other\n"));

    /* server-first-plaintext: at once to the app, no TLS */
    CHECK_HAS(c, "    # server-first-plaintext ports: plaintext without waiting\n"
                 "    tcp-request content accept if { dst_port 2626 }\n");
    CHECK(pos(c, "    tcp-request content accept if { dst_port 2626 }\n") <
          pos(c, "    tcp-request content set-log-level silent if { req.ssl_hello_type 1 }\n"));

    /* plaintext callers of the grpc ports (allow-any): handed to weft_inbound_tls's plaintext
     * bind, parsed there and counted; that bind serves those ports only */
    CHECK_HAS(c, "    use_backend weft_in_tls if { req.ssl_hello_type 1 }\n"
                 "    use_backend weft_in_h2c if { dst_port 50051 50052 }\n"
                 "    default_backend weft_in_other\n");
    CHECK_HAS(c, "\nbackend weft_in_h2c\n"
                 "    # plaintext of grpc ports: parsed by weft_inbound_tls, calls counted\n"
                 "    server h2c /run/w/inbound-h2c.sock send-proxy-v2\n");
    CHECK_HAS(c, "verify required alpn h2,http/1.1\n"
                 "    # plaintext callers of grpc ports, from weft_inbound: calls counted\n"
                 "    bind /run/w/inbound-h2c.sock mode 600 accept-proxy\n"
                 "    maxconn 3072\n");
    CHECK_HAS(c, "    tcp-request content reject if { dst_port 15001 15006 15020 15090 }\n"
                 "    tcp-request content reject if !{ ssl_fc } !{ dst_port 50051 50052 }\n");
    /* the other HTTP ports' plaintext stays TCP */
    CHECK_INT((long)count(c, "h2c"), 5);
    agent_render_out_release(&o);
    /* a grpc port that does not admit plaintext (an Allow applies: default deny) is closed to
     * it before the hand-over, and the plaintext bind refuses it too */
    CHECK_INT(json_integer_value(json_object_get(jp(api, "inbound/10"), "port")), 50052);
    json_object_set_new(jp(api, "inbound/10"), "default", json_string("deny"));
    REQUIRE(render(api, &o, &dg) == 0);
    CHECK_HAS(o.config.p, "    tcp-request content reject if { dst_port 50052 }\n");
    CHECK_HAS(o.config.p, "    use_backend weft_in_h2c if { dst_port 50051 }\n");
    CHECK_HAS(o.config.p, "    tcp-request content reject if !{ ssl_fc } !{ dst_port 50051 }\n");
    agent_render_out_release(&o);
    /* no grpc port admits plaintext: no plaintext bind at all */
    json_object_set_new(jp(api, "inbound/9"), "default", json_string("deny"));
    REQUIRE(render(api, &o, &dg) == 0);
    CHECK(pos(o.config.p, "h2c") < 0 && pos(o.config.p, "ssl_fc") < 0);
    agent_render_out_release(&o);
    json_object_set_new(jp(api, "inbound/9"), "default", json_string("allow-any"));
    json_object_set_new(jp(api, "inbound/10"), "default", json_string("allow-any"));
    /* ... unless an Allow applies there (plaintext peers have no identity): closed at once */
    json_object_set_new(jp(api, "inbound/1"), "default", json_string("deny"));
    CHECK_INT(json_integer_value(json_object_get(jp(api, "inbound/1"), "port")), 2626);
    REQUIRE(render(api, &o, &dg) == 0);
    CHECK_HAS(o.config.p, "    tcp-request content reject if { dst_port 2626 }\n");
    CHECK(pos(o.config.p, "accept if { dst_port 2626 }") < 0);
    agent_render_out_release(&o);
    /* ... and it exists in permissive mode only */
    json_object_set_new(api, "mode", json_string("all-authenticated"));
    json_array_foreach(json_object_get(api, "inbound"), i, p)
    {
        json_object_set_new(p, "default", json_string("allow-authenticated"));
    }
    REQUIRE(render(api, &o, &dg) == ERR_INVALID);
    CHECK_STR(dg.text, "inbound[1]: server-first-plaintext is for mode permissive only");
    dg.text[0] = '\0';

    /* outside permissive mode there is no detection to skip */
    json_object_set_new(jp(api, "inbound/1"), "protocol", json_string("server-first"));
    json_array_foreach(
        json_object_get(json_array_get(json_object_get(api, "outbound"), 0), "ports"), i, p)
    {
        if (!strcmp(json_string_value(json_object_get(p, "protocol")), "server-first-plaintext"))
            json_object_set_new(p, "protocol", json_string("server-first"));
    }
    REQUIRE(render(api, &o, &dg) == 0);
    CHECK(pos(o.config.p, "server_first") < 0);
    CHECK(pos(o.config.p, "h2c") < 0); /* mutual TLS only: no plaintext bind */
    CHECK_HAS(o.config.p,
              "    bind :15006 ssl crt /run/w/pod.pem ca-file /run/w/bundle.pem "
              "verify required alpn h2,http/1.1\n"
              "    maxconn 3072\n"
              "    # at most 512 connections per peer address, counted before the TLS handshake\n"
              "    stick-table type ipv6 size 16k expire 60s store conn_cur\n"
              "    tcp-request connection track-sc0 src\n"
              "    tcp-request connection reject if { sc0_conn_cur gt 512 }\n");
    CHECK_HAS(o.config.p, "    tcp-request content accept if in_3306\n");
    agent_render_out_release(&o);

    /* only tcp and http ports (and no outbound): no ALPN offered, no grpc field */
    json_object_set_new(api, "outbound", json_array());
    json_array_foreach(json_object_get(api, "inbound"), i, p)
    {
        const char *pr = json_string_value(json_object_get(p, "protocol"));

        if (!strcmp(pr, "http2") || !strcmp(pr, "grpc"))
            json_object_set_new(p, "protocol", json_string("http"));
    }
    REQUIRE(render(api, &o, &dg) == 0);
    CHECK(pos(o.config.p, "alpn") < 0 && pos(o.config.p, "proto h2") < 0);
    CHECK(pos(o.config.p, "grpc") < 0);
    CHECK(pos(o.config.p, "lua") < 0 && pos(o.config.p, "filter") < 0);
    CHECK(pos(o.config.p, "debug") < 0);
    agent_render_out_release(&o);

    /* the caller: ALPN h2 to meshed endpoints, h2c to the others, grpc-status logged */
    REQUIRE(render(cl, &o, &dg) == 0);
    c = o.config.p;
    CHECK_HAS(c, "verifyhost api.proto.cluster.local alpn h2\n");
    CHECK_HAS(c, "    server 10.7.0.2_8081 10.7.0.2:8081 weight 1 proto h2\n");
    CHECK_HAS(c, "    server 10.7.0.2_8080 10.7.0.2:8080 weight 1\n");
    CHECK_HAS(c, "    server 10.7.0.2_3306 10.7.0.2:3306 weight 1\n");
    /* server-first-plaintext: the meshed endpoint without TLS too */
    CHECK_HAS(c, "    server 10.7.0.1_2626 10.7.0.1:2626 weight 1\n");
    CHECK_HAS(c,
              "\nbackend oh_proto_api_50051\n    mode http\n    balance roundrobin\n" GRPC_BACKEND(
                  "proto/api"));
    CHECK_HAS(c, "%Tt grpc=%[var(txn.weft_grpc)] grpc_call=outbound/%[var(txn.weft_gsvc)]\"\n");
    CHECK_HAS(c, "    log global\n    log fd@3 len 4096 format raw local0 debug\n");
    CHECK_HAS(c, "    lua-load /run/w/grpc.lua\n");
    CHECK_HAS(c,
              "    http-response set-log-level silent if { status lt 500 } !{ var(txn.weft_grpc) "
              "-m found } !{ var(txn.weft_gsvc) -m found }\n"
              "    http-response set-log-level debug if { status lt 500 } !{ var(txn.weft_grpc) "
              "-m found } { var(txn.weft_gsvc) -m found }\n");
    CHECK_HAS(o.outbound_map.p, "10.96.7.10:81 oh_proto_api_81\n");
    CHECK_HAS(o.outbound_map.p, "10.96.7.10:3306 ot_proto_api_3306\n");
    agent_render_out_release(&o);

    /* retries and a whole-request timeout: grpc-status read in the outer layer */
    p = json_array_get(json_object_get(json_array_get(json_object_get(cl, "outbound"), 0), "ports"),
                       9);
    REQUIRE(json_integer_value(json_object_get(p, "port")) == 50051);
    json_object_set_new(
        p, "retry",
        json_pack("{s:s,s:i,s:[s]}", "policy", "r", "attempts", 2, "retryOn", "connect-failure"));
    json_object_set_new(p, "timeoutMs", json_integer(1000));
    REQUIRE(render(cl, &o, &dg) == 0);
    CHECK_HAS(
        o.config.p,
        "\nbackend oh_proto_api_50051\n    mode http\n"
        "    # the whole request, all tries included\n"
        "    timeout server 1000ms\n    server whole unix@/run/w/try1.sock proto h2\n" GRPC_BACKEND(
            "proto/api") "\nfrontend weft_oh_proto_api_50051_try\n    mode http\n"
                         "    bind unix@/run/w/try1.sock mode 600 proto h2\n");
    /* ... and there only: the inner layer has no filter */
    CHECK_HAS(o.config.p, "\nbackend oh_proto_api_50051_try\n    mode http\n"
                          "    balance roundrobin\n    http-reuse always\n");
    CHECK_INT((long)count(o.config.p, "filter lua.weft-grpc"), 2);
    agent_render_out_release(&o);

    /* an unknown protocol names the field */
    json_object_set_new(p, "protocol", json_string("h3"));
    expect_error("unknown protocol", cl, ERR_INVALID,
                 "outbound[0].ports[9]: want a port 1-65535 and protocol http, http2, grpc, tcp, "
                 "server-first or server-first-plaintext");
    json_decref(api);
}

/* a grpc port's inbound log line (grpc=<code> before denied= and audit=) still counts */
static void t_access_grpc_line(void)
{
    struct agent_access *a;
    struct buf b;
    static const char l[] = "10.0.0.1:4242 /O=x port=50051 in_50051 200 86 3 ---- grpc=5 "
                            "denied=proto/default audit=-\n";

    REQUIRE(agent_access_new(&a) == 0);
    CHECK(agent_access_line(a, l, sizeof(l) - 1));
    buf_init(&b);
    CHECK_INT(agent_access_text(a, &b), 0);
    CHECK_HAS(b.p,
              "\nweft_agent_access_decisions_total{action=\"deny\",policy=\"proto/default\"} 1\n");
    buf_release(&b);
    agent_access_free(a);
}

/* gRPC status lines from the log pipe: counted by direction, Service and code */
static void t_grpc_lines(void)
{
    struct agent_grpc *g;
    struct buf b;
    char l[256];
    static const char in0[] = "10.0.0.1:4242 /O=x port=50051 in_50051 200 86 3 ---- grpc=0 "
                              "grpc_call=inbound/proto/grpc denied=- audit=-\n";
    static const char out13[] = "127.0.0.1:5000 -> 10.96.45.10:50051 oh_proto_grpc_50051/s 200 "
                                "90 4 grpc=13 grpc_call=outbound/proto/grpc";

    REQUIRE(agent_grpc_new(&g) == 0);
    CHECK(agent_grpc_line(g, in0, sizeof(in0) - 1));
    CHECK(agent_grpc_line(g, in0, sizeof(in0) - 1));
    CHECK(agent_grpc_line(g, out13, sizeof(out13) - 1));
    /* no status read (HAProxy's "-"), out of range, not as written: unknown */
    CHECK(agent_grpc_line(g, "a b 503 grpc=- grpc_call=outbound/proto/grpc",
                          strlen("a b 503 grpc=- grpc_call=outbound/proto/grpc")));
    CHECK(agent_grpc_line(g, "a b 200 grpc=17 grpc_call=outbound/proto/grpc",
                          strlen("a b 200 grpc=17 grpc_call=outbound/proto/grpc")));
    CHECK(agent_grpc_line(g, "a b 200 grpc=05 grpc_call=outbound/proto/grpc",
                          strlen("a b 200 grpc=05 grpc_call=outbound/proto/grpc")));
    /* an inbound port serving two Services */
    CHECK(agent_grpc_line(g, "a grpc=5 grpc_call=inbound/proto/a+b denied=- audit=-",
                          strlen("a grpc=5 grpc_call=inbound/proto/a+b denied=- audit=-")));
    /* not grpc lines: a port that is not grpc ("-"), no fields, another direction, a field
     * missing */
    CHECK(!agent_grpc_line(g, "a b 503 grpc=- grpc_call=outbound/-",
                           strlen("a b 503 grpc=- grpc_call=outbound/-")));
    CHECK(!agent_grpc_line(g, "10.0.0.1:1 x denied=- audit=-",
                           strlen("10.0.0.1:1 x denied=- audit=-")));
    CHECK(!agent_grpc_line(g, "a grpc=0 grpc_call=sideways/proto/grpc",
                           strlen("a grpc=0 grpc_call=sideways/proto/grpc")));
    CHECK(!agent_grpc_line(g, "a grpc_call=inbound/proto/grpc",
                           strlen("a grpc_call=inbound/proto/grpc")));
    /* a Service name it cannot read: a line, but bad */
    CHECK(agent_grpc_line(g, "a grpc=0 grpc_call=inbound/proto/Bad_Name",
                          strlen("a grpc=0 grpc_call=inbound/proto/Bad_Name")));
    CHECK(agent_grpc_line(g, "a grpc=0 grpc_call=inbound/proto/",
                          strlen("a grpc=0 grpc_call=inbound/proto/")));
    buf_init(&b);
    CHECK_INT(agent_grpc_text(g, &b), 0);
    CHECK_HAS(b.p, "# TYPE weft_agent_grpc_responses_total counter\n"
                   "weft_agent_grpc_responses_total{direction=\"inbound\",service=\"proto/a+b\","
                   "code=\"5\"} 1\n"
                   "weft_agent_grpc_responses_total{direction=\"inbound\",service=\"proto/grpc\","
                   "code=\"0\"} 2\n"
                   "weft_agent_grpc_responses_total{direction=\"outbound\",service=\"proto/"
                   "grpc\",code=\"13\"} 1\n"
                   "weft_agent_grpc_responses_total{direction=\"outbound\",service=\"proto/"
                   "grpc\",code=\"unknown\"} 3\n# HELP");
    CHECK_HAS(b.p, "\nweft_agent_grpc_log_lines_total{result=\"ok\"} 7\n"
                   "weft_agent_grpc_log_lines_total{result=\"bad\"} 2\n");
    buf_release(&b);
    /* at most AGENT_GRPC_MAX series: the others are bad lines, not new series */
    for (int i = 0; i < AGENT_GRPC_MAX; i++) {
        int n = snprintf(l, sizeof(l), "a grpc=1 grpc_call=outbound/ns/s%d", i);

        CHECK(agent_grpc_line(g, l, (size_t)n));
    }
    buf_init(&b);
    CHECK_INT(agent_grpc_text(g, &b), 0);
    CHECK_INT((long)count(b.p, "\nweft_agent_grpc_responses_total{"), AGENT_GRPC_MAX);
    CHECK_HAS(b.p, "\nweft_agent_grpc_log_lines_total{result=\"bad\"} 6\n");
    buf_release(&b);
    agent_grpc_free(g);
}

static void t_render_errors(void)
{
    json_t *d;

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_set_new(d, "schemaVersion", json_integer(2));
    expect_error("version", d, ERR_UNSUPPORTED, "schemaVersion: this agent renders version 1 only");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_set_new(json_array_get(json_object_get(d, "inbound"), 0), "default",
                        json_string("allow-any"));
    expect_error("allow-any outside permissive", d, ERR_INVALID,
                 "inbound[0].default: allow-any is for mode permissive only");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_set_new(jp(d, "proxy"), "ip", json_null());
    expect_error("no ip", d, ERR_INVALID, "proxy.ip: the pod has no IP yet");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_array_set_new(jp(d, "inbound/1/allow/0/peers/prefixes"), 0,
                       json_string("spiffe://cluster.local/ns/batch/sa/we"));
    expect_error("partial sa prefix", d, ERR_INVALID,
                 "inbound[1].allow[0].peers.prefixes[0]: \"spiffe://cluster.local/ns/batch/sa/we\" "
                 "cannot be encoded as a certificate subject prefix (want spiffe://<td>/, "
                 "spiffe://<td>/ns/<ns>/ or spiffe://<td>/ns/<ns>/sa/)");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_set_new(jp(d, "inbound/1/allow/0/l7/1/headers/0"), "name", json_string("x team"));
    expect_error(
        "header name", d, ERR_INVALID,
        "inbound[1].allow[0].l7[1].headers[0].name: \"x team\" is not an HTTP header name");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_set_new(jp(d, "inbound/1/deny/0/l7/0/paths/0"), "value", json_string("/a\nb"));
    expect_error("newline", d, ERR_INVALID,
                 "inbound[1].deny[0].l7[0].paths[0]: control characters cannot be written to "
                 "HAProxy's configuration");

    d = load(MESH "retries/expected/default.client-1.json");
    json_array_set_new(jp(d, "outbound/0/ports/1/retry/retryOn"), 0, json_string("reset"));
    expect_error("retryOn", d, ERR_INVALID,
                 "oh_default_ratings_9080: retry.retryOn[0]: \"reset\" is not a condition HAProxy "
                 "2.6 can retry on");

    d = load(MESH "policies/expected/shop.web-1.json");
    json_object_set_new(jp(d, "outbound/0"), "clusterIP", json_string("10.96.1.300"));
    expect_error("clusterIP", d, ERR_INVALID, "outbound[0].clusterIP: not an IP address");

    d = load(MESH "smi/expected/default.productpage-1.json");
    json_object_set_new(jp(d, "outbound/0/ports/0/routes/2"), "match",
                        json_pack("{s:s}", "method", "GET"));
    expect_error("last route with a match", d, ERR_INVALID,
                 "outbound[0].ports[0].routes[2]: the last route must have no match (it takes "
                 "what no other route matches)");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_del(jp(d, "inbound/0"), "protocol");
    expect_error("no protocol", d, ERR_INVALID,
                 "inbound[0]: want a port 1-65535 and protocol http, http2, grpc, tcp, "
                 "server-first or server-first-plaintext");

    d = load(MESH "policies/expected/shop.api-1.json");
    json_object_set_new(jp(d, "inbound/1"), "port", json_integer(5432));
    expect_error("same port twice", d, ERR_INVALID, "inbound[1].port: 5432 is listed twice");

    expect_error("not an object", json_array(), ERR_INVALID, "the document is not a JSON object");
    {
        struct agent_render_opts o;
        struct agent_render_out out;
        struct diag dg = {0, ""};
        json_t *doc = load(MESH "policies/expected/shop.api-1.json");

        agent_render_opts_init(&o);
        o.run_dir = "/run/my dir";
        CHECK_INT(agent_render(doc, &o, &out, &dg), -EINVAL);
        CHECK(strstr(dg.text, "file paths must be set and hold no blanks") != NULL);
        json_decref(doc);
    }
}

/* the agent's own families, and what of HAProxy's exporter answer may be appended */
static void t_metrics(void)
{
    struct agent_metrics m;
    struct buf b;

    memset(&m, 0, sizeof(m));
    m.ready = true;
    m.haproxy_up = true;
    m.haproxy_scrape_ok = true;
    m.cert_not_after = 1800000000;
    m.cert_ok = 3;
    m.cert_errors = 1;
    m.bundle_roots = 2;
    m.trust_updates = 1;
    m.stream_state = AGENT_STREAM_CONNECTED;
    m.stream_connects = 2;
    m.applied[AGENT_APPLY_START] = 1;
    m.applied[AGENT_APPLY_RELOAD] = 4;
    m.nacks = 5;
    m.restarts = 6;
    m.drv.reloads = 7;
    m.drv.bundle_reloads = 2;
    m.drv.reload_failures = 1;
    m.drv.cert_swaps = 9;
    buf_init(&b);
    CHECK_INT(agent_metrics_text(&m, &b), 0);
    CHECK(strstr(b.p, "\nweft_agent_ready 1\n"));
    CHECK(strstr(b.p, "\nweft_agent_certificate_expiry_timestamp_seconds 1800000000\n"));
    CHECK(strstr(b.p, "\nweft_agent_certificate_requests_total{result=\"error\"} 1\n"));
    CHECK(strstr(b.p, "\nweft_agent_trust_bundle_roots 2\n"));
    CHECK(strstr(b.p, "\nweft_agent_config_stream_state{state=\"connected\"} 1\n"));
    CHECK(strstr(b.p, "\nweft_agent_config_stream_state{state=\"disconnected\"} 0\n"));
    CHECK(strstr(b.p, "\nweft_agent_config_applied_total{how=\"reload\"} 4\n"));
    CHECK(strstr(b.p, "\nweft_agent_config_nacks_total 5\n"));
    CHECK(strstr(b.p, "\nweft_agent_haproxy_reloads_total{result=\"ok\",reason=\"config\"} 5\n"));
    CHECK(strstr(b.p, "\nweft_agent_haproxy_reloads_total{result=\"ok\",reason=\"bundle\"} 2\n"));
    CHECK(strstr(b.p, "\nweft_agent_haproxy_cert_swaps_total 9\n"));
    CHECK(strstr(b.p, "\nweft_agent_haproxy_restarts_total 6\n"));
    CHECK(strstr(b.p, "\nweft_agent_haproxy_scrape_ok 1\n"));
    /* every sample line belongs to a family declared before it, declared once */
    {
        char *save = NULL, *copy = strdup(b.p), fam[128] = "", seen[4096] = " ", key[130];
        int families = 0;

        REQUIRE(copy);
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            if (strncmp(l, "# TYPE ", 7) == 0) {
                snprintf(fam, sizeof(fam), "%.*s", (int)strcspn(l + 7, " "), l + 7);
                snprintf(key, sizeof(key), " %s ", fam);
                CHECK(strstr(seen, key) == NULL); /* declared once */
                strncat(seen, key + 1, sizeof(seen) - strlen(seen) - 1);
                families++;
            } else if (l[0] != '#') {
                CHECK(strncmp(l, fam, strlen(fam)) == 0 && fam[0]);
            }
        }
        CHECK_INT(families, 14);
        free(copy);
    }
    buf_release(&b);

    CHECK_INT(agent_metrics_check_haproxy("", 0), 0);
    CHECK_INT(agent_metrics_check_haproxy("# HELP haproxy_x y\nhaproxy_x 1\n\n", 32), 0);
    /* cut short, a family that is not HAProxy's, a NUL */
    CHECK_INT(agent_metrics_check_haproxy("haproxy_x 1", 11), ERR_INVALID);
    CHECK_INT(agent_metrics_check_haproxy("weft_agent_ready 0\n", 19), ERR_INVALID);
    CHECK_INT(agent_metrics_check_haproxy("haproxy_x 1\n\0\n", 14), ERR_INVALID);
}

/* access decisions from the inbound listener's log lines; the document's policies listed at 0 */
static void t_access(void)
{
    struct agent_access *a;
    struct buf b;
    json_t *doc = load(MESH "policies/expected/shop.api-1.json");
    static const char l1[] = "10.0.0.1:4242 /O=cluster.local/OU=shop/CN=web.shop.cluster.local "
                             "port=8080 in_8080 403 120 1 PR-- denied=shop/default audit=-\n";
    static const char l2[] = "10.0.0.1:4243 /O=x port=8080 in_8080 200 9 3 ---- denied=- "
                             "audit=shop/audit-monitoring;shop/other";
    static const char l3[] = "10.0.0.1:4244 /O=x port=5432 in_5432 0 1 PR denied=shop/Bad_Name "
                             "audit=";

    REQUIRE(agent_access_new(&a) == 0);
    REQUIRE(doc);
    CHECK_INT(agent_access_doc(a, doc), 0);
    CHECK(agent_access_line(a, l1, sizeof(l1) - 1));
    CHECK(agent_access_line(a, l2, sizeof(l2) - 1));
    CHECK(agent_access_line(a, l2, sizeof(l2) - 1));
    CHECK(agent_access_line(a, l3, sizeof(l3) - 1)); /* a decision line, but not a policy name */
    /* not decision lines: a handshake error, a cut line, the fields not at the end */
    CHECK(!agent_access_line(a, "10.0.0.1:4245 [07/Dec/2026] weft_inbound/1: SSL handshake failure",
                             66));
    CHECK(!agent_access_line(a, "10.0.0.1:1 x denied=shop/a", 26));
    CHECK(!agent_access_line(a, "audit= x denied=shop/a", 22));
    buf_init(&b);
    CHECK_INT(agent_access_text(a, &b), 0);
    CHECK_HAS(b.p, "\nweft_agent_access_decisions_total{action=\"audit\",policy=\"shop/"
                   "audit-monitoring\"} 2\n");
    CHECK_HAS(b.p,
              "\nweft_agent_access_decisions_total{action=\"audit\",policy=\"shop/other\"} 2\n");
    CHECK_HAS(b.p,
              "\nweft_agent_access_decisions_total{action=\"deny\",policy=\"shop/default\"} 1\n");
    CHECK_HAS(b.p, "\nweft_agent_access_decisions_total{action=\"deny\",policy=\"shop/"
                   "api-deny-billing-admin\"} 0\n");
    CHECK_HAS(b.p, "\nweft_agent_access_log_lines_total{result=\"ok\"} 3\n");
    CHECK_HAS(b.p, "\nweft_agent_access_log_lines_total{result=\"bad\"} 1\n");
    buf_release(&b);
    /* the next document: shop/other (not in it) dropped, the others kept with their counts */
    CHECK_INT(agent_access_doc(a, doc), 0);
    buf_init(&b);
    CHECK_INT(agent_access_text(a, &b), 0);
    CHECK(strstr(b.p, "shop/other") == NULL);
    CHECK_HAS(b.p, "{action=\"audit\",policy=\"shop/audit-monitoring\"} 2\n");
    buf_release(&b);
    json_decref(doc);
    agent_access_free(a);
}

/* the log pipe's bytes cut into lines: lines split across reads, several in one read, one
 * longer than AGENT_LOG_LINE_MAX handed on empty, the lines after it intact */
struct seen {
    char lines[8][64];
    size_t lens[8];
    int n;
};

static void seen_line(void *ctx, const char *line, size_t len)
{
    struct seen *s = ctx;

    if (s->n < 8) {
        snprintf(s->lines[s->n], sizeof(s->lines[0]), "%.*s", (int)len, line);
        s->lens[s->n] = len;
    }
    s->n++;
}

static void t_log_lines(void)
{
    static struct agent_lines l; /* 4 KB: not on the stack */
    static char big[AGENT_LOG_LINE_MAX + 10];
    struct seen s = {0};

    agent_lines_feed(&l, "one\ntw", 6, seen_line, &s);
    CHECK_INT(s.n, 1);
    agent_lines_feed(&l, "o\n\nthr", 6, seen_line, &s);
    agent_lines_feed(&l, "ee", 2, seen_line, &s);
    CHECK_INT(s.n, 3);
    memset(big, 'x', sizeof(big));
    agent_lines_feed(&l, big, sizeof(big), seen_line, &s); /* "three" + too long: skipped */
    CHECK_INT(s.n, 3);
    agent_lines_feed(&l, "x\nfour\n", 7, seen_line, &s);
    REQUIRE(s.n == 5);
    CHECK_STR(s.lines[0], "one");
    CHECK_STR(s.lines[1], "two");
    CHECK_INT((long)s.lens[2], 0);
    CHECK_INT((long)s.lens[3], 0); /* the cut line */
    CHECK_STR(s.lines[4], "four");
    /* a line of exactly AGENT_LOG_LINE_MAX - 1 bytes and its '\n' (HAProxy's "len" limit) */
    memset(big, 'y', sizeof(big));
    big[AGENT_LOG_LINE_MAX - 1] = '\n';
    agent_lines_feed(&l, big, 100, seen_line, &s);
    agent_lines_feed(&l, big + 100, AGENT_LOG_LINE_MAX - 100, seen_line, &s);
    REQUIRE(s.n == 6);
    CHECK_INT((long)s.lens[5], AGENT_LOG_LINE_MAX - 1);
}

UNIT_MAIN(UNIT(t_metrics), UNIT(t_access), UNIT(t_plan_parse), UNIT(t_rules), UNIT(t_merge),
          UNIT(t_render_fixtures), UNIT(t_render_retries), UNIT(t_render_access),
          UNIT(t_render_access_log), UNIT(t_render_permissive), UNIT(t_render_ipv6_and_quoting),
          UNIT(t_render_errors), UNIT(t_render_protocols), UNIT(t_access_grpc_line),
          UNIT(t_grpc_lines), UNIT(t_log_lines))
