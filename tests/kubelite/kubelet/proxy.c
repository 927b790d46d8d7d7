/*
 * proxy.c - kube-proxy-like ClusterIP routing with iptables (nat and filter tables).
 *
 *   nat   PREROUTING, OUTPUT -> KL-SERVICES: -d clusterIP -p proto --dport port -> KL-SVC-<h>
 *         KL-SVC-<h>: one jump per ready endpoint, "statistic random" with 1/(n-i)
 *         KL-SEP-<h>: mark hairpin traffic (source = endpoint) for masquerade, DNAT
 *         POSTROUTING -> KL-POSTROUTING: MASQUERADE marked packets
 *   filter FORWARD, OUTPUT -> KL-REJECT: ClusterIP ports without ready endpoints are rejected
 *         FORWARD -> KL-FORWARD: pods may not send traffic off the node
 * KL-SERVICES, KL-REJECT and the per-service chains are rebuilt together in one
 * iptables-restore --noflush run; chains that disappear are flushed and deleted in it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "tests/kubelite/kubelet/kubelet.h"

#define IPT "/usr/sbin/iptables"
#define IPT_RESTORE "/usr/sbin/iptables-restore"
#define IPT_SAVE "/usr/sbin/iptables-save"
#define MASQ_MARK "0x4000/0x4000"

static unsigned long long fnv64(const char *s)
{
    unsigned long long h = 1469598103934665603ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

static void chain_name(char out[32], const char *prefix, const char *key)
{
    snprintf(out, 32, "%s%016llX", prefix, fnv64(key));
}

static const char *lower_proto(const char *p)
{
    if (!p || strcmp(p, "TCP") == 0)
        return "tcp";
    if (strcmp(p, "UDP") == 0)
        return "udp";
    if (strcmp(p, "SCTP") == 0)
        return "sctp";
    return NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Ready "ip:port" endpoints of service port sp (name/protocol) from the slices; sorted, unique. */
static int endpoints_of(const json_t *svc, const json_t *sp, const json_t *slices, char ***out,
                        size_t *nout)
{
    const char *ns = spec_str(json_object_get(svc, "metadata"), "namespace");
    const char *name = spec_str(json_object_get(svc, "metadata"), "name");
    const char *pname = spec_str(sp, "name") ? spec_str(sp, "name") : "";
    const char *proto = spec_str(sp, "protocol") ? spec_str(sp, "protocol") : "TCP";
    char **v = NULL;
    size_t n = 0, i, j, k;
    json_t *sl, *ep, *p, *a;

    json_array_foreach(slices, i, sl)
    {
        json_t *md = json_object_get(sl, "metadata");
        const char *owner = spec_str(json_object_get(md, "labels"), "kubernetes.io/service-name");
        long port = -1;
        if (!owner || strcmp(owner, name) != 0 || !ns ||
            strcmp(spec_str(md, "namespace") ? spec_str(md, "namespace") : "", ns) != 0)
            continue;
        if (spec_str(sl, "addressType") && strcmp(spec_str(sl, "addressType"), "IPv4") != 0)
            continue;
        json_array_foreach(json_object_get(sl, "ports"), j, p)
        {
            const char *n2 = spec_str(p, "name") ? spec_str(p, "name") : "";
            const char *p2 = spec_str(p, "protocol") ? spec_str(p, "protocol") : "TCP";
            if (strcmp(n2, pname) == 0 && strcmp(p2, proto) == 0)
                port = spec_int(p, "port", -1);
        }
        if (port <= 0 || port > 65535)
            continue;
        json_array_foreach(json_object_get(sl, "endpoints"), j, ep)
        {
            json_t *ready = json_object_get(json_object_get(ep, "conditions"), "ready");
            if (json_is_false(ready))
                continue;
            json_array_foreach(json_object_get(ep, "addresses"), k, a)
            {
                char buf[64], **nv;
                if (!json_string_value(a))
                    continue;
                snprintf(buf, sizeof(buf), "%s:%ld", json_string_value(a), port);
                nv = realloc(v, (n + 1) * sizeof(*nv));
                if (!nv || !(nv[n] = strdup(buf))) {
                    v = nv ? nv : v;
                    goto oom;
                }
                v = nv;
                n++;
            }
        }
    }
    if (n)
        qsort(v, n, sizeof(*v), cmp_str);
    for (i = 0, j = 0; i < n; i++) { /* drop duplicates */
        if (j && strcmp(v[j - 1], v[i]) == 0) {
            free(v[i]);
            continue;
        }
        v[j++] = v[i];
    }
    *out = v;
    *nout = j;
    return 0;
oom:
    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return -ENOMEM;
}

int proxy_render(const json_t *services, const json_t *slices, const json_t *prev_chains,
                 struct buf *out, json_t **chains)
{
    struct buf nat, rules, rej;
    json_t *now = json_array(), *c;
    size_t i, k;
    json_t *svc;
    int rc = 0;

    buf_init(&nat);
    buf_init(&rules);
    buf_init(&rej);
    if (!now)
        return -ENOMEM;
    rc = buf_puts(&nat, "*nat\n:KL-SERVICES - [0:0]\n");
    json_array_foreach(services, i, svc)
    {
        json_t *md = json_object_get(svc, "metadata"), *spec = json_object_get(svc, "spec");
        const char *ip = spec_str(spec, "clusterIP"), *type = spec_str(spec, "type");
        json_t *sp;
        if (rc)
            break;
        if (!ip || !*ip || strcmp(ip, "None") == 0 || (type && strcmp(type, "ExternalName") == 0))
            continue;
        json_array_foreach(json_object_get(spec, "ports"), k, sp)
        {
            const char *proto = lower_proto(spec_str(sp, "protocol"));
            long port = spec_int(sp, "port", 0);
            char key[600], svc_chain[32], comment[400];
            char **eps = NULL;
            size_t neps = 0;
            if (rc || !proto || port <= 0 || port > 65535)
                continue;
            snprintf(key, sizeof(key), "%s/%s:%s/%ld/%s", spec_str(md, "namespace"),
                     spec_str(md, "name"), spec_str(sp, "name") ? spec_str(sp, "name") : "", port,
                     proto);
            snprintf(comment, sizeof(comment), "%s/%s:%s", spec_str(md, "namespace"),
                     spec_str(md, "name"), spec_str(sp, "name") ? spec_str(sp, "name") : "");
            rc = endpoints_of(svc, sp, slices, &eps, &neps);
            if (rc)
                break;
            if (!neps) {
                rc = buf_printf(&rej,
                                "-A KL-REJECT -d %s/32 -p %s -m %s --dport %ld -m comment "
                                "--comment \"%s has no endpoints\" -j REJECT\n",
                                ip, proto, proto, port, comment);
                free(eps);
                continue;
            }
            chain_name(svc_chain, "KL-SVC-", key);
            json_array_append_new(now, json_string(svc_chain));
            rc = buf_printf(&nat, ":%s - [0:0]\n", svc_chain);
            if (!rc)
                rc = buf_printf(&rules,
                                "-A KL-SERVICES -d %s/32 -p %s -m %s --dport %ld -m comment "
                                "--comment \"%s\" -j %s\n",
                                ip, proto, proto, port, comment, svc_chain);
            for (size_t e = 0; e < neps; e++) {
                char sep[32], sepkey[700], epip[64];
                snprintf(sepkey, sizeof(sepkey), "%s|%s", key, eps[e]);
                chain_name(sep, "KL-SEP-", sepkey);
                snprintf(epip, sizeof(epip), "%s", eps[e]);
                epip[strcspn(epip, ":")] = '\0';
                json_array_append_new(now, json_string(sep));
                if (!rc)
                    rc = buf_printf(&nat, ":%s - [0:0]\n", sep);
                if (!rc && e + 1 < neps)
                    rc = buf_printf(&rules,
                                    "-A %s -m statistic --mode random --probability %.10f -j %s\n",
                                    svc_chain, 1.0 / (double)(neps - e), sep);
                else if (!rc)
                    rc = buf_printf(&rules, "-A %s -j %s\n", svc_chain, sep);
                if (!rc)
                    rc = buf_printf(&rules,
                                    "-A %s -s %s/32 -j MARK --set-xmark " MASQ_MARK "\n"
                                    "-A %s -p %s -m %s -j DNAT --to-destination %s\n",
                                    sep, epip, sep, proto, proto, eps[e]);
            }
            for (size_t e = 0; e < neps; e++)
                free(eps[e]);
            free(eps);
        }
    }
    /* Chains of the previous render that are gone: flush (declare) then delete. */
    json_array_foreach(prev_chains, i, c)
    {
        bool still = false;
        json_t *c2;
        size_t j;
        json_array_foreach(now, j, c2) still = still || json_equal(c, c2);
        if (!still && !rc)
            rc = buf_printf(&nat, ":%s - [0:0]\n", json_string_value(c));
    }
    if (!rc)
        rc = buf_append(&nat, rules.p ? rules.p : "", rules.len);
    json_array_foreach(prev_chains, i, c)
    {
        bool still = false;
        json_t *c2;
        size_t j;
        json_array_foreach(now, j, c2) still = still || json_equal(c, c2);
        if (!still && !rc)
            rc = buf_printf(&nat, "-X %s\n", json_string_value(c));
    }
    if (!rc)
        rc =
            buf_printf(&nat, "COMMIT\n*filter\n:KL-REJECT - [0:0]\n%sCOMMIT\n", rej.p ? rej.p : "");
    if (!rc)
        rc = buf_append(out, nat.p, nat.len);
    buf_release(&nat);
    buf_release(&rules);
    buf_release(&rej);
    if (rc) {
        json_decref(now);
        return rc;
    }
    *chains = now;
    return 0;
}

static int ipt(const char *const *argv, char *msg, size_t msglen)
{
    struct buf out;
    int rc;

    buf_init(&out);
    rc = host_run(argv, NULL, &out);
    if (rc && msg) {
        snprintf(msg, msglen, "%s %s %s %s: %s", argv[0], argv[1], argv[2], argv[3],
                 out.p ? out.p : "failed");
        msg[strcspn(msg, "\n")] = '\0';
    }
    buf_release(&out);
    return rc;
}

/* The jumps from built-in chains into ours: table, chain, target. */
static const char *const jumps[][3] = {
    {"nat", "PREROUTING", "KL-SERVICES"},     {"nat", "OUTPUT", "KL-SERVICES"},
    {"nat", "POSTROUTING", "KL-POSTROUTING"}, {"filter", "FORWARD", "KL-FORWARD"},
    {"filter", "FORWARD", "KL-REJECT"},       {"filter", "OUTPUT", "KL-REJECT"},
};

static void remove_jumps(void)
{
    for (size_t i = 0; i < ARRAY_LEN(jumps); i++) {
        /* Delete every copy (an earlier crashed run may have left one). */
        for (int n = 0; n < 16; n++) {
            const char *argv[] = {IPT,         "-w", "-t",        jumps[i][0], "-D",
                                  jumps[i][1], "-j", jumps[i][2], NULL};
            if (host_run(argv, NULL, NULL) != 0)
                break;
        }
    }
}

int proxy_setup(char *msg, size_t msglen)
{
    struct buf out;
    int rc;
    const char *base = "*nat\n:KL-SERVICES - [0:0]\n:KL-POSTROUTING - [0:0]\n"
                       "-A KL-POSTROUTING -m mark --mark " MASQ_MARK " -j MASQUERADE\n"
                       "COMMIT\n*filter\n:KL-REJECT - [0:0]\n:KL-FORWARD - [0:0]\n"
                       "-A KL-FORWARD -i kl0 ! -o kl0 -j DROP\nCOMMIT\n";
    const char *argv[] = {IPT_RESTORE, "-w", "--noflush", NULL};

    buf_init(&out);
    rc = host_run(argv, base, &out);
    if (rc) {
        snprintf(msg, msglen, "iptables-restore: %s", out.p ? out.p : "failed");
        buf_release(&out);
        return rc;
    }
    buf_release(&out);
    remove_jumps();
    for (size_t i = 0; i < ARRAY_LEN(jumps); i++) {
        const char *a[] = {IPT,         "-w", "-t", jumps[i][0], "-I",
                           jumps[i][1], "1",  "-j", jumps[i][2], NULL};
        rc = ipt(a, msg, msglen);
        if (rc)
            return rc;
    }
    return 0;
}

int proxy_apply(const char *rules, char *msg, size_t msglen)
{
    struct buf out;
    const char *argv[] = {IPT_RESTORE, "-w", "--noflush", NULL};
    int rc;

    buf_init(&out);
    rc = host_run(argv, rules, &out);
    if (rc)
        snprintf(msg, msglen, "iptables-restore: %s", out.p ? out.p : "failed");
    buf_release(&out);
    return rc;
}

void proxy_teardown(void)
{
    static const char *const tables[] = {"nat", "filter"};
    const char *restore[] = {IPT_RESTORE, "-w", "--noflush", NULL};

    remove_jumps();
    for (size_t t = 0; t < ARRAY_LEN(tables); t++) {
        const char *save[] = {IPT_SAVE, "-t", tables[t], NULL};
        struct buf out, decl, del;
        char *line, *sv = NULL;

        buf_init(&out);
        buf_init(&decl);
        buf_init(&del);
        if (host_run(save, NULL, &out) == 0 && out.p) {
            /* Declaring a chain in --noflush mode flushes it; then each one is deleted. */
            for (line = strtok_r(out.p, "\n", &sv); line; line = strtok_r(NULL, "\n", &sv)) {
                if (strncmp(line, ":KL-", 4) != 0)
                    continue;
                line[strcspn(line, " ")] = '\0';
                IGNORE_RESULT(buf_printf(&decl, "%s - [0:0]\n", line));
                IGNORE_RESULT(buf_printf(&del, "-X %s\n", line + 1));
            }
        }
        buf_reset(&out);
        if (decl.len) {
            struct buf in;
            buf_init(&in);
            if (!buf_printf(&in, "*%s\n%s%sCOMMIT\n", tables[t], decl.p, del.p) &&
                host_run(restore, in.p, &out) != 0)
                log_warn("msg=\"cannot remove the KL chains\" table=%s err=\"%s\"", tables[t],
                         out.p ? out.p : "");
            buf_release(&in);
        }
        buf_release(&out);
        buf_release(&decl);
        buf_release(&del);
    }
}
