/*
 * table.c - meta.k8s.io/v1 Table responses, cell for cell as kube-apiserver builds them:
 * built-in resources after k8s.io/kubernetes/pkg/printers/internalversion (always generated
 * with Wide: true, so priority-1 cells are present), custom resources after apiextensions'
 * tableconvertor, anything else after apiserver's default table convertor (Name, Created At).
 */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/selector.h"
#include "tests/kubelite/table.h"

/* ---- small helpers ---- */

/* A buf with a sticky error, for building cell strings. */
struct sbuf {
    struct buf b;
    int rc;
};

static void sb_put(struct sbuf *s, const char *p, size_t n)
{
    if (!s->rc)
        s->rc = buf_append(&s->b, p, n);
}

static void sb_puts(struct sbuf *s, const char *p)
{
    sb_put(s, p ? p : "", p ? strlen(p) : 0);
}

static void sb_int(struct sbuf *s, long long v)
{
    char t[32];
    snprintf(t, sizeof(t), "%lld", v);
    sb_puts(s, t);
}

static const char *sb_str(const struct sbuf *s)
{
    return s->b.p ? s->b.p : "";
}

/* obj.a.b.c... (NULL-terminated list of keys) */
static const json_t *jpath(const json_t *obj, const char *const *keys)
{
    for (; obj && *keys; keys++)
        obj = json_object_get(obj, *keys);
    return obj;
}
#define JP(obj, ...) jpath((obj), (const char *const[]){__VA_ARGS__, NULL})

static long long jint_or(const json_t *v, long long dflt)
{
    if (json_is_integer(v))
        return (long long)json_integer_value(v);
    if (json_is_real(v))
        return (long long)json_real_value(v);
    return dflt;
}

static const char *str_or(const json_t *v, const char *dflt)
{
    const char *s = json_string_value(v);
    return s ? s : dflt;
}

static const char *str_nonempty(const json_t *v)
{
    const char *s = json_string_value(v);
    return s && *s ? s : NULL;
}

/* ---- time ---- */

/* RFC 3339 ("2024-01-02T03:04:05Z", optional fraction and offset) -> microseconds. */
static bool parse_time_us(const char *s, long long *us)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, n = 0;
    long long frac = 0, scale = 1000000;
    time_t t;

    if (!s || sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    s += n;
    if (*s != 'T' && *s != 't')
        return false;
    s++;
    if (sscanf(s, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
        return false;
    s += n;
    if (*s == '.') {
        s++;
        if (!isdigit((unsigned char)*s))
            return false;
        for (; isdigit((unsigned char)*s); s++) {
            if (scale > 1) {
                scale /= 10;
                frac += (*s - '0') * scale;
            }
        }
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int oh, om, sign = *s == '-' ? -1 : 1;
        if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) != 2 || n != 5)
            return false;
        t -= sign * (oh * 3600 + om * 60);
        s += 6;
    } else {
        return false;
    }
    if (*s)
        return false;
    *us = (long long)t * 1000000 + frac;
    return true;
}

void table_human_duration(long long d, char *out, size_t outlen)
{
    long long minutes, hours;

    if (!out || !outlen)
        return;
    /* tolerate up to one second of clock skew, as kube does */
    if (d < -1) {
        snprintf(out, outlen, "<invalid>");
        return;
    }
    if (d < 0) {
        snprintf(out, outlen, "0s");
        return;
    }
    if (d < 60 * 2) {
        snprintf(out, outlen, "%llds", d);
        return;
    }
    minutes = d / 60;
    if (minutes < 10) {
        if (d % 60 == 0)
            snprintf(out, outlen, "%lldm", minutes);
        else
            snprintf(out, outlen, "%lldm%llds", minutes, d % 60);
        return;
    }
    if (minutes < 60 * 3) {
        snprintf(out, outlen, "%lldm", minutes);
        return;
    }
    hours = d / 3600;
    if (hours < 8) {
        if (minutes % 60 == 0)
            snprintf(out, outlen, "%lldh", hours);
        else
            snprintf(out, outlen, "%lldh%lldm", hours, minutes % 60);
    } else if (hours < 48) {
        snprintf(out, outlen, "%lldh", hours);
    } else if (hours < 24 * 8) {
        if (hours % 24 == 0)
            snprintf(out, outlen, "%lldd", hours / 24);
        else
            snprintf(out, outlen, "%lldd%lldh", hours / 24, hours % 24);
    } else if (hours < 24 * 365 * 2) {
        snprintf(out, outlen, "%lldd", hours / 24);
    } else if (hours < 24 * 365 * 8) {
        long long dy = (hours / 24) % 365;
        if (dy == 0)
            snprintf(out, outlen, "%lldy", hours / 24 / 365);
        else
            snprintf(out, outlen, "%lldy%lldd", hours / 24 / 365, dy);
    } else {
        snprintf(out, outlen, "%lldy", hours / 24 / 365);
    }
}

/*
 * translateTimestampSince: "<unknown>" for an absent (zero) time, else HumanDuration(now - t).
 * Sub-second parts truncate toward zero like Go's int(d.Seconds()).
 */
static void since(const json_t *ts, time_t now, char *out, size_t n)
{
    long long us;
    const char *s = json_string_value(ts);

    if (!s || !*s || !parse_time_us(s, &us)) {
        snprintf(out, n, "<unknown>");
        return;
    }
    table_human_duration(((long long)now * 1000000 - us) / 1000000, out, n);
}

/* ---- JSONPath (the k8s.io/client-go/util/jsonpath subset used by printer columns) ---- */

struct nodes {
    const json_t **v;
    size_t n, cap;
};

static int nodes_add(struct nodes *ns, const json_t *v)
{
    if (ns->n == ns->cap) {
        size_t cap = ns->cap ? ns->cap * 2 : 8;
        const json_t **p = realloc(ns->v, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        ns->v = p;
        ns->cap = cap;
    }
    ns->v[ns->n++] = v;
    return 0;
}

static void nodes_swap(struct nodes *a, struct nodes *b)
{
    struct nodes t = *a;
    *a = *b;
    *b = t;
}

/* Evaluation failures that kube reports as errors (the cell becomes null). */
#define JP_FAIL 1

static int jp_eval(const json_t *root, const char *s, size_t len, struct nodes *out);

static bool jp_terminator(char c)
{
    return strchr(".,[]$@{} \t\r\n", c) != NULL;
}

static int step_field(const struct nodes *in, const char *name, struct nodes *out)
{
    int rc = 0;

    for (size_t i = 0; i < in->n && !rc; i++) {
        const json_t *v = in->v[i];
        if (!*name) {
            rc = nodes_add(out, v);
        } else if (strcmp(name, "*") == 0) {
            /* wildcard: values of an object, elements of an array */
            const char *k;
            const json_t *c;
            size_t j;
            if (json_is_object(v)) {
                json_object_foreach((json_t *)v, k, c)
                {
                    if ((rc = nodes_add(out, c)))
                        break;
                }
            } else if (json_is_array(v)) {
                json_array_foreach(v, j, c)
                {
                    if ((rc = nodes_add(out, c)))
                        break;
                }
            }
        } else if (json_is_object(v)) {
            const json_t *c = json_object_get(v, name);
            if (c)
                rc = nodes_add(out, c);
        }
    }
    return rc;
}

/* "..": every container node at or below the inputs, parents first. */
static int add_recursive(struct nodes *out, const json_t *v)
{
    const char *k;
    const json_t *c;
    size_t j;
    int rc = 0;

    if (json_object_size(v) == 0 && json_array_size(v) == 0)
        return 0;
    if ((rc = nodes_add(out, v)))
        return rc;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, c)
        {
            if ((rc = add_recursive(out, c)))
                return rc;
        }
    } else {
        json_array_foreach(v, j, c)
        {
            if ((rc = add_recursive(out, c)))
                return rc;
        }
    }
    return 0;
}

static bool parse_slice_int(const char *s, size_t n, bool *known, int *v)
{
    char tmp[24];
    char *end;
    long x;

    *known = n > 0;
    if (!n)
        return true;
    if (n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    x = strtol(tmp, &end, 10);
    if (*end || end == tmp || x > 1000000000L || x < -1000000000L)
        return false;
    *v = (int)x;
    return true;
}

/* "[n]", "[a:b]", "[a:b:c]", "[*]" with client-go's bounds rules. */
static int step_slice(const struct nodes *in, const char *t, size_t n, struct nodes *out)
{
    bool known[3] = {false, false, false}, derived = false;
    int val[3] = {0, 0, 0};
    const char *c1, *c2 = NULL;
    int rc = 0;

    c1 = memchr(t, ':', n);
    if (c1)
        c2 = memchr(c1 + 1, ':', n - (size_t)(c1 + 1 - t));
    if (!parse_slice_int(t, c1 ? (size_t)(c1 - t) : n, &known[0], &val[0]))
        return JP_FAIL;
    if (c1 && !parse_slice_int(c1 + 1, c2 ? (size_t)(c2 - c1 - 1) : n - (size_t)(c1 + 1 - t),
                               &known[1], &val[1]))
        return JP_FAIL;
    if (c2 && !parse_slice_int(c2 + 1, n - (size_t)(c2 + 1 - t), &known[2], &val[2]))
        return JP_FAIL;
    if (!c1) {
        /* a plain index: end is derived as start+1 */
        if (!known[0])
            return JP_FAIL;
        known[1] = true;
        val[1] = val[0] + 1;
        derived = true;
    }
    for (size_t i = 0; i < in->n && !rc; i++) {
        const json_t *v = in->v[i];
        int start = known[0] ? val[0] : 0, end, step = 1, len;
        if (json_is_null(v))
            continue;
        if (!json_is_array(v))
            return JP_FAIL;
        len = (int)json_array_size(v);
        if (start < 0)
            start += len;
        end = known[1] ? val[1] : len;
        if (end < 0 || (end == 0 && derived))
            end += len;
        if (end == start)
            continue;
        if (start >= len || start < 0 || end > len || end < 0 || start > end)
            return JP_FAIL;
        if (known[2]) {
            if (val[2] <= 0)
                return JP_FAIL;
            step = val[2];
        }
        for (int j = start; j < end && !rc; j += step)
            rc = nodes_add(out, json_array_get(v, (size_t)j));
    }
    return rc;
}

/* A filter operand: a quoted string, number or boolean literal, or an @-path. */
static int operand_eval(const json_t *elem, const char *s, size_t n, struct nodes *res,
                        json_t **tmp)
{
    while (n && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    *tmp = NULL;
    if (n >= 2 && (s[0] == '"' || s[0] == '\'') && s[n - 1] == s[0]) {
        char *u = malloc(n);
        size_t w = 0;
        if (!u)
            return -ENOMEM;
        for (size_t i = 1; i + 1 < n; i++) {
            if (s[i] == '\\' && i + 2 < n)
                i++;
            u[w++] = s[i];
        }
        *tmp = json_stringn(u, w);
        free(u);
    } else if (n == 4 && memcmp(s, "true", 4) == 0) {
        *tmp = json_true();
    } else if (n == 5 && memcmp(s, "false", 5) == 0) {
        *tmp = json_false();
    } else if (n && (isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '+')) {
        char buf[64], *end;
        if (n >= sizeof(buf))
            return JP_FAIL;
        memcpy(buf, s, n);
        buf[n] = '\0';
        if (!memchr(buf, '.', n)) {
            long long v = strtoll(buf, &end, 10);
            if (*end)
                return JP_FAIL;
            *tmp = json_integer(v);
        } else {
            double v = strtod(buf, &end);
            if (*end)
                return JP_FAIL;
            *tmp = json_real(v);
        }
    } else {
        return jp_eval(elem, s, n, res);
    }
    if (!*tmp)
        return -ENOMEM;
    return nodes_add(res, *tmp);
}

/* template.Equal/Less and friends: same-kind comparisons only; returns 1/0 or JP_FAIL as -1. */
static int compare(const json_t *a, const json_t *b, const char *op)
{
    int c;

    if (json_is_string(a) && json_is_string(b)) {
        c = strcmp(json_string_value(a), json_string_value(b));
    } else if (json_is_number(a) && json_is_number(b)) {
        double x = json_number_value(a), y = json_number_value(b);
        if (json_is_integer(a) && json_is_integer(b)) {
            json_int_t i = json_integer_value(a), j = json_integer_value(b);
            c = i < j ? -1 : i > j;
        } else {
            c = x < y ? -1 : x > y;
        }
    } else if (json_is_boolean(a) && json_is_boolean(b)) {
        if (strcmp(op, "==") && strcmp(op, "!="))
            return -1;
        c = json_is_true(a) != json_is_true(b);
    } else {
        return -1;
    }
    if (!strcmp(op, "=="))
        return c == 0;
    if (!strcmp(op, "!="))
        return c != 0;
    if (!strcmp(op, "<"))
        return c < 0;
    if (!strcmp(op, ">"))
        return c > 0;
    if (!strcmp(op, "<="))
        return c <= 0;
    if (!strcmp(op, ">="))
        return c >= 0;
    return -1;
}

/* "[?(<left> <op> <right>)]" or "[?(<path>)]" (exists). text is the inside of "(...)". */
static int step_filter(const struct nodes *in, const char *text, size_t n, struct nodes *out)
{
    size_t k = 0, ol = 0;
    char op[4] = "";
    int rc = 0;

    while (k < n && !strchr("!<>=", text[k]))
        k++;
    if (k < n) {
        while (k + ol < n && strchr("!<>=~", text[k + ol]))
            ol++;
        if (ol >= sizeof(op) || k == 0 || k + ol == n)
            return JP_FAIL;
        memcpy(op, text + k, ol);
    }
    for (size_t i = 0; i < in->n && !rc; i++) {
        const json_t *arr = in->v[i], *e;
        size_t j;
        if (!json_is_array(arr))
            return JP_FAIL;
        json_array_foreach(arr, j, e)
        {
            struct nodes l = {0}, r = {0};
            json_t *lt = NULL, *rt = NULL;
            int pass = 0;

            rc = operand_eval(e, text, k, &l, &lt);
            if (!ol) {
                /* exists: any result, evaluation errors count as none */
                pass = rc == 0 && l.n > 0;
                rc = rc < 0 ? rc : 0;
            } else if (!rc && l.n == 1) {
                rc = operand_eval(e, text + k + ol, n - k - ol, &r, &rt);
                if (!rc && r.n == 1) {
                    pass = compare(l.v[0], r.v[0], op);
                    if (pass < 0)
                        rc = JP_FAIL;
                } else if (!rc && r.n > 1) {
                    rc = JP_FAIL; /* can only compare one element at a time */
                }
            } else if (!rc && l.n > 1) {
                rc = JP_FAIL;
            }
            if (!rc && pass > 0)
                rc = nodes_add(out, e);
            json_decref(lt);
            json_decref(rt);
            free(l.v);
            free(r.v);
            if (rc)
                return rc;
        }
    }
    return rc;
}

/* Evaluate path s[0, len) on root; appends the results to out. */
static int jp_eval(const json_t *root, const char *s, size_t len, struct nodes *out)
{
    struct nodes cur = {0}, nxt = {0};
    char *name = NULL;
    size_t i = 0;
    int rc;

    if ((rc = nodes_add(&cur, root)))
        goto out;
    while (i < len && isspace((unsigned char)s[i]))
        i++;
    if (i < len && (s[i] == '$' || s[i] == '@'))
        i++;
    while (i < len) {
        nxt.n = 0;
        if (s[i] == ' ' || s[i] == '\t') {
            i++;
            continue;
        }
        if (len - i >= 3 && memcmp(s + i, "[?(", 3) == 0) {
            /* find the closing ")]" outside quotes, as client-go's parseFilter does */
            size_t j = i + 3, start = i + 3;
            char quote = 0;
            bool closed = false;
            for (; j < len; j++) {
                if (quote) {
                    if (s[j] == quote && s[j - 1] != '\\')
                        quote = 0;
                } else if (s[j] == '"' || s[j] == '\'') {
                    quote = s[j];
                } else if (s[j] == ')') {
                    closed = true;
                    break;
                }
            }
            if (!closed || j + 1 >= len || s[j + 1] != ']') {
                rc = JP_FAIL;
                goto out;
            }
            rc = step_filter(&cur, s + start, j - start, &nxt);
            i = j + 2;
        } else if (s[i] == '.' || s[i] == '[') {
            bool recursive = s[i] == '.' && i + 1 < len && s[i + 1] == '.';
            if (recursive) {
                for (size_t k = 0; k < cur.n && !rc; k++)
                    rc = add_recursive(&nxt, cur.v[k]);
                if (rc)
                    goto out;
                nodes_swap(&cur, &nxt);
                nxt.n = 0;
                i += 2;
                if (i >= len || s[i] == '[' || s[i] == '.')
                    continue;
                i--; /* parse the field that follows ".." */
            }
            if (s[i] == '.') {
                size_t w = 0;
                free(name);
                name = malloc(len - i + 1);
                if (!name) {
                    rc = -ENOMEM;
                    goto out;
                }
                for (i++; i < len && !jp_terminator(s[i]); i++) {
                    if (s[i] == '\\' && i + 1 < len)
                        i++;
                    name[w++] = s[i];
                }
                name[w] = '\0';
                rc = step_field(&cur, name, &nxt);
            } else {
                const char *close = memchr(s + i, ']', len - i);
                const char *t = s + i + 1;
                size_t tn;
                if (!close) {
                    rc = JP_FAIL;
                    goto out;
                }
                tn = (size_t)(close - t);
                if (tn == 1 && t[0] == '*') {
                    rc = step_slice(&cur, ":", 1, &nxt);
                } else if (tn >= 2 && t[0] == '\'' && t[tn - 1] == '\'' &&
                           !memchr(t + 1, '\'', tn - 2)) {
                    free(name);
                    name = strndup(t + 1, tn - 2);
                    if (!name) {
                        rc = -ENOMEM;
                        goto out;
                    }
                    rc = step_field(&cur, name, &nxt);
                } else if (memchr(t, ',', tn)) {
                    rc = JP_FAIL; /* unions are not supported */
                } else {
                    rc = step_slice(&cur, t, tn, &nxt);
                }
                i = (size_t)(close - s) + 1;
            }
        } else {
            rc = JP_FAIL;
        }
        if (rc)
            goto out;
        nodes_swap(&cur, &nxt);
    }
    for (size_t k = 0; k < cur.n && !rc; k++)
        rc = nodes_add(out, cur.v[k]);
out:
    free(name);
    free(cur.v);
    free(nxt.v);
    return rc;
}

/* Strip whitespace and one "{...}" around the path. */
static int jp_find(const json_t *obj, const char *path, struct nodes *out)
{
    size_t len;

    if (!obj || !path)
        return JP_FAIL;
    while (isspace((unsigned char)*path))
        path++;
    len = strlen(path);
    while (len && isspace((unsigned char)path[len - 1]))
        len--;
    if (len && path[0] == '{') {
        if (path[len - 1] != '}')
            return JP_FAIL;
        path++;
        len -= 2;
    }
    if (memchr(path, '{', len) || memchr(path, '}', len))
        return JP_FAIL;
    return jp_eval(obj, path, len, out);
}

json_t *table_jsonpath(const json_t *obj, const char *path)
{
    struct nodes res = {0};
    json_t *out = NULL;

    if (jp_find(obj, path, &res) != 0 || res.n == 0)
        goto out;
    if (res.n == 1) {
        out = json_incref((json_t *)res.v[0]);
        goto out;
    }
    out = json_array();
    for (size_t i = 0; out && i < res.n; i++) {
        if (json_array_append(out, (json_t *)res.v[i])) {
            json_decref(out);
            out = NULL;
        }
    }
out:
    free(res.v);
    return out;
}

/* ---- rows ---- */

struct row {
    json_t *cells;
    json_t *conditions; /* optional */
    int rc;
};

static void cell(struct row *r, json_t *v)
{
    if (r->rc) {
        json_decref(v);
        return;
    }
    if (!v || json_array_append_new(r->cells, v))
        r->rc = -ENOMEM;
}

static void cell_str(struct row *r, const char *s)
{
    cell(r, json_string(s ? s : ""));
}

static void cell_sb(struct row *r, struct sbuf *s)
{
    if (s->rc && !r->rc)
        r->rc = s->rc;
    cell_str(r, sb_str(s));
    buf_release(&s->b);
}

static void cell_int(struct row *r, long long v)
{
    cell(r, json_integer((json_int_t)v));
}

static void cell_since(struct row *r, const json_t *ts, time_t now)
{
    char t[32];
    since(ts, now, t, sizeof(t));
    cell_str(r, t);
}

static void cell_age(struct row *r, const json_t *obj, time_t now)
{
    cell_since(r, JP(obj, "metadata", "creationTimestamp"), now);
}

static void cell_name(struct row *r, const json_t *obj)
{
    cell_str(r, str_or(JP(obj, "metadata", "name"), ""));
}

/* "Created At" of the default convertor: creationTimestamp in UTC, RFC 3339, zero time if unset. */
static void cell_created_at(struct row *r, const json_t *obj)
{
    long long us;
    char t[40] = "0001-01-01T00:00:00Z";

    if (parse_time_us(json_string_value(JP(obj, "metadata", "creationTimestamp")), &us)) {
        long long secs = us >= 0 ? us / 1000000 : -((-us + 999999) / 1000000);
        time_t tt = (time_t)secs;
        struct tm tm;
        if (gmtime_r(&tt, &tm))
            strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    cell_str(r, t);
}

/* Containers and Images cells of workload templates (layoutContainerCells). */
static void cells_containers(struct row *r, const json_t *obj)
{
    const json_t *cs = JP(obj, "spec", "template", "spec", "containers"), *c;
    struct sbuf names = {0}, images = {0};
    size_t i;

    json_array_foreach(cs, i, c)
    {
        if (i) {
            sb_puts(&names, ",");
            sb_puts(&images, ",");
        }
        sb_puts(&names, jstr(c, "name"));
        sb_puts(&images, jstr(c, "image"));
    }
    cell_sb(r, &names);
    cell_sb(r, &images);
}

/* metav1.LabelSelectorAsSelector(sel).String(), "<invalid>" when it does not convert. */
static void cell_label_selector(struct row *r, const json_t *ls)
{
    struct selector *sel = NULL;
    char msg[8];
    char *s;
    int rc = selector_from_json(ls, &sel, msg, sizeof(msg));

    if (rc == -ENOMEM) {
        r->rc = rc;
        return;
    }
    if (rc) {
        cell_str(r, "<invalid>");
        return;
    }
    s = selector_string(sel);
    selector_free(sel);
    if (!s) {
        r->rc = -ENOMEM;
        return;
    }
    cell_str(r, s);
    free(s);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* labels.FormatLabels: sorted "k=v" joined by ",", "<none>" when empty. */
static void cell_map_labels(struct row *r, const json_t *m)
{
    size_t n = json_object_size(m), i = 0;
    const char **keys = n ? calloc(n, sizeof(*keys)) : NULL;
    const char *k;
    json_t *v;
    struct sbuf s = {0};

    if (n == 0) {
        cell_str(r, "<none>");
        return;
    }
    if (!keys) {
        r->rc = -ENOMEM;
        return;
    }
    json_object_foreach((json_t *)m, k, v) keys[i++] = k;
    qsort(keys, n, sizeof(*keys), cmp_cstr);
    for (i = 0; i < n; i++) {
        if (i)
            sb_puts(&s, ",");
        sb_puts(&s, keys[i]);
        sb_puts(&s, "=");
        sb_puts(&s, str_or(json_object_get(m, keys[i]), ""));
    }
    free(keys);
    cell_sb(r, &s);
}

/* ---- built-in printers ---- */

static const json_t *condition(const json_t *conds, const char *type)
{
    const json_t *c;
    size_t i;

    json_array_foreach(conds, i,
                       c) if (strcmp(str_or(json_object_get(c, "type"), ""), type) == 0) return c;
    return NULL;
}

static bool condition_true(const json_t *conds, const char *type)
{
    return strcmp(str_or(json_object_get(condition(conds, type), "status"), ""), "True") == 0;
}

static bool ready_condition_true(const json_t *conds)
{
    const json_t *c;
    size_t i;

    /* hasPodReadyCondition looks at every Ready condition */
    json_array_foreach(
        conds, i, c) if (!strcmp(str_or(json_object_get(c, "type"), ""), "Ready") &&
                         !strcmp(str_or(json_object_get(c, "status"), ""), "True")) return true;
    return false;
}

static const json_t *init_container(const json_t *pod, const char *name)
{
    const json_t *c;
    size_t i;

    json_array_foreach(JP(pod, "spec", "initContainers"), i,
                       c) if (name &&
                              !strcmp(str_or(json_object_get(c, "name"), ""), name)) return c;
    return NULL;
}

static bool restartable_init(const json_t *c)
{
    return c && !strcmp(str_or(json_object_get(c, "restartPolicy"), ""), "Always");
}

/* Keep the latest lastState.terminated.finishedAt. */
static void note_restart(const json_t *st, long long *last)
{
    long long us;
    const char *fa = json_string_value(JP(st, "lastState", "terminated", "finishedAt"));

    if (fa && parse_time_us(fa, &us) && us > *last)
        *last = us;
}

static void add_condition(struct row *r, const char *reason, const char *message)
{
    json_t *c = json_pack("[{s:s, s:s, s:s, s:s}]", "type", "Completed", "status", "True", "reason",
                          reason, "message", message);
    if (!c) {
        r->rc = -ENOMEM;
        return;
    }
    r->conditions = c;
}

static void print_pod(struct row *r, const json_t *pod, time_t now)
{
    const json_t *status = json_object_get(pod, "status"), *conds, *st, *ic;
    const char *phase = str_or(json_object_get(status, "phase"), "");
    char reason[256], buf[64], t[32];
    long long restarts = 0, init_restarts = 0, last = LLONG_MIN, init_last = LLONG_MIN;
    long long total = (long long)json_array_size(JP(pod, "spec", "containers")), ready = 0;
    bool initializing = false,
         deleting = json_string_length(JP(pod, "metadata", "deletionTimestamp")) > 0;
    size_t i, n;

    conds = json_object_get(status, "conditions");
    snprintf(reason, sizeof(reason), "%s", phase);
    if (str_nonempty(json_object_get(status, "reason")))
        snprintf(reason, sizeof(reason), "%s", jstr(status, "reason"));
    json_array_foreach(
        conds, i, st) if (!strcmp(str_or(json_object_get(st, "type"), ""), "PodScheduled") &&
                          !strcmp(str_or(json_object_get(st, "reason"), ""), "SchedulingGated"))
        snprintf(reason, sizeof(reason), "SchedulingGated");
    if (!strcmp(phase, "Succeeded"))
        add_condition(r, "Succeeded", "The pod has completed successfully.");
    else if (!strcmp(phase, "Failed"))
        add_condition(r, "Failed", "The pod failed.");

    json_array_foreach(JP(pod, "spec", "initContainers"), i, ic) if (restartable_init(ic)) total++;

    n = json_array_size(json_object_get(status, "initContainerStatuses"));
    for (i = 0; i < n; i++) {
        const json_t *term, *wait;
        const char *cname;
        st = json_array_get(json_object_get(status, "initContainerStatuses"), i);
        cname = jstr(st, "name");
        restarts += jint_or(json_object_get(st, "restartCount"), 0);
        note_restart(st, &last);
        if (restartable_init(init_container(pod, cname))) {
            init_restarts += jint_or(json_object_get(st, "restartCount"), 0);
            note_restart(st, &init_last);
        }
        term = JP(st, "state", "terminated");
        wait = JP(st, "state", "waiting");
        if (term && jint_or(json_object_get(term, "exitCode"), 0) == 0)
            continue;
        if (restartable_init(init_container(pod, cname)) &&
            json_is_true(json_object_get(st, "started"))) {
            if (json_is_true(json_object_get(st, "ready")))
                ready++;
            continue;
        }
        if (term) {
            if (!str_nonempty(json_object_get(term, "reason"))) {
                long long sig = jint_or(json_object_get(term, "signal"), 0);
                if (sig)
                    snprintf(reason, sizeof(reason), "Init:Signal:%lld", sig);
                else
                    snprintf(reason, sizeof(reason), "Init:ExitCode:%lld",
                             jint_or(json_object_get(term, "exitCode"), 0));
            } else {
                snprintf(reason, sizeof(reason), "Init:%s", jstr(term, "reason"));
            }
        } else if (wait && str_nonempty(json_object_get(wait, "reason")) &&
                   strcmp(jstr(wait, "reason"), "PodInitializing")) {
            snprintf(reason, sizeof(reason), "Init:%s", jstr(wait, "reason"));
        } else {
            snprintf(reason, sizeof(reason), "Init:%zu/%zu", i,
                     json_array_size(JP(pod, "spec", "initContainers")));
        }
        initializing = true;
        break;
    }

    if (!initializing || condition_true(conds, "Initialized")) {
        const json_t *css = json_object_get(status, "containerStatuses");
        bool has_running = false;
        restarts = init_restarts;
        last = init_last;
        for (i = json_array_size(css); i-- > 0;) {
            const json_t *term, *wait;
            st = json_array_get(css, i);
            restarts += jint_or(json_object_get(st, "restartCount"), 0);
            note_restart(st, &last);
            term = JP(st, "state", "terminated");
            wait = JP(st, "state", "waiting");
            if (wait && str_nonempty(json_object_get(wait, "reason"))) {
                snprintf(reason, sizeof(reason), "%s", jstr(wait, "reason"));
            } else if (term && str_nonempty(json_object_get(term, "reason"))) {
                snprintf(reason, sizeof(reason), "%s", jstr(term, "reason"));
            } else if (term) {
                long long sig = jint_or(json_object_get(term, "signal"), 0);
                if (sig)
                    snprintf(reason, sizeof(reason), "Signal:%lld", sig);
                else
                    snprintf(reason, sizeof(reason), "ExitCode:%lld",
                             jint_or(json_object_get(term, "exitCode"), 0));
            } else if (json_is_true(json_object_get(st, "ready")) && JP(st, "state", "running")) {
                has_running = true;
                ready++;
            }
        }
        if (!strcmp(reason, "Completed") && has_running)
            snprintf(reason, sizeof(reason), "%s",
                     ready_condition_true(conds) ? "Running" : "NotReady");
    }

    if (deleting && !strcmp(str_or(json_object_get(status, "reason"), ""), "NodeLost"))
        snprintf(reason, sizeof(reason), "Unknown");
    else if (deleting && strcmp(phase, "Succeeded") && strcmp(phase, "Failed"))
        snprintf(reason, sizeof(reason), "Terminating");

    cell_name(r, pod);
    snprintf(buf, sizeof(buf), "%lld/%lld", ready, total);
    cell_str(r, buf);
    cell_str(r, reason);
    if (restarts != 0 && last != LLONG_MIN) {
        table_human_duration(((long long)now * 1000000 - last) / 1000000, t, sizeof(t));
        snprintf(buf, sizeof(buf), "%lld (%s ago)", restarts, t);
    } else {
        snprintf(buf, sizeof(buf), "%lld", restarts);
    }
    cell_str(r, buf);
    cell_age(r, pod, now);

    /* wide: IP, Node, Nominated Node, Readiness Gates */
    {
        const char *ip =
            str_nonempty(JP(json_array_get(json_object_get(status, "podIPs"), 0), "ip"));
        const json_t *gates = JP(pod, "spec", "readinessGates"), *g;
        if (!ip)
            ip = str_nonempty(json_object_get(status, "podIP"));
        cell_str(r, ip ? ip : "<none>");
        ip = str_nonempty(JP(pod, "spec", "nodeName"));
        cell_str(r, ip ? ip : "<none>");
        ip = str_nonempty(json_object_get(status, "nominatedNodeName"));
        cell_str(r, ip ? ip : "<none>");
        if (json_array_size(gates) == 0) {
            cell_str(r, "<none>");
        } else {
            long long ok = 0;
            json_array_foreach(gates, i, g)
            {
                const json_t *c = condition(conds, str_or(json_object_get(g, "conditionType"), ""));
                if (c && !strcmp(str_or(json_object_get(c, "status"), ""), "True"))
                    ok++;
            }
            snprintf(buf, sizeof(buf), "%lld/%zu", ok, json_array_size(gates));
            cell_str(r, buf);
        }
    }
}

static int cmp_str_asc(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void print_service(struct row *r, const json_t *svc, time_t now)
{
    const json_t *spec = json_object_get(svc, "spec"), *p,
                 *ext = json_object_get(spec, "externalIPs");
    const char *type = str_or(json_object_get(spec, "type"), "ClusterIP");
    const char *cip = str_nonempty(json_array_get(json_object_get(spec, "clusterIPs"), 0));
    struct sbuf eip = {0}, ports = {0};
    size_t i;

    if (!cip)
        cip = str_nonempty(json_object_get(spec, "clusterIP"));
    /* getServiceExternalIP(wide=true) */
    if (!strcmp(type, "ClusterIP") || !strcmp(type, "NodePort")) {
        json_array_foreach(ext, i, p)
        {
            if (i)
                sb_puts(&eip, ",");
            sb_puts(&eip, json_string_value(p));
        }
        if (!json_array_size(ext))
            sb_puts(&eip, "<none>");
    } else if (!strcmp(type, "LoadBalancer")) {
        const json_t *ing = JP(svc, "status", "loadBalancer", "ingress"), *e;
        size_t n = json_array_size(ing), k = 0;
        const char **lb = calloc(n + 1, sizeof(*lb));
        if (!lb) {
            r->rc = -ENOMEM;
            return;
        }
        json_array_foreach(ing, i, e)
        {
            const char *v = str_nonempty(json_object_get(e, "ip"));
            if (!v)
                v = str_nonempty(json_object_get(e, "hostname"));
            if (v)
                lb[k++] = v;
        }
        qsort(lb, k, sizeof(*lb), cmp_str_asc);
        for (i = 0; i < k; i++) {
            if (i && !strcmp(lb[i], lb[i - 1]))
                continue; /* a set */
            if (eip.b.len)
                sb_puts(&eip, ",");
            sb_puts(&eip, lb[i]);
        }
        free(lb);
        json_array_foreach(ext, i, p)
        {
            if (eip.b.len)
                sb_puts(&eip, ",");
            sb_puts(&eip, json_string_value(p));
        }
        if (!eip.b.len)
            sb_puts(&eip, "<pending>");
    } else if (!strcmp(type, "ExternalName")) {
        sb_puts(&eip, str_or(json_object_get(spec, "externalName"), ""));
    } else {
        sb_puts(&eip, "<unknown>");
    }
    /* makePortString */
    json_array_foreach(json_object_get(spec, "ports"), i, p)
    {
        long long np = jint_or(json_object_get(p, "nodePort"), 0);
        if (i)
            sb_puts(&ports, ",");
        sb_int(&ports, jint_or(json_object_get(p, "port"), 0));
        if (np > 0) {
            sb_puts(&ports, ":");
            sb_int(&ports, np);
        }
        sb_puts(&ports, "/");
        sb_puts(&ports, str_or(json_object_get(p, "protocol"), "TCP"));
    }
    if (!ports.b.len)
        sb_puts(&ports, "<none>");

    cell_name(r, svc);
    cell_str(r, type);
    cell_str(r, cip ? cip : "<none>");
    cell_sb(r, &eip);
    cell_sb(r, &ports);
    cell_age(r, svc, now);
    cell_map_labels(r, json_object_get(spec, "selector"));
}

static void print_deployment(struct row *r, const json_t *d, time_t now)
{
    const json_t *status = json_object_get(d, "status");
    char buf[64];

    cell_name(r, d);
    snprintf(buf, sizeof(buf), "%lld/%lld", jint_or(json_object_get(status, "readyReplicas"), 0),
             jint_or(JP(d, "spec", "replicas"), 1));
    cell_str(r, buf);
    cell_int(r, jint_or(json_object_get(status, "updatedReplicas"), 0));
    cell_int(r, jint_or(json_object_get(status, "availableReplicas"), 0));
    cell_age(r, d, now);
    cells_containers(r, d);
    cell_label_selector(r, JP(d, "spec", "selector"));
}

static void print_replicaset(struct row *r, const json_t *rs, time_t now)
{
    const json_t *status = json_object_get(rs, "status");

    cell_name(r, rs);
    cell_int(r, jint_or(JP(rs, "spec", "replicas"), 1));
    cell_int(r, jint_or(json_object_get(status, "replicas"), 0));
    cell_int(r, jint_or(json_object_get(status, "readyReplicas"), 0));
    cell_age(r, rs, now);
    cells_containers(r, rs);
    cell_label_selector(r, JP(rs, "spec", "selector"));
}

static void print_namespace(struct row *r, const json_t *ns, time_t now)
{
    cell_name(r, ns);
    cell_str(r, str_or(JP(ns, "status", "phase"), "Active"));
    cell_age(r, ns, now);
}

static void print_configmap(struct row *r, const json_t *cm, time_t now)
{
    cell_name(r, cm);
    cell_int(r, (long long)(json_object_size(json_object_get(cm, "data")) +
                            json_object_size(json_object_get(cm, "binaryData"))));
    cell_age(r, cm, now);
}

static void print_secret(struct row *r, const json_t *s, time_t now)
{
    const json_t *data = json_object_get(s, "data"), *v;
    long long n = (long long)json_object_size(data);
    const char *k;

    /* stringData is merged into data on write; count keys a stored object kept apart */
    json_object_foreach(json_object_get(s, "stringData"), k, v) if (!json_object_get(data, k)) n++;
    cell_name(r, s);
    cell_str(r, str_or(json_object_get(s, "type"), "Opaque"));
    cell_int(r, n);
    cell_age(r, s, now);
}

static void print_serviceaccount(struct row *r, const json_t *sa, time_t now)
{
    cell_name(r, sa);
    cell_int(r, (long long)json_array_size(json_object_get(sa, "secrets")));
    cell_age(r, sa, now);
}

/* listWithMoreString */
static void more_string(struct sbuf *s, size_t shown, size_t count)
{
    if (count > 3) {
        sb_puts(s, " + ");
        sb_int(s, (long long)(count - 3));
        sb_puts(s, " more...");
    } else if (!shown) {
        sb_puts(s, "<unset>");
    }
}

static void print_endpointslice(struct row *r, const json_t *es, time_t now)
{
    struct sbuf ports = {0}, eps = {0};
    const json_t *p, *e, *a;
    size_t i, j, shown = 0, count = 0;

    json_array_foreach(json_object_get(es, "ports"), i, p)
    {
        if (shown < 3) {
            const json_t *port = json_object_get(p, "port");
            if (shown++)
                sb_puts(&ports, ",");
            if (json_is_integer(port))
                sb_int(&ports, (long long)json_integer_value(port));
            else if (json_is_string(json_object_get(p, "name")))
                sb_puts(&ports, jstr(p, "name"));
            else
                sb_puts(&ports, "*");
        }
        count++;
    }
    more_string(&ports, shown, count);
    shown = count = 0;
    json_array_foreach(json_object_get(es, "endpoints"), i, e)
    {
        json_array_foreach(json_object_get(e, "addresses"), j, a)
        {
            if (shown < 3) {
                if (shown++)
                    sb_puts(&eps, ",");
                sb_puts(&eps, json_string_value(a));
            }
            count++;
        }
    }
    more_string(&eps, shown, count);
    cell_name(r, es);
    cell_str(r, str_or(json_object_get(es, "addressType"), ""));
    cell_sb(r, &ports);
    cell_sb(r, &eps);
    cell_age(r, es, now);
}

/* An Event field under its core/v1 name or its events.k8s.io/v1 name. */
static const json_t *ev_get(const json_t *ev, const char *core, const char *v1)
{
    const json_t *v = json_object_get(ev, core);
    return v ? v : (v1 ? json_object_get(ev, v1) : NULL);
}

static void print_event(struct row *r, const json_t *ev, time_t now)
{
    const json_t *inv = ev_get(ev, "involvedObject", "regarding");
    const json_t *src = ev_get(ev, "source", "deprecatedSource"),
                 *series = ev_get(ev, "series", NULL);
    const char *kind = str_or(json_object_get(inv, "kind"), "");
    const char *name = str_or(json_object_get(inv, "name"), "");
    const char *msg = str_or(ev_get(ev, "message", "note"), ""), *comp, *inst;
    char first[32], lastseen[32];
    struct sbuf target = {0}, source = {0}, message = {0};
    long long count = jint_or(ev_get(ev, "count", "deprecatedCount"), 0);
    size_t mlen;

    if (str_nonempty(ev_get(ev, "firstTimestamp", "deprecatedFirstTimestamp")))
        since(ev_get(ev, "firstTimestamp", "deprecatedFirstTimestamp"), now, first, sizeof(first));
    else
        since(json_object_get(ev, "eventTime"), now, first, sizeof(first));
    if (str_nonempty(ev_get(ev, "lastTimestamp", "deprecatedLastTimestamp")))
        since(ev_get(ev, "lastTimestamp", "deprecatedLastTimestamp"), now, lastseen,
              sizeof(lastseen));
    else
        snprintf(lastseen, sizeof(lastseen), "%s", first);
    if (json_is_object(series)) {
        since(json_object_get(series, "lastObservedTime"), now, lastseen, sizeof(lastseen));
        count = jint_or(json_object_get(series, "count"), 0);
    } else if (count == 0) {
        count = 1;
    }
    for (const char *c = kind; *c; c++) {
        char lc = (char)tolower((unsigned char)*c);
        sb_put(&target, &lc, 1);
    }
    if (*name) {
        sb_puts(&target, "/");
        sb_puts(&target, name);
    }
    comp = str_nonempty(json_object_get(src, "component"));
    if (!comp)
        comp = str_or(ev_get(ev, "reportingComponent", "reportingController"), "");
    inst = str_nonempty(json_object_get(src, "host"));
    if (!inst)
        inst = str_or(json_object_get(ev, "reportingInstance"), "");
    sb_puts(&source, comp);
    if (*inst) {
        sb_puts(&source, ", ");
        sb_puts(&source, inst);
    }
    /* strings.TrimSpace */
    while (isspace((unsigned char)*msg))
        msg++;
    mlen = strlen(msg);
    while (mlen && isspace((unsigned char)msg[mlen - 1]))
        mlen--;
    sb_put(&message, msg, mlen);

    cell_str(r, lastseen);
    cell_str(r, str_or(json_object_get(ev, "type"), ""));
    cell_str(r, str_or(json_object_get(ev, "reason"), ""));
    cell_sb(r, &target);
    cell_str(r, str_or(json_object_get(inv, "fieldPath"), ""));
    cell_sb(r, &source);
    cell_sb(r, &message);
    cell_str(r, first);
    cell_int(r, count);
    cell_name(r, ev);
}

static void print_lease(struct row *r, const json_t *l, time_t now)
{
    cell_name(r, l);
    cell_str(r, str_or(JP(l, "spec", "holderIdentity"), ""));
    cell_age(r, l, now);
}

static void print_webhookconfig(struct row *r, const json_t *w, time_t now)
{
    cell_name(r, w);
    cell_int(r, (long long)json_array_size(json_object_get(w, "webhooks")));
    cell_age(r, w, now);
}

static void print_rolebinding(struct row *r, const json_t *rb, time_t now)
{
    const json_t *ref = json_object_get(rb, "roleRef"), *s;
    struct sbuf role = {0}, users = {0}, groups = {0}, sas = {0};
    size_t i;

    sb_puts(&role, str_or(json_object_get(ref, "kind"), ""));
    sb_puts(&role, "/");
    sb_puts(&role, str_or(json_object_get(ref, "name"), ""));
    /* rbac.SubjectsStrings */
    json_array_foreach(json_object_get(rb, "subjects"), i, s)
    {
        const char *kind = str_or(json_object_get(s, "kind"), "");
        struct sbuf *to = NULL;
        if (!strcmp(kind, "User"))
            to = &users;
        else if (!strcmp(kind, "Group"))
            to = &groups;
        else if (!strcmp(kind, "ServiceAccount"))
            to = &sas;
        if (!to)
            continue;
        if (to->b.len)
            sb_puts(to, ", ");
        if (to == &sas) {
            sb_puts(to, str_or(json_object_get(s, "namespace"), ""));
            sb_puts(to, "/");
        }
        sb_puts(to, str_or(json_object_get(s, "name"), ""));
    }
    cell_name(r, rb);
    cell_sb(r, &role);
    cell_age(r, rb, now);
    cell_sb(r, &users);
    cell_sb(r, &groups);
    cell_sb(r, &sas);
}

/* ---- column definitions ---- */

struct coldef {
    const char *name, *type, *format, *desc;
    int priority;
};

#define DESC_NAME                                                                                  \
    "Name must be unique within a namespace. Is required when creating resources, although some "  \
    "resources may allow a client to request the generation of an appropriate name "               \
    "automatically. Name is primarily intended for creation idempotence and configuration "        \
    "definition. Cannot be updated. More info: "                                                   \
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
#define DESC_AGE                                                                                   \
    "CreationTimestamp is a timestamp representing the server time when this object was "          \
    "created. It is not guaranteed to be set in happens-before order across separate "             \
    "operations. Clients may not set this value. It is represented in RFC3339 form and is in "     \
    "UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: "                      \
    "https://git.k8s.io/community/contributors/devel/sig-architecture/"                            \
    "api-conventions.md#metadata"
#define COL_NAME                                                                                   \
    {                                                                                              \
        "Name", "string", "name", DESC_NAME, 0                                                     \
    }
#define COL_AGE                                                                                    \
    {                                                                                              \
        "Age", "string", "", DESC_AGE, 0                                                           \
    }
#define COL_CONTAINERS                                                                             \
    {"Containers", "string", "", "Names of each container in the template.", 1},                   \
    {                                                                                              \
        "Images", "string", "", "Images referenced by each container in the template.", 1          \
    }

static const struct coldef pod_cols[] = {
    COL_NAME,
    {"Ready", "string", "", "The aggregate readiness state of this pod for accepting traffic.", 0},
    {"Status", "string", "", "The aggregate status of the containers in this pod.", 0},
    {"Restarts", "string", "",
     "The number of times the containers in this pod have been restarted and when the last "
     "container in this pod has restarted.",
     0},
    COL_AGE,
    {"IP", "string", "",
     "podIP address allocated to the pod. Routable at least within the cluster. Empty if not "
     "yet allocated.",
     1},
    {"Node", "string", "", "NodeName indicates in which node this pod is scheduled.", 1},
    {"Nominated Node", "string", "",
     "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot "
     "be scheduled right away as preemption victims receive their graceful termination periods.",
     1},
    {"Readiness Gates", "string", "",
     "If specified, all readiness gates will be evaluated for pod readiness.", 1},
};

static const struct coldef service_cols[] = {
    COL_NAME,
    {"Type", "string", "", "type determines how the Service is exposed. Defaults to ClusterIP.", 0},
    {"Cluster-IP", "string", "",
     "clusterIP is the IP address of the service and is usually assigned randomly.", 0},
    {"External-IP", "string", "",
     "externalIPs is a list of IP addresses for which nodes in the cluster will also accept "
     "traffic for this service.",
     0},
    {"Port(s)", "string", "", "The list of ports that are exposed by this service.", 0},
    COL_AGE,
    {"Selector", "string", "",
     "Route service traffic to pods with label keys and values matching this selector.", 1},
};

static const struct coldef deployment_cols[] = {
    COL_NAME,
    {"Ready", "string", "", "Number of the pod with ready state", 0},
    {"Up-to-date", "string", "",
     "Total number of non-terminating pods targeted by this deployment that have the desired "
     "template spec.",
     0},
    {"Available", "string", "",
     "Total number of available non-terminating pods (ready for at least minReadySeconds) "
     "targeted by this deployment.",
     0},
    COL_AGE,
    COL_CONTAINERS,
    {"Selector", "string", "", "Label selector for pods.", 1},
};

static const struct coldef replicaset_cols[] = {
    COL_NAME,
    {"Desired", "integer", "", "Replicas is the number of desired pods.", 0},
    {"Current", "integer", "",
     "Replicas is the most recently observed number of non-terminating "
     "pods.",
     0},
    {"Ready", "integer", "",
     "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.", 0},
    COL_AGE,
    COL_CONTAINERS,
    {"Selector", "string", "",
     "Selector is a label query over pods that should match the "
     "replica count.",
     1},
};

static const struct coldef namespace_cols[] = {
    COL_NAME,
    {"Status", "string", "", "The status of the namespace", 0},
    COL_AGE,
};

static const struct coldef configmap_cols[] = {
    COL_NAME,
    {"Data", "string", "", "Data contains the configuration data.", 0},
    COL_AGE,
};

static const struct coldef secret_cols[] = {
    COL_NAME,
    {"Type", "string", "", "Used to facilitate programmatic handling of secret data.", 0},
    {"Data", "string", "", "Data contains the secret data.", 0},
    COL_AGE,
};

static const struct coldef serviceaccount_cols[] = {
    COL_NAME,
    {"Secrets", "string", "",
     "Secrets is a list of the secrets in the same namespace that pods running using this "
     "ServiceAccount are allowed to use.",
     0},
    COL_AGE,
};

static const struct coldef endpointslice_cols[] = {
    COL_NAME,
    {"AddressType", "string", "",
     "addressType specifies the type of address carried by this EndpointSlice.", 0},
    {"Ports", "string", "",
     "ports specifies the list of network ports exposed by each endpoint "
     "in this slice.",
     0},
    {"Endpoints", "string", "", "endpoints is a list of unique endpoints in this slice.", 0},
    COL_AGE,
};

static const struct coldef event_cols[] = {
    {"Last Seen", "string", "",
     "The time at which the most recent occurrence of this event was recorded.", 0},
    {"Type", "string", "",
     "Type of this event (Normal, Warning), new types could be added in the future", 0},
    {"Reason", "string", "",
     "This should be a short, machine understandable string that gives the reason for the "
     "transition into the object's current status.",
     0},
    {"Object", "string", "", "The object that this event is about.", 0},
    {"Subobject", "string", "",
     "If referring to a piece of an object instead of an entire object, this string should "
     "contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2].",
     1},
    {"Source", "string", "",
     "The component reporting this event. Should be a short machine understandable string.", 1},
    {"Message", "string", "", "A human-readable description of the status of this operation.", 0},
    {"First Seen", "string", "",
     "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", 1},
    {"Count", "string", "", "The number of times this event has occurred.", 1},
    {"Name", "string", "name", DESC_NAME, 1},
};

static const struct coldef lease_cols[] = {
    COL_NAME,
    {"Holder", "string", "",
     "holderIdentity contains the identity of the holder of a current lease.", 0},
    COL_AGE,
};

static const struct coldef webhook_cols[] = {
    COL_NAME,
    {"Webhooks", "integer", "",
     "Webhooks indicates the number of webhooks registered in this configuration", 0},
    COL_AGE,
};

static const struct coldef rolebinding_cols[] = {
    COL_NAME,
    {"Role", "string", "",
     "RoleRef can reference a Role in the current namespace or a "
     "ClusterRole in the global namespace.",
     0},
    COL_AGE,
    {"Users", "string", "", "Users in the roleBinding", 1},
    {"Groups", "string", "", "Groups in the roleBinding", 1},
    {"ServiceAccounts", "string", "", "ServiceAccounts in the roleBinding", 1},
};

static const struct coldef clusterrolebinding_cols[] = {
    COL_NAME,
    {"Role", "string", "", "RoleRef can only reference a ClusterRole in the global namespace.", 0},
    COL_AGE,
    {"Users", "string", "", "Users in the clusterRoleBinding", 1},
    {"Groups", "string", "", "Groups in the clusterRoleBinding", 1},
    {"ServiceAccounts", "string", "", "ServiceAccounts in the clusterRoleBinding", 1},
};

static const struct coldef default_cols[] = {
    COL_NAME,
    {"Created At", "date", "", DESC_AGE, 0},
};

typedef void row_fn(struct row *r, const json_t *obj, time_t now);

struct printer {
    const char *group, *resource;
    const struct coldef *cols;
    size_t ncols;
    row_fn *row;
};

#define PRINTER(g, r, c, f)                                                                        \
    {                                                                                              \
        g, r, c, ARRAY_LEN(c), f                                                                   \
    }
static const struct printer printers[] = {
    PRINTER("", "pods", pod_cols, print_pod),
    PRINTER("", "services", service_cols, print_service),
    PRINTER("apps", "deployments", deployment_cols, print_deployment),
    PRINTER("apps", "replicasets", replicaset_cols, print_replicaset),
    PRINTER("", "namespaces", namespace_cols, print_namespace),
    PRINTER("", "configmaps", configmap_cols, print_configmap),
    PRINTER("", "secrets", secret_cols, print_secret),
    PRINTER("", "serviceaccounts", serviceaccount_cols, print_serviceaccount),
    PRINTER("discovery.k8s.io", "endpointslices", endpointslice_cols, print_endpointslice),
    PRINTER("", "events", event_cols, print_event),
    PRINTER("events.k8s.io", "events", event_cols, print_event),
    PRINTER("coordination.k8s.io", "leases", lease_cols, print_lease),
    PRINTER("admissionregistration.k8s.io", "mutatingwebhookconfigurations", webhook_cols,
            print_webhookconfig),
    PRINTER("admissionregistration.k8s.io", "validatingwebhookconfigurations", webhook_cols,
            print_webhookconfig),
    PRINTER("rbac.authorization.k8s.io", "rolebindings", rolebinding_cols, print_rolebinding),
    PRINTER("rbac.authorization.k8s.io", "clusterrolebindings", clusterrolebinding_cols,
            print_rolebinding),
};
#undef PRINTER

static const struct printer *printer_for(const char *group, const char *resource)
{
    for (size_t i = 0; resource && i < ARRAY_LEN(printers); i++)
        if (!strcmp(printers[i].group, group) && !strcmp(printers[i].resource, resource))
            return &printers[i];
    return NULL;
}

/* Groups kube serves itself; anything else is a custom resource. */
static bool builtin_group(const char *g)
{
    size_t n = strlen(g);
    static const char *const plain[] = {"", "apps", "batch", "autoscaling", "policy"};

    for (size_t i = 0; i < ARRAY_LEN(plain); i++)
        if (!strcmp(g, plain[i]))
            return true;
    return n > 7 && !strcmp(g + n - 7, ".k8s.io");
}

static json_t *coldef_json(const char *name, const char *type, const char *format, const char *desc,
                           json_int_t priority)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:I}", "name", name, "type", type, "format", format,
                     "description", desc, "priority", priority);
}

/* ---- custom resource cells (apiextensions tableconvertor) ---- */

/* Go's %v for a float64: shortest round-trip digits, %e form below 1e-4 or from 1e6. */
static void go_float(double v, char *out, size_t n)
{
    char tmp[40];
    int p, exp;

    for (p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    exp = atoi(strchr(tmp, 'e') + 1);
    if (exp < -4 || exp >= 6)
        snprintf(out, n, "%s", tmp);
    else
        snprintf(out, n, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, v);
}

static void cr_cell(struct row *r, const json_t *obj, const json_t *col, time_t now)
{
    const char *type = str_or(json_object_get(col, "type"), "");
    struct nodes res = {0};
    const json_t *v;
    char t[64];
    int rc = jp_find(obj, jstr(col, "jsonPath"), &res);

    if (rc == -ENOMEM) {
        r->rc = rc;
        goto out;
    }
    if (rc || res.n == 0) {
        cell(r, json_null());
        goto out;
    }
    /* kube uses the first result only */
    v = res.v[0];
    if (!strcmp(type, "string")) {
        if (json_is_string(v)) {
            cell_str(r, json_string_value(v));
        } else if (json_is_null(v)) {
            cell_str(r, "<no value>");
        } else if (json_is_integer(v)) {
            snprintf(t, sizeof(t), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            cell_str(r, t);
        } else if (json_is_real(v)) {
            go_float(json_real_value(v), t, sizeof(t));
            cell_str(r, t);
        } else if (json_is_boolean(v)) {
            cell_str(r, json_is_true(v) ? "true" : "false");
        } else {
            /* maps and lists print as JSON (json.Marshal sorts keys) */
            char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
            if (!s) {
                r->rc = -ENOMEM;
                goto out;
            }
            cell_str(r, s);
            free(s);
        }
    } else if (!strcmp(type, "integer") && json_is_number(v)) {
        cell_int(r, jint_or(v, 0));
    } else if (!strcmp(type, "number") && json_is_number(v)) {
        cell(r, json_real(json_number_value(v)));
    } else if (!strcmp(type, "boolean") && json_is_boolean(v)) {
        cell(r, json_boolean(json_is_true(v)));
    } else if (!strcmp(type, "date") && json_is_string(v)) {
        long long us;
        const char *s = json_string_value(v);
        if (!*s || !strcmp(s, "null"))
            cell_str(r, "<unknown>");
        else if (!parse_time_us(s, &us))
            cell_str(r, "<invalid>");
        else {
            table_human_duration(((long long)now * 1000000 - us) / 1000000, t, sizeof(t));
            cell_str(r, t);
        }
    } else {
        cell(r, json_null());
    }
out:
    free(res.v);
}

/* ---- the table ---- */

/* The row's object for includeObject=Object, or else PartialObjectMetadata. */
static json_t *row_object(const json_t *item, const char *include)
{
    json_t *md = json_object_get(item, "metadata");

    if (include && !strcmp(include, "Object"))
        return json_incref((json_t *)item);
    return json_pack("{s:s, s:s, s:o}", "kind", "PartialObjectMetadata", "apiVersion",
                     "meta.k8s.io/v1", "metadata", md ? json_incref(md) : json_object());
}

json_t *table_build(const char *group, const char *resource, const json_t *printer_columns,
                    const json_t *items, const json_t *list_meta, const char *include_object,
                    time_t now)
{
    const struct printer *pr = printer_for(group ? group : "", resource);
    json_t *table = NULL, *cols = NULL, *rows = NULL, *crcols = NULL, *meta = NULL;
    bool custom = false;
    const json_t *item;
    size_t i;
    int rc = 0;

    if (!group)
        group = "";
    cols = json_array();
    rows = json_array();
    meta = list_meta ? json_deep_copy(list_meta) : json_object();
    if (!cols || !rows || !meta)
        goto fail;

    if (!pr && (json_is_array(printer_columns) || !builtin_group(group))) {
        /* custom resource: Name, then the printer columns (default: Age over creationTimestamp) */
        custom = true;
        if (json_array_size(printer_columns)) {
            crcols = json_incref((json_t *)printer_columns);
        } else {
            crcols = json_pack("[{s:s, s:s, s:s, s:s}]", "name", "Age", "type", "date",
                               "description", DESC_AGE, "jsonPath", ".metadata.creationTimestamp");
            if (!crcols)
                goto fail;
        }
        if (json_array_append_new(cols, coldef_json("Name", "string", "name", DESC_NAME, 0)))
            goto fail;
        json_array_foreach(crcols, i, item)
        {
            const char *jp = str_or(json_object_get(item, "jsonPath"), "");
            const char *desc = str_nonempty(json_object_get(item, "description"));
            char *d = NULL;
            json_t *c;
            if (!desc) {
                size_t n = strlen(jp) + 64;
                d = malloc(n);
                if (!d)
                    goto fail;
                snprintf(d, n, "Custom resource definition column (in JSONPath format): %s", jp);
            }
            c = coldef_json(str_or(json_object_get(item, "name"), ""),
                            str_or(json_object_get(item, "type"), ""),
                            str_or(json_object_get(item, "format"), ""), desc ? desc : d,
                            json_integer_value(json_object_get(item, "priority")));
            free(d);
            if (json_array_append_new(cols, c))
                goto fail;
        }
    } else {
        const struct coldef *cd = pr ? pr->cols : default_cols;
        size_t n = pr ? pr->ncols : ARRAY_LEN(default_cols);
        for (i = 0; i < n; i++)
            if (json_array_append_new(cols, coldef_json(cd[i].name, cd[i].type, cd[i].format,
                                                        cd[i].desc, cd[i].priority)))
                goto fail;
    }

    json_array_foreach(items, i, item)
    {
        struct row r = {json_array(), NULL, 0};
        json_t *row = NULL, *o;
        const json_t *c;
        size_t j;

        if (!r.cells)
            goto fail;
        if (custom) {
            cell_name(&r, item);
            json_array_foreach(crcols, j, c) cr_cell(&r, item, c, now);
        } else if (pr) {
            pr->row(&r, item, now);
        } else {
            cell_name(&r, item);
            cell_created_at(&r, item);
        }
        if (!r.rc)
            row = json_pack("{s:o}", "cells", r.cells);
        else
            json_decref(r.cells);
        if (row && r.conditions && json_object_set_new(row, "conditions", r.conditions))
            r.rc = -ENOMEM;
        else if (!row)
            json_decref(r.conditions);
        if (!row || r.rc) {
            json_decref(row);
            goto fail;
        }
        o = NULL;
        if (!include_object || strcmp(include_object, "None")) {
            o = row_object(item, include_object);
            if (!o || json_object_set_new(row, "object", o)) {
                json_decref(row);
                goto fail;
            }
        }
        if (json_array_append_new(rows, row))
            goto fail;
    }

    table = json_pack("{s:s, s:s, s:o, s:o, s:o}", "kind", "Table", "apiVersion", "meta.k8s.io/v1",
                      "metadata", meta, "columnDefinitions", cols, "rows", rows);
    meta = cols = rows = NULL; /* consumed by json_pack, even on failure */
    if (!table)
        rc = -ENOMEM;
    goto out;
fail:
    rc = -ENOMEM;
out:
    (void)rc;
    json_decref(crcols);
    json_decref(meta);
    json_decref(cols);
    json_decref(rows);
    return table;
}
