/*
 * access.c - the inbound listener's access decisions, counted by action and policy
 * (weft_agent_access_decisions_total; docs/agent.md, "Access decisions").
 *
 * HAProxy writes every inbound log line to the agent's log pipe (render.c: "log fd@3", main.c's
 * access_start); each line ends with "denied=<ns>/<policy> audit=<ns>/<p>;..."
 * ("-" when nothing matched). main.c reads the pipe on its loop and hands each line
 * here. Counters live as long as the agent, across HAProxy reloads; the policies the applied
 * document names are listed at 0 before they first match, those it no longer names are
 * dropped with the next document. At most AGENT_ACCESS_MAX series.
 */
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "core/map.h"

struct agent_access {
    struct agent_series s; /* "<action> <ns>/<policy>" */
};

int agent_access_new(struct agent_access **out)
{
    *out = calloc(1, sizeof(**out));
    if (!*out)
        return -ENOMEM;
    agent_series_init(&(*out)->s, AGENT_ACCESS_MAX);
    return 0;
}

void agent_access_free(struct agent_access *a)
{
    if (!a)
        return;
    agent_series_release(&a->s);
    free(a);
}

/* "<ns>/<name>": two Kubernetes names (the renderer writes nothing else). */
static bool policy_ok(const char *p, size_t n)
{
    const char *slash = memchr(p, '/', n);

    if (!slash || slash == p || slash == p + n - 1 || n > 2 * 253 + 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              p + i == slash))
            return false;
    }
    return true;
}

static int add(struct agent_access *a, const char *action, const char *p, size_t n,
               unsigned long long by)
{
    char key[8 + 2 * 253 + 2];

    if (!policy_ok(p, n))
        return ERR_INVALID;
    snprintf(key, sizeof(key), "%s %.*s", action, (int)n, p);
    return agent_series_add(&a->s, key, by);
}

const char *agent_log_field(const char *line, size_t len, const char *name, size_t *n)
{
    size_t k = strlen(name);

    for (size_t i = len; i-- > 0;) {
        if (line[i] == ' ' && len - i > k && memcmp(line + i + 1, name, k) == 0) {
            const char *v = line + i + 1 + k, *sp = memchr(v, ' ', (size_t)(line + len - v));

            *n = (size_t)((sp ? sp : line + len) - v);
            return v;
        }
    }
    return NULL;
}

bool agent_access_line(struct agent_access *a, const char *line, size_t len)
{
    const char *d, *au;
    size_t dn, an;
    bool bad = false;

    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    au = agent_log_field(line, len, "audit=", &an);
    d = au ? agent_log_field(line, (size_t)(au - line) - 7, "denied=", &dn) : NULL;
    if (!au || !d || d + dn != au - 7) /* "... denied=X audit=Y", at the end */
        return false;
    a->s.lines++;
    if (dn == 1 && *d == '-') /* HAProxy's "-" for an empty value */
        dn = 0;
    if (an == 1 && *au == '-')
        an = 0;
    if (dn)
        bad |= add(a, "deny", d, dn, 1) != 0;
    while (an) {
        const char *semi = memchr(au, ';', an);
        size_t n = semi ? (size_t)(semi - au) : an;

        bad |= add(a, "audit", au, n, 1) != 0;
        if (!semi)
            break;
        an -= n + 1;
        au = semi + 1;
    }
    if (bad)
        a->s.bad++;
    return true;
}

int agent_access_doc(struct agent_access *a, const json_t *doc)
{
    const char *ns = json_string_value(json_object_get(json_object_get(doc, "proxy"), "namespace"));
    const json_t *inbound = json_object_get(doc, "inbound"), *l, *r;
    const char *mode = json_string_value(json_object_get(doc, "mode"));
    struct map keep = MAP_INIT;
    size_t i, j;
    int rc = 0;

    if (!ns)
        return ERR_INVALID;
    json_array_foreach(inbound, i, l)
    {
        static const char *const kinds[2] = {"deny", "audit"};
        const char *dflt = json_string_value(json_object_get(l, "default"));

        for (int k = 0; k < 2 && !rc; k++) {
            json_array_foreach(json_object_get(l, kinds[k]), j, r)
            {
                const char *p = json_string_value(json_object_get(r, "policy"));
                char key[8 + 2 * 253 + 2], name[2 * 253 + 2];

                if (!p)
                    continue;
                snprintf(name, sizeof(name), "%s/%s", ns, p);
                snprintf(key, sizeof(key), "%s %s", kinds[k], name);
                if ((rc = add(a, kinds[k], name, strlen(name), 0)) == 0)
                    rc = map_put(&keep, key, a);
            }
        }
        if (!rc && dflt && strcmp(dflt, "deny") == 0) {
            char key[8 + 253 + 9];

            snprintf(key, sizeof(key), "deny %s/default", ns);
            if ((rc = add(a, "deny", key + 5, strlen(key + 5), 0)) == 0)
                rc = map_put(&keep, key, a);
        }
    }
    if (!rc && mode && strcmp(mode, "deny") == 0) {
        char key[8 + 253 + 9];

        snprintf(key, sizeof(key), "deny %s/default", ns);
        if ((rc = add(a, "deny", key + 5, strlen(key + 5), 0)) == 0)
            rc = map_put(&keep, key, a);
    }
    if (!rc) {
        MAP_FOREACH(&a->s.c, s)
        {
            if (!map_get(&keep, s->key))
                free(map_del(&a->s.c, s->key));
        }
    }
    map_release(&keep);
    return rc;
}

static int decision_line(struct buf *b, const char *key, unsigned long long v)
{
    const char *sp = strchr(key, ' ');

    return buf_printf(b, "weft_agent_access_decisions_total{action=\"%.*s\",policy=\"%s\"} %llu\n",
                      (int)(sp - key), key, sp + 1, v);
}

int agent_access_text(const struct agent_access *a, struct buf *b)
{
    return agent_series_text(
        &a->s, b,
        "# HELP weft_agent_access_decisions_total Inbound requests (http ports) and connections "
        "(tcp ports) denied or audited, by the AccessPolicy that decided (<namespace>/default: no "
        "Allow matched, or mode deny).\n"
        "# TYPE weft_agent_access_decisions_total counter\n",
        decision_line, "weft_agent_access_log_lines_total",
        "Inbound log lines HAProxy sent the agent (its log pipe), by whether every decision in "
        "them was counted (bad: a policy name it could not read, or more than " AGENT_STR(
            AGENT_ACCESS_MAX) " series).");
}
