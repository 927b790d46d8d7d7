/*
 * iptables.c - weft-init's plan (the webhook's arguments) and the nat rules it describes.
 *
 * The rules, per family (docs/agent.md has the reasoning for each):
 *
 *   PREROUTING -p tcp -> WEFT_INBOUND: excluded ports RETURN, the rest -> WEFT_IN_REDIRECT (15006)
 *   OUTPUT -p tcp -> WEFT_OUTPUT:
 *     -s 127.0.0.6 -o lo            RETURN      the inbound listener forwarding to the app
 *     -o lo ! -d 127.0.0.1 uid 1337 WEFT_INBOUND the proxy calling its own pod (a self-call
 *                                                through a Service) enters the inbound listener
 *     -o lo                         RETURN      any other loopback traffic
 *     uid 1337                      RETURN      the proxy's own outbound connections
 *     excluded ports, excluded CIDRs RETURN
 *     included CIDRs (or all)       WEFT_REDIRECT (15001)
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "agent/agent.h"
#include "core/netaddr.h"

#define ITEM_MAX 64

void agent_ipt_plan_init(struct agent_ipt_plan *p)
{
    memset(p, 0, sizeof(*p));
    p->proxy_uid = 1337;
    p->outbound_port = 15001;
    p->inbound_port = 15006;
    p->in_all = true;
    p->out_all = true;
}

void agent_ipt_plan_release(struct agent_ipt_plan *p)
{
    if (!p)
        return;
    free(p->in_ports);
    free(p->ex_in_ports);
    free(p->ex_out_ports);
    free(p->in_ranges);
    free(p->ex_ranges);
    memset(p, 0, sizeof(*p));
}

/* One list option: its items parsed into a fresh array (ports: int, ranges: struct netaddr_cidr).
 */
static int list_parse(const char *what, const char *value, bool cidr, bool allow_star, bool *star,
                      void **items, size_t *n, struct diag *diag)
{
    size_t sz = cidr ? sizeof(struct netaddr_cidr) : sizeof(int);
    const char *s = value, *e = value + strlen(value);
    char *arr = NULL;
    size_t cnt = 0;
    const char *want = cidr ? "CIDRs such as 10.0.0.0/8 or fd00::/8" : "ports 1-65535";

    *star = false;
    netaddr_trim(&s, &e);
    if (s == e)
        goto done;
    if (e - s == 1 && *s == '*') {
        if (!allow_star) {
            diag_set(diag, "--%s: \"*\" is not allowed here (want comma-separated %s)", what, want);
            return ERR_INVALID;
        }
        *star = true;
        goto done;
    }
    for (const char *p = value;;) {
        const char *comma = strchr(p, ','), *ie = comma ? comma : p + strlen(p), *is = p;
        char item[ITEM_MAX + 1];
        size_t len;
        union {
            int port;
            struct netaddr_cidr c;
        } v;
        bool ok, dup = false;

        netaddr_trim(&is, &ie);
        len = (size_t)(ie - is);
        memcpy(item, is, len > ITEM_MAX ? ITEM_MAX : len);
        item[len > ITEM_MAX ? ITEM_MAX : len] = '\0';
        ok = len > 0 && len <= ITEM_MAX &&
             (cidr ? netaddr_cidr_parse(item, &v.c) : netaddr_port_parse(item, &v.port));
        if (!ok) {
            if (len == 0)
                diag_set(diag, "--%s: empty item in \"%.200s\" (want comma-separated %s)", what,
                         value, want);
            else
                diag_set(diag, "--%s: invalid item \"%s\" (want comma-separated %s)", what, item,
                         want);
            free(arr);
            return ERR_INVALID;
        }
        for (size_t i = 0; i < cnt && !dup; i++)
            dup = memcmp(arr + i * sz, &v, sz) == 0;
        if (!dup) {
            char *na = realloc(arr, (cnt + 1) * sz);

            if (!na) {
                free(arr);
                return -ENOMEM;
            }
            arr = na;
            memcpy(arr + cnt * sz, &v, sz);
            cnt++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
done:
    *items = arr;
    *n = cnt;
    return 0;
}

int agent_ipt_plan_set(struct agent_ipt_plan *p, const char *what, const char *value,
                       struct diag *diag)
{
    static const struct {
        const char *name;
        bool cidr, star;
        size_t items, n, starflag;
    } opts[] = {
        {"include-inbound-ports", false, true, offsetof(struct agent_ipt_plan, in_ports),
         offsetof(struct agent_ipt_plan, n_in_ports), offsetof(struct agent_ipt_plan, in_all)},
        {"exclude-inbound-ports", false, false, offsetof(struct agent_ipt_plan, ex_in_ports),
         offsetof(struct agent_ipt_plan, n_ex_in_ports), 0},
        {"exclude-outbound-ports", false, false, offsetof(struct agent_ipt_plan, ex_out_ports),
         offsetof(struct agent_ipt_plan, n_ex_out_ports), 0},
        {"include-outbound-ip-ranges", true, true, offsetof(struct agent_ipt_plan, in_ranges),
         offsetof(struct agent_ipt_plan, n_in_ranges), offsetof(struct agent_ipt_plan, out_all)},
        {"exclude-outbound-ip-ranges", true, false, offsetof(struct agent_ipt_plan, ex_ranges),
         offsetof(struct agent_ipt_plan, n_ex_ranges), 0},
    };

    for (size_t i = 0; i < ARRAY_LEN(opts); i++) {
        void *items = NULL, **slot;
        size_t n = 0;
        bool star = false;
        int rc;

        if (strcmp(opts[i].name, what) != 0)
            continue;
        rc = list_parse(what, value, opts[i].cidr, opts[i].star, &star, &items, &n, diag);
        if (rc < 0)
            return rc;
        slot = (void **)((char *)p + opts[i].items);
        free(*slot);
        *slot = items;
        *(size_t *)((char *)p + opts[i].n) = n;
        if (opts[i].star)
            *(bool *)((char *)p + opts[i].starflag) = star;
        return 0;
    }
    diag_set(diag, "unknown list option --%s", what);
    return ERR_INVALID;
}

static int cidr_fmt(const struct netaddr_cidr *c, char *out, size_t len)
{
    char a[INET6_ADDRSTRLEN];

    if (!inet_ntop(c->family, c->addr, a, sizeof(a)))
        return -EINVAL;
    snprintf(out, len, "%s/%d", a, c->bits);
    return 0;
}

int agent_ipt_rules(const struct agent_ipt_plan *p, int family, struct buf *out)
{
    const char *lo = family == AF_INET6 ? "::1/128" : "127.0.0.1/32";
    const char *insrc = family == AF_INET6 ? AGENT_INBOUND_SRC6 "/128" : AGENT_INBOUND_SRC4 "/32";
    int uid = p->proxy_uid;
    int rc = 0;

#define P(...)                                                                                     \
    do {                                                                                           \
        if ((rc = buf_printf(out, __VA_ARGS__)) < 0)                                               \
            return rc;                                                                             \
    } while (0)

    P(":WEFT_INBOUND - [0:0]\n:WEFT_IN_REDIRECT - [0:0]\n:WEFT_OUTPUT - [0:0]\n"
      ":WEFT_REDIRECT - [0:0]\n");
    P("-A PREROUTING -p tcp -j WEFT_INBOUND\n");
    P("-A OUTPUT -p tcp -j WEFT_OUTPUT\n");
    P("-A WEFT_IN_REDIRECT -p tcp -j REDIRECT --to-ports %d\n", p->inbound_port);
    P("-A WEFT_REDIRECT -p tcp -j REDIRECT --to-ports %d\n", p->outbound_port);

    /* Inbound: which destination ports the inbound listener takes. */
    if (p->in_all) {
        for (size_t i = 0; i < p->n_ex_in_ports; i++)
            P("-A WEFT_INBOUND -p tcp -m tcp --dport %d -j RETURN\n", p->ex_in_ports[i]);
        P("-A WEFT_INBOUND -p tcp -j WEFT_IN_REDIRECT\n");
    } else {
        for (size_t i = 0; i < p->n_in_ports; i++) {
            bool excluded = false;

            for (size_t j = 0; j < p->n_ex_in_ports; j++)
                excluded |= p->ex_in_ports[j] == p->in_ports[i];
            if (!excluded)
                P("-A WEFT_INBOUND -p tcp -m tcp --dport %d -j WEFT_IN_REDIRECT\n", p->in_ports[i]);
        }
    }

    /* Outbound. The inbound listener reaches the app on the pod's IP from 127.0.0.6: never
     * redirected (else it would loop into 15006). */
    P("-A WEFT_OUTPUT -s %s -o lo -j RETURN\n", insrc);
    /* The proxy dialling its own pod (the app called its own Service and the endpoint is this
     * pod): the connection goes through lo to a non-loopback address and must enter the inbound
     * listener like any other peer's, for the same ports inbound capture takes. */
    P("-A WEFT_OUTPUT ! -d %s -o lo -p tcp -m owner --uid-owner %d -j WEFT_INBOUND\n", lo, uid);
    /* Anything else on loopback (the app's local calls, the proxy to 127.0.0.1) is not captured;
     * nor is the proxy's own traffic. */
    P("-A WEFT_OUTPUT -o lo -j RETURN\n");
    P("-A WEFT_OUTPUT -m owner --uid-owner %d -j RETURN\n", uid);
    for (size_t i = 0; i < p->n_ex_out_ports; i++)
        P("-A WEFT_OUTPUT -p tcp -m tcp --dport %d -j RETURN\n", p->ex_out_ports[i]);
    for (size_t i = 0; i < p->n_ex_ranges; i++) {
        char c[INET6_ADDRSTRLEN + 8];

        if (p->ex_ranges[i].family != family)
            continue;
        if ((rc = cidr_fmt(&p->ex_ranges[i], c, sizeof(c))) < 0)
            return rc;
        P("-A WEFT_OUTPUT -d %s -j RETURN\n", c);
    }
    if (p->out_all) {
        P("-A WEFT_OUTPUT -j WEFT_REDIRECT\n");
    } else {
        for (size_t i = 0; i < p->n_in_ranges; i++) {
            char c[INET6_ADDRSTRLEN + 8];

            if (p->in_ranges[i].family != family)
                continue;
            if ((rc = cidr_fmt(&p->in_ranges[i], c, sizeof(c))) < 0)
                return rc;
            P("-A WEFT_OUTPUT -d %s -j WEFT_REDIRECT\n", c);
        }
    }
#undef P
    return 0;
}

/* ---- merging with what the table holds ---- */

static bool ours(const char *chain, size_t len)
{
    size_t pl = strlen(AGENT_IPT_CHAIN_PREFIX);

    return len >= pl && memcmp(chain, AGENT_IPT_CHAIN_PREFIX, pl) == 0;
}

/* Does this "-A CHAIN ..." line belong to us: in one of our chains, or jumping to one? */
static bool rule_ours(const char *line, size_t len)
{
    const char *chain = line + 3, *sp;
    size_t clen;

    sp = memchr(chain, ' ', len - 3);
    clen = sp ? (size_t)(sp - chain) : len - 3;
    if (ours(chain, clen))
        return true;
    for (const char *p = line; p + 3 < line + len; p++) {
        if ((memcmp(p, " -j ", 4) == 0 || memcmp(p, " -g ", 4) == 0) &&
            (size_t)(line + len - (p + 4)) >= strlen(AGENT_IPT_CHAIN_PREFIX) &&
            ours(p + 4, (size_t)(line + len - (p + 4))))
            return true;
    }
    return false;
}

int agent_ipt_merge(const char *saved, const char *rules, struct buf *out, struct diag *diag)
{
    struct buf decl, body;
    bool in_nat = false;
    const char *p = saved ? saved : "";
    int rc = 0;

    buf_init(&decl);
    buf_init(&body);
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);

        if (len > 0 && p[len - 1] == '\r')
            len--;
        if (len >= 1 && p[0] == '*') {
            in_nat = len == 4 && memcmp(p, "*nat", 4) == 0;
        } else if (!in_nat || len == 0) {
            /* other tables, blank lines */
        } else if (p[0] == '#') {
            if (memmem(p, len, "incompatible", 12)) {
                diag_set(diag,
                         "the nat table holds rules iptables cannot represent (%.*s); refusing "
                         "to overwrite them",
                         (int)(len > 200 ? 200 : len), p);
                rc = ERR_UNSUPPORTED;
                goto out;
            }
        } else if (len == 6 && memcmp(p, "COMMIT", 6) == 0) {
            in_nat = false;
        } else if (p[0] == ':') {
            const char *sp = memchr(p, ' ', len);
            size_t clen = sp ? (size_t)(sp - p - 1) : len - 1;

            if (!ours(p + 1, clen)) {
                if ((rc = buf_append(&decl, p, len)) < 0 || (rc = buf_puts(&decl, "\n")) < 0)
                    goto out;
            }
        } else if (len > 3 && memcmp(p, "-A ", 3) == 0) {
            if (!rule_ours(p, len)) {
                if ((rc = buf_append(&body, p, len)) < 0 || (rc = buf_puts(&body, "\n")) < 0)
                    goto out;
            }
        } else if (len > 1 && p[0] == '[') {
            diag_set(diag, "unexpected counters in iptables-save output: %.*s",
                     (int)(len > 200 ? 200 : len), p);
            rc = ERR_PARSE;
            goto out;
        } else {
            diag_set(diag, "unexpected line in the nat table: %.*s", (int)(len > 200 ? 200 : len),
                     p);
            rc = ERR_PARSE;
            goto out;
        }
        p += len;
        while (*p == '\r' || *p == '\n')
            p++;
    }
    /* Our declarations go after the others, our rules after the others: a rerun over its own
     * result gives the same table. */
    {
        const char *r = rules;
        struct buf rdecl, rbody;

        buf_init(&rdecl);
        buf_init(&rbody);
        while (*r && rc == 0) {
            const char *nl = strchr(r, '\n');
            size_t len = nl ? (size_t)(nl - r) : strlen(r);

            if (len)
                rc = buf_append(r[0] == ':' ? &rdecl : &rbody, r, len);
            if (rc == 0 && len)
                rc = buf_puts(r[0] == ':' ? &rdecl : &rbody, "\n");
            r += len;
            if (*r == '\n')
                r++;
        }
        if (rc == 0 && ((rc = buf_puts(out, "*nat\n")) < 0 ||
                        (decl.len && (rc = buf_append(out, decl.p, decl.len)) < 0) ||
                        (rdecl.len && (rc = buf_append(out, rdecl.p, rdecl.len)) < 0) ||
                        (body.len && (rc = buf_append(out, body.p, body.len)) < 0) ||
                        (rbody.len && (rc = buf_append(out, rbody.p, rbody.len)) < 0) ||
                        (rc = buf_puts(out, "COMMIT\n")) < 0)) {
            /* rc set */
        }
        buf_release(&rdecl);
        buf_release(&rbody);
    }
out:
    buf_release(&decl);
    buf_release(&body);
    return rc;
}
