/*
 * kubelet_test.c - unit tests of kubelet-lite's pure parts: the image map, argv construction,
 * $(VAR) expansion, base64, downward-API fields, CIDRs, capabilities and the service rules.
 */
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/kubelite/kubelet/kubelet.h"
#include "tests/unit/unit.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, 0, &e);
    if (!v)
        fprintf(stderr, "bad JSON in test: %s: %s\n", e.text, text);
    REQUIRE(v);
    return v;
}

static char *joined(char **argv)
{
    struct buf b;
    buf_init(&b);
    for (size_t i = 0; argv[i]; i++)
        REQUIRE(buf_printf(&b, "%s%s", i ? "|" : "", argv[i]) == 0);
    return buf_take(&b);
}

static void t_image_map(void)
{
    struct image_map *m = NULL;
    char msg[256] = "";
    const struct image_entry *e;

    REQUIRE(image_map_parse("# comment\n\n"
                            "weft/testapp /bin/testapp\n"
                            "weft/agent:v2* /bin/agent-v2 --mode \"two words\"\n"
                            "weft/agent /bin/agent\n"
                            "  registry.local:5000/x/y:1.0 /bin/xy # trailing comment\n",
                            &m, msg, sizeof(msg)) == 0);
    e = image_map_find(m, "weft/testapp");
    REQUIRE(e);
    CHECK_STR(e->argv[0], "/bin/testapp");
    CHECK_INT(e->argc, 1);
    e = image_map_find(m, "docker.io/weft/testapp:1.2@sha256:abcd");
    CHECK(e && strcmp(e->argv[0], "/bin/testapp") == 0);
    e = image_map_find(m, "weft/agent:v2.1");
    REQUIRE(e);
    CHECK_INT(e->argc, 3);
    CHECK_STR(e->argv[2], "two words");
    e = image_map_find(m, "weft/agent:v1");
    CHECK(e && strcmp(e->argv[0], "/bin/agent") == 0);
    e = image_map_find(m, "weft/agent"); /* no tag = latest: not v2* */
    CHECK(e && strcmp(e->argv[0], "/bin/agent") == 0);
    e = image_map_find(m, "registry.local:5000/x/y:1.0");
    CHECK(e && strcmp(e->argv[0], "/bin/xy") == 0);
    CHECK(image_map_find(m, "registry.local:5000/x/y:2.0") == NULL);
    CHECK(image_map_find(m, "weft/other") == NULL);
    e = image_map_find(m, "library/weft/testapp"); /* Docker Hub's library/ prefix is ignored */
    CHECK(e && strcmp(e->argv[0], "/bin/testapp") == 0);
    image_map_free(m);
}

static void t_image_map_errors(void)
{
    struct image_map *m = NULL;
    char msg[256] = "";

    CHECK_INT(image_map_parse("a /bin/a\nb bin/b\n", &m, msg, sizeof(msg)), ERR_PARSE);
    CHECK_STR(msg, "line 2: the program must be an absolute path");
    CHECK_INT(image_map_parse("onlyimage\n", &m, msg, sizeof(msg)), ERR_PARSE);
    CHECK_STR(msg, "line 1: want: image[:tag-pattern] /path/to/program [args...]");
    CHECK_INT(image_map_parse("a /bin/a \"open\n", &m, msg, sizeof(msg)), ERR_PARSE);
    CHECK_STR(msg, "line 1: unterminated quote");
    CHECK(m == NULL);
    REQUIRE(image_map_parse("", &m, msg, sizeof(msg)) == 0);
    CHECK(image_map_find(m, "anything") == NULL);
    image_map_free(m);
    image_map_free(NULL);
}

static void t_expand(void)
{
    struct envv e;
    char *s;

    envv_init(&e);
    REQUIRE(envv_set(&e, "A", "x") == 0);
    REQUIRE(envv_set(&e, "B", "y") == 0);
    REQUIRE(envv_set(&e, "A", "z") == 0); /* replaces */
    CHECK_INT(e.n, 2);
    CHECK_STR(envv_get(&e, "A"), "z");
    CHECK(envv_get(&e, "C") == NULL);
    s = spec_expand("$(A)-$(B)-$(C)-$$(A)-$$-$(A", &e);
    CHECK_STR(s, "z-y-$(C)-$(A)-$-$(A");
    free(s);
    s = spec_expand("", &e);
    CHECK_STR(s, "");
    free(s);
    envv_release(&e);
}

static void t_argv(void)
{
    struct image_entry e = {0};
    char *argv0[] = {(char *)"/bin/testapp", (char *)"serve", (char *)"--x=$(A)", NULL};
    struct envv env;
    char **v = NULL, *s, msg[128] = "";
    json_t *cmd, *args;

    e.argv = argv0;
    e.argc = 3;
    envv_init(&env);
    REQUIRE(envv_set(&env, "A", "1") == 0);
    /* No command, no args: the map's program and extra args. */
    REQUIRE(spec_argv_build(&e, NULL, NULL, &env, &v, msg, sizeof(msg)) == 0);
    s = joined(v);
    CHECK_STR(s, "/bin/testapp|serve|--x=1");
    free(s);
    spec_argv_free(v);
    /* args replace the extra args. */
    args = J("[\"get\", \"$(A)\"]");
    REQUIRE(spec_argv_build(&e, NULL, args, &env, &v, msg, sizeof(msg)) == 0);
    s = joined(v);
    CHECK_STR(s, "/bin/testapp|get|1");
    free(s);
    spec_argv_free(v);
    /* An existing absolute command runs as is. */
    cmd = J("[\"/bin/sh\", \"-c\"]");
    REQUIRE(spec_argv_build(&e, cmd, args, &env, &v, msg, sizeof(msg)) == 0);
    s = joined(v);
    CHECK_STR(s, "/bin/sh|-c|get|1");
    free(s);
    spec_argv_free(v);
    json_decref(cmd);
    /* A command naming the program (another path, same basename): the mapped program. */
    cmd = J("[\"/usr/local/bin/testapp\", \"--flag\"]");
    REQUIRE(spec_argv_build(&e, cmd, NULL, &env, &v, msg, sizeof(msg)) == 0);
    s = joined(v);
    CHECK_STR(s, "/bin/testapp|--flag");
    free(s);
    spec_argv_free(v);
    json_decref(cmd);
    /* Any other command becomes arguments of the mapped program. */
    cmd = J("[\"run\", \"$(A)\"]");
    REQUIRE(spec_argv_build(&e, cmd, args, &env, &v, msg, sizeof(msg)) == 0);
    s = joined(v);
    CHECK_STR(s, "/bin/testapp|run|1|get|1");
    free(s);
    spec_argv_free(v);
    json_decref(cmd);
    /* Malformed arrays. */
    cmd = J("[1]");
    CHECK_INT(spec_argv_build(&e, cmd, NULL, &env, &v, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "command[0] is not a string");
    json_decref(cmd);
    json_decref(args);
    args = J("[\"ok\", null]");
    CHECK_INT(spec_argv_build(&e, NULL, args, &env, &v, msg, sizeof(msg)), ERR_INVALID);
    CHECK_STR(msg, "args[1] is not a string");
    json_decref(args);
    envv_release(&env);
}

static void t_b64(void)
{
    unsigned char *d = NULL;
    size_t n = 0;

    REQUIRE(spec_b64_decode("czNjcmV0", &d, &n) == 0);
    CHECK_INT(n, 6);
    CHECK_STR((char *)d, "s3cret");
    free(d);
    REQUIRE(spec_b64_decode("aGk=\n", &d, &n) == 0);
    CHECK_INT(n, 2);
    CHECK_STR((char *)d, "hi");
    free(d);
    REQUIRE(spec_b64_decode("aGk", &d, &n) == 0); /* unpadded */
    CHECK_STR((char *)d, "hi");
    free(d);
    REQUIRE(spec_b64_decode("", &d, &n) == 0);
    CHECK_INT(n, 0);
    free(d);
    CHECK_INT(spec_b64_decode("a*b=", &d, &n), ERR_PARSE);
    CHECK_INT(spec_b64_decode("aGk=aGk=", &d, &n), ERR_PARSE);
    CHECK_INT(spec_b64_decode("a", &d, &n), ERR_PARSE);
}

static void t_field_ref(void)
{
    json_t *pod = J("{\"metadata\":{\"name\":\"p\",\"namespace\":\"ns\",\"uid\":\"u1\","
                    "\"labels\":{\"z\":\"1\",\"a\":\"q\\\"x\\ny\"},\"annotations\":{}},"
                    "\"spec\":{\"nodeName\":\"n1\",\"serviceAccountName\":\"sa\"},"
                    "\"status\":{\"podIP\":\"10.0.0.9\",\"hostIP\":\"10.0.0.1\"}}");
    static const char *const cases[][2] = {
        {"metadata.name", "p"},
        {"metadata.namespace", "ns"},
        {"metadata.uid", "u1"},
        {"spec.nodeName", "n1"},
        {"spec.serviceAccountName", "sa"},
        {"status.hostIP", "10.0.0.1"},
        {"metadata.labels['z']", "1"},
        {"metadata.labels[\"missing\"]", ""},
        {"metadata.labels", "a=\"q\\\"x\\ny\"\nz=\"1\""},
        {"metadata.annotations", ""},
    };
    char *v;
    int rc;

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        v = spec_field_ref(pod, cases[i][0], NULL, &rc);
        CHECK_INT(rc, 0);
        CHECK_STR(v, cases[i][1]);
        free(v);
    }
    v = spec_field_ref(pod, "status.podIP", NULL, &rc);
    CHECK_STR(v, "10.0.0.9");
    free(v);
    v = spec_field_ref(pod, "status.podIP", "10.244.0.7", &rc);
    CHECK_STR(v, "10.244.0.7");
    free(v);
    v = spec_field_ref(pod, "spec.containers", NULL, &rc);
    CHECK(v == NULL);
    CHECK_INT(rc, ERR_INVALID);
    v = spec_field_ref(pod, "metadata.labels[z", NULL, &rc);
    CHECK(v == NULL);
    CHECK_INT(rc, ERR_INVALID);
    json_decref(pod);
}

static void t_cidr(void)
{
    unsigned a = 0;
    int p = 0;

    REQUIRE(net_cidr_parse("10.244.0.0/24", &a, &p) == 0);
    CHECK_INT(a, 0x0af40000);
    CHECK_INT(p, 24);
    CHECK_INT(net_cidr_parse("10.244.0.0", &a, &p), ERR_INVALID);
    CHECK_INT(net_cidr_parse("10.244.0.0/33", &a, &p), ERR_INVALID);
    CHECK_INT(net_cidr_parse("10.244.0/24", &a, &p), ERR_INVALID);
    CHECK_INT(net_cidr_parse("10.244.0.0/", &a, &p), ERR_INVALID);
    CHECK_INT(net_cidr_parse("10.244.0.0/2x", &a, &p), ERR_INVALID);
}

static void t_caps(void)
{
    json_t *c = J("{\"add\":[\"NET_ADMIN\",\"CAP_NET_RAW\"],\"drop\":[\"ALL\"]}");
    unsigned long long want = (1ULL << CAP_NET_ADMIN) | (1ULL << CAP_NET_RAW);
    unsigned long long def;

    CHECK(proc_caps_for(c, true) == want);
    CHECK(proc_caps_for(c, false) == want);
    json_decref(c);
    def = proc_caps_for(NULL, true);
    CHECK(def & (1ULL << CAP_CHOWN));
    CHECK(def & (1ULL << CAP_NET_BIND_SERVICE));
    CHECK(!(def & (1ULL << CAP_NET_ADMIN)));
    CHECK(!(def & (1ULL << CAP_SYS_ADMIN)));
    CHECK(proc_caps_for(NULL, false) == 0);
    c = J("{\"drop\":[\"KILL\",\"bogus\"]}");
    CHECK(proc_caps_for(c, true) == (def & ~(1ULL << CAP_KILL)));
    json_decref(c);
}

static const char *svc_json =
    "[{\"metadata\":{\"namespace\":\"default\",\"name\":\"web\"},"
    "  \"spec\":{\"clusterIP\":\"10.96.0.10\",\"ports\":[{\"name\":\"http\",\"port\":80}]}},"
    " {\"metadata\":{\"namespace\":\"default\",\"name\":\"empty\"},"
    "  \"spec\":{\"clusterIP\":\"10.96.0.11\",\"ports\":[{\"port\":53,\"protocol\":\"UDP\"}]}},"
    " {\"metadata\":{\"namespace\":\"default\",\"name\":\"headless\"},"
    "  \"spec\":{\"clusterIP\":\"None\",\"ports\":[{\"port\":1}]}}]";

static const char *slice_json =
    "[{\"metadata\":{\"namespace\":\"default\",\"name\":\"web-kl\","
    "   \"labels\":{\"kubernetes.io/service-name\":\"web\"}},\"addressType\":\"IPv4\","
    "  \"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],"
    "  \"endpoints\":[{\"addresses\":[\"10.244.0.3\"],\"conditions\":{\"ready\":true}},"
    "                 {\"addresses\":[\"10.244.0.2\"]},"
    "                 {\"addresses\":[\"10.244.0.4\"],\"conditions\":{\"ready\":false}}]},"
    " {\"metadata\":{\"namespace\":\"other\",\"name\":\"web-kl\","
    "   \"labels\":{\"kubernetes.io/service-name\":\"web\"}},"
    "  \"ports\":[{\"name\":\"http\",\"port\":8080}],"
    "  \"endpoints\":[{\"addresses\":[\"10.244.0.9\"]}]}]";

static void t_proxy_render(void)
{
    json_t *svcs = J(svc_json), *slices = J(slice_json), *chains = NULL, *chains2 = NULL;
    json_t *empty = J("[]");
    struct buf b, b2;
    char svc[32], sep2[32], sep3[32];

    buf_init(&b);
    buf_init(&b2);
    REQUIRE(proxy_render(svcs, slices, NULL, &b, &chains) == 0);
    REQUIRE(json_array_size(chains) == 3);
    snprintf(svc, sizeof(svc), "%s", json_string_value(json_array_get(chains, 0)));
    snprintf(sep2, sizeof(sep2), "%s", json_string_value(json_array_get(chains, 1)));
    snprintf(sep3, sizeof(sep3), "%s", json_string_value(json_array_get(chains, 2)));
    CHECK(strncmp(svc, "KL-SVC-", 7) == 0 && strlen(svc) == 23);
    CHECK(strncmp(sep2, "KL-SEP-", 7) == 0 && strcmp(sep2, sep3) != 0);
    {
        char want[4096];
        snprintf(want, sizeof(want),
                 "*nat\n:KL-SERVICES - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n"
                 "-A KL-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment "
                 "--comment \"default/web:http\" -j %s\n"
                 "-A %s -m statistic --mode random --probability 0.5000000000 -j %s\n"
                 "-A %s -s 10.244.0.2/32 -j MARK --set-xmark 0x4000/0x4000\n"
                 "-A %s -p tcp -m tcp -j DNAT --to-destination 10.244.0.2:8080\n"
                 "-A %s -j %s\n"
                 "-A %s -s 10.244.0.3/32 -j MARK --set-xmark 0x4000/0x4000\n"
                 "-A %s -p tcp -m tcp -j DNAT --to-destination 10.244.0.3:8080\n"
                 "COMMIT\n*filter\n:KL-REJECT - [0:0]\n"
                 "-A KL-REJECT -d 10.96.0.11/32 -p udp -m udp --dport 53 -m comment "
                 "--comment \"default/empty: has no endpoints\" -j REJECT\nCOMMIT\n",
                 svc, sep2, sep3, svc, svc, sep2, sep2, sep2, svc, sep3, sep3, sep3);
        CHECK_STR(b.p, want);
    }
    /* Same input, same text; without endpoints the old chains are flushed and deleted. */
    REQUIRE(proxy_render(svcs, slices, chains, &b2, &chains2) == 0);
    CHECK_STR(b2.p, b.p);
    json_decref(chains2);
    buf_reset(&b2);
    REQUIRE(proxy_render(svcs, empty, chains, &b2, &chains2) == 0);
    CHECK_INT(json_array_size(chains2), 0);
    {
        char want[2048];
        snprintf(want, sizeof(want),
                 "*nat\n:KL-SERVICES - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n:%s - [0:0]\n"
                 "-X %s\n-X %s\n-X %s\nCOMMIT\n*filter\n:KL-REJECT - [0:0]\n"
                 "-A KL-REJECT -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment "
                 "--comment \"default/web:http has no endpoints\" -j REJECT\n"
                 "-A KL-REJECT -d 10.96.0.11/32 -p udp -m udp --dport 53 -m comment "
                 "--comment \"default/empty: has no endpoints\" -j REJECT\nCOMMIT\n",
                 svc, sep2, sep3, svc, sep2, sep3);
        CHECK_STR(b2.p, want);
    }
    json_decref(chains2);
    json_decref(chains);
    json_decref(svcs);
    json_decref(slices);
    json_decref(empty);
    buf_release(&b);
    buf_release(&b2);
}

/* The project's images without a map; a map line for the same image wins. */
static void t_image_builtin(void)
{
    struct image_map *m = NULL;
    char msg[256] = "";
    const struct image_entry *e;

    REQUIRE(image_map_parse("weft/proxy:test /bin/true\n", &m, msg, sizeof(msg)) == 0);
    REQUIRE(image_map_add_builtin(m, "/opt/weft/bin") == 0);
    e = image_map_find(m, "weft/weftd:0.1.0");
    REQUIRE(e);
    CHECK_STR(e->argv[0], "/opt/weft/bin/weftd");
    e = image_map_find(m, "docker.io/weft/init@sha256:00");
    REQUIRE(e);
    CHECK_STR(e->argv[0], "/opt/weft/bin/weft-init");
    e = image_map_find(m, "weft/testapp");
    REQUIRE(e);
    CHECK_STR(e->argv[0], "/opt/weft/bin/testapp");
    e = image_map_find(m, "weft/proxy:test");
    REQUIRE(e);
    CHECK_STR(e->argv[0], "/bin/true");
    e = image_map_find(m, "weft/proxy:0.1.0");
    REQUIRE(e);
    CHECK_STR(e->argv[0], "/opt/weft/bin/weft-agent");
    CHECK(image_map_find(m, "nginx") == NULL);
    image_map_free(m);
}

static void check_resolv(const char *spec, int want_rc, const char *want)
{
    json_t *s = J(spec);
    struct buf b;

    buf_init(&b);
    CHECK_INT(dns_resolv_conf(s, "shop", "10.244.0.1", &b), want_rc);
    if (want_rc == 0)
        CHECK_STR(b.p ? b.p : "", want);
    buf_release(&b);
    json_decref(s);
}

/* resolv.conf per dnsPolicy and dnsConfig, as the kubelet writes it. */
static void t_resolv_conf(void)
{
    check_resolv("{}", 0,
                 "nameserver 10.244.0.1\n"
                 "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
                 "options ndots:5\n");
    check_resolv(
        "{\"dnsPolicy\":\"ClusterFirst\",\"dnsConfig\":{\"nameservers\":[\"1.2.3.4\"],"
        "\"searches\":[\"corp.example\"],\"options\":[{\"name\":\"ndots\",\"value\":\"2\"},"
        "{\"name\":\"edns0\"}]}}",
        0,
        "nameserver 10.244.0.1\nnameserver 1.2.3.4\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
        "options ndots:2 edns0\n");
    check_resolv("{\"dnsPolicy\":\"None\",\"dnsConfig\":{\"nameservers\":[\"1.2.3.4\"],"
                 "\"searches\":[\"a.b\"]}}",
                 0, "nameserver 1.2.3.4\nsearch a.b\n");
    check_resolv("{\"dnsPolicy\":\"Default\"}", 1, NULL);
    check_resolv("{\"hostNetwork\":true}", 1, NULL);
    check_resolv("{\"hostNetwork\":true,\"dnsPolicy\":\"ClusterFirstWithHostNet\"}", 0,
                 "nameserver 10.244.0.1\n"
                 "search shop.svc.cluster.local svc.cluster.local cluster.local\n"
                 "options ndots:5\n");
}

UNIT_MAIN(UNIT(t_image_map), UNIT(t_image_map_errors), UNIT(t_expand), UNIT(t_argv), UNIT(t_b64),
          UNIT(t_field_ref), UNIT(t_cidr), UNIT(t_caps), UNIT(t_proxy_render),
          UNIT(t_image_builtin), UNIT(t_resolv_conf))
