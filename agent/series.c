/*
 * series.c - counters the agent keeps by series (a key such as "deny shop/api"), at most a
 * fixed number of them, and the log lines that fed them: the shared part of access.c's
 * decisions and grpc.c's status codes, and the log pipe's bytes cut into the lines that feed
 * them. Values live as long as the agent.
 */
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"

void agent_series_init(struct agent_series *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
}

void agent_series_release(struct agent_series *s)
{
    MAP_FOREACH(&s->c, it)
    {
        free(it->val);
    }
    map_release(&s->c);
}

int agent_series_add(struct agent_series *s, const char *key, unsigned long long by)
{
    unsigned long long *v = map_get(&s->c, key);

    if (!v) {
        if (map_len(&s->c) >= s->max)
            return ERR_INVALID;
        v = calloc(1, sizeof(*v));
        if (!v || map_put(&s->c, key, v) < 0) {
            free(v);
            return -ENOMEM;
        }
    }
    *v += by;
    return 0;
}

int agent_series_text(const struct agent_series *s, struct buf *b, const char *head,
                      agent_series_line_fn *line, const char *lines_metric, const char *lines_help)
{
    size_t n;
    int rc = 0;
    const char **keys = map_sorted_keys(&s->c, &n, &rc);

    if (rc)
        return rc;
    rc = buf_puts(b, head);
    for (size_t i = 0; i < n && !rc; i++)
        rc = line(b, keys[i], *(const unsigned long long *)map_get(&s->c, keys[i]));
    if (!rc)
        rc = buf_printf(b,
                        "# HELP %s %s\n"
                        "# TYPE %s counter\n"
                        "%s{result=\"ok\"} %llu\n"
                        "%s{result=\"bad\"} %llu\n",
                        lines_metric, lines_help, lines_metric, lines_metric, s->lines - s->bad,
                        lines_metric, s->bad);
    free(keys);
    return rc;
}

void agent_lines_feed(struct agent_lines *l, const char *p, size_t n, agent_lines_fn *fn, void *ctx)
{
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t k = nl ? (size_t)(nl - p) : n;

        if (!l->skip && k > sizeof(l->part) - l->len) {
            l->skip = true; /* longer than any line HAProxy writes: not read */
            l->len = 0;
        }
        if (!l->skip) {
            if (nl && !l->len) {
                fn(ctx, p, k); /* whole in this read: no copy */
            } else {
                memcpy(l->part + l->len, p, k);
                l->len += k;
                if (nl) {
                    fn(ctx, l->part, l->len);
                    l->len = 0;
                }
            }
        } else if (nl) {
            fn(ctx, "", 0);
            l->skip = false;
        }
        if (!nl)
            break;
        p = nl + 1;
        n -= k + 1;
    }
}
