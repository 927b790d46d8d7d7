/*
 * selector.c - label and field selectors with the grammar, matching rules and error texts of
 * k8s.io/apimachinery/pkg/labels (Parse, NewRequirement), pkg/fields (ParseSelector) and
 * metav1.LabelSelectorAsSelector.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/selector.h"

enum sel_op {
    OP_EQ,     /* "=" */
    OP_DEQ,    /* "==" */
    OP_NEQ,    /* "!=" */
    OP_IN,     /* "in" */
    OP_NOTIN,  /* "notin" */
    OP_EXISTS, /* "exists" */
    OP_NOTEX,  /* "!" */
    OP_GT,     /* "gt" */
    OP_LT,     /* "lt" */
};

struct field_def;

struct sel_req {
    char *key;
    enum sel_op op;
    char **vals;
    size_t nvals;
    const struct field_def *field; /* field selectors only */
};

struct selector {
    bool fields;
    struct sel_req *reqs;
    size_t n, cap;
};

/* ---- message building: a buf with a sticky error ---- */

struct mbuf {
    struct buf b;
    int rc;
};

static void mb_put(struct mbuf *m, const char *s, size_t n)
{
    if (!m->rc)
        m->rc = buf_append(&m->b, s, n);
}

static void mb_puts(struct mbuf *m, const char *s)
{
    mb_put(m, s, strlen(s));
}

/* Go's %q (strconv.Quote) for the bytes of s; non-ASCII bytes pass through. */
static void mb_quote(struct mbuf *m, const char *s, size_t n)
{
    char esc[8];

    mb_puts(m, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            mb_puts(m, "\\\"");
            break;
        case '\\':
            mb_puts(m, "\\\\");
            break;
        case '\n':
            mb_puts(m, "\\n");
            break;
        case '\t':
            mb_puts(m, "\\t");
            break;
        case '\r':
            mb_puts(m, "\\r");
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(esc, sizeof(esc), "\\x%02x", c);
                mb_puts(m, esc);
            } else {
                mb_put(m, (const char *)&s[i], 1);
            }
        }
    }
    mb_puts(m, "\"");
}

/* Copy the message into the caller's msg (truncating) and release the buffer. */
static void mb_finish(struct mbuf *m, char *msg, size_t msglen)
{
    if (msg && msglen)
        snprintf(msg, msglen, "%s", m->rc ? "out of memory" : (m->b.p ? m->b.p : ""));
    buf_release(&m->b);
}

static void set_msg(char *msg, size_t msglen, const char *text)
{
    if (msg && msglen)
        snprintf(msg, msglen, "%s", text);
}

/* ---- k8s.io/apimachinery/pkg/util/validation ---- */

#define QNAME_FMT "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
#define QNAME_ERR                                                                                  \
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "    \
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "         \
    "validation is '" QNAME_FMT "')"
#define DNS1123_SUB_ERR                                                                            \
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "   \
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "  \
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
#define LABEL_VALUE_ERR                                                                            \
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "    \
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "             \
    "'my_value',  or '12345', regex used for validation is '(" QNAME_FMT ")?')"

static bool is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool qname_match(const char *s, size_t n)
{
    if (n == 0 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
        return false;
    for (size_t i = 1; i + 1 < n; i++)
        if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

static bool dns_label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool dns1123_subdomain_match(const char *s, size_t n)
{
    size_t start = 0;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.')
            continue;
        /* label s[start, i) */
        if (i == start || !dns_label_char(s[start]) || !dns_label_char(s[i - 1]))
            return false;
        for (size_t j = start; j < i; j++)
            if (!dns_label_char(s[j]) && s[j] != '-')
                return false;
        start = i + 1;
    }
    return true;
}

/* Append validation.IsQualifiedName's messages joined by "; "; returns how many. */
static int qualified_name_errs(struct mbuf *m, const char *k, size_t n)
{
    const char *slash = memchr(k, '/', n), *name = k;
    size_t name_len = n;
    int count = 0;

    if (slash && memchr(slash + 1, '/', n - (size_t)(slash + 1 - k))) {
        mb_puts(m, "a qualified name " QNAME_ERR " with an optional DNS subdomain prefix and '/' "
                   "(e.g. 'example.com/MyName')");
        return 1;
    }
    if (slash) {
        size_t plen = (size_t)(slash - k);
        name = slash + 1;
        name_len = n - plen - 1;
        if (plen == 0) {
            mb_puts(m, "prefix part must be non-empty");
            count++;
        } else {
            if (plen > 253) {
                mb_puts(m, "prefix part must be no more than 253 characters");
                count++;
            }
            if (!dns1123_subdomain_match(k, plen)) {
                mb_puts(m,
                        count ? "; prefix part " DNS1123_SUB_ERR : "prefix part " DNS1123_SUB_ERR);
                count++;
            }
        }
    }
    if (name_len == 0) {
        mb_puts(m, count ? "; name part must be non-empty" : "name part must be non-empty");
        count++;
    } else if (name_len > 63) {
        mb_puts(m, count ? "; name part must be no more than 63 characters"
                         : "name part must be no more than 63 characters");
        count++;
    }
    if (!qname_match(name, name_len)) {
        mb_puts(m, count ? "; name part " QNAME_ERR : "name part " QNAME_ERR);
        count++;
    }
    return count;
}

static int label_value_errs(struct mbuf *m, const char *v, size_t n)
{
    int count = 0;

    if (n > 63) {
        mb_puts(m, "must be no more than 63 characters");
        count++;
    }
    if (n > 0 && !qname_match(v, n)) {
        mb_puts(m, count ? "; " LABEL_VALUE_ERR : LABEL_VALUE_ERR);
        count++;
    }
    return count;
}

/* strconv.ParseInt(s, 10, 64) */
static bool parse_int64(const char *s, long long *out)
{
    unsigned long long v = 0, lim = (unsigned long long)INT64_MAX;
    bool neg = false;

    if (*s == '+' || *s == '-')
        neg = *s++ == '-';
    if (!*s)
        return false;
    if (neg)
        lim++;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (v > (lim - (unsigned long long)(*s - '0')) / 10)
            return false;
        v = v * 10 + (unsigned long long)(*s - '0');
    }
    *out = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

/* ---- selector storage ---- */

static void req_release(struct sel_req *r)
{
    for (size_t i = 0; i < r->nvals; i++)
        free(r->vals[i]);
    free(r->vals);
    free(r->key);
}

void selector_free(struct selector *sel)
{
    if (!sel)
        return;
    for (size_t i = 0; i < sel->n; i++)
        req_release(&sel->reqs[i]);
    free(sel->reqs);
    free(sel);
}

/* Append r (consumed, even on failure). */
static int sel_add(struct selector *sel, struct sel_req *r)
{
    if (sel->n == sel->cap) {
        size_t cap = sel->cap ? sel->cap * 2 : 4;
        struct sel_req *p = realloc(sel->reqs, cap * sizeof(*p));
        if (!p) {
            req_release(r);
            return -ENOMEM;
        }
        sel->reqs = p;
        sel->cap = cap;
    }
    sel->reqs[sel->n++] = *r;
    memset(r, 0, sizeof(*r));
    return 0;
}

/* Stable insertion sort by key (sort.Sort(ByKey)); selectors are short. */
static void sel_sort(struct selector *sel)
{
    for (size_t i = 1; i < sel->n; i++) {
        struct sel_req r = sel->reqs[i];
        size_t j = i;
        while (j > 0 && strcmp(sel->reqs[j - 1].key, r.key) > 0) {
            sel->reqs[j] = sel->reqs[j - 1];
            j--;
        }
        sel->reqs[j] = r;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * NewRequirement: validate and build. vals are copied. The field paths are those of a nil
 * base path ("key", "values[i][key]"), as both callers in kube pass none.
 */
static int req_new(const char *key, enum sel_op op, const char *const *vals, size_t nvals,
                   bool dedupe, struct sel_req *out, char *msg, size_t msglen)
{
    struct mbuf errs[8];
    size_t nerr = 0, cap = ARRAY_LEN(errs);
    struct sel_req r = {0};
    struct mbuf m = {0};
    int rc = 0;

    memset(errs, 0, sizeof(errs));
#define NEXT_ERR() (nerr < cap ? &errs[nerr++] : &errs[cap - 1])
    {
        struct mbuf t = {0};
        if (qualified_name_errs(&t, key, strlen(key)) > 0) {
            struct mbuf *e = NEXT_ERR();
            mb_puts(e, "key: Invalid value: ");
            mb_quote(e, key, strlen(key));
            mb_puts(e, ": ");
            mb_put(e, t.b.p ? t.b.p : "", t.b.len);
            if (t.rc)
                e->rc = t.rc;
        }
        buf_release(&t.b);
    }
    switch (op) {
    case OP_IN:
    case OP_NOTIN:
        if (nvals == 0)
            mb_puts(NEXT_ERR(), "values: Invalid value: []string(nil): for 'in', 'notin' "
                                "operators, values set can't be empty");
        break;
    case OP_EQ:
    case OP_DEQ:
    case OP_NEQ:
    case OP_EXISTS:
    case OP_NOTEX:
    case OP_GT:
    case OP_LT:
        if ((op == OP_EXISTS || op == OP_NOTEX) ? nvals != 0 : nvals != 1) {
            struct mbuf *e = NEXT_ERR();
            mb_puts(e, "values: Invalid value: ");
            if (nvals == 0) {
                mb_puts(e, "[]string(nil)");
            } else {
                mb_puts(e, "[]string{");
                for (size_t i = 0; i < nvals; i++) {
                    if (i)
                        mb_puts(e, ", ");
                    mb_quote(e, vals[i], strlen(vals[i]));
                }
                mb_puts(e, "}");
            }
            if (op == OP_EXISTS || op == OP_NOTEX)
                mb_puts(e, ": values set must be empty for exists and does not exist");
            else if (op == OP_GT || op == OP_LT)
                mb_puts(e, ": for 'Gt', 'Lt' operators, exactly one value is required");
            else
                mb_puts(e, ": exact-match compatibility requires one single value");
        }
        if (op == OP_GT || op == OP_LT) {
            for (size_t i = 0; i < nvals; i++) {
                long long v;
                char idx[32];
                if (parse_int64(vals[i], &v))
                    continue;
                struct mbuf *e = NEXT_ERR();
                snprintf(idx, sizeof(idx), "values[%zu]", i);
                mb_puts(e, idx);
                mb_puts(e, ": Invalid value: ");
                mb_quote(e, vals[i], strlen(vals[i]));
                mb_puts(e, ": for 'Gt', 'Lt' operators, the value must be an integer");
            }
        }
        break;
    }
    for (size_t i = 0; i < nvals; i++) {
        struct mbuf t = {0};
        char idx[32];
        if (label_value_errs(&t, vals[i], strlen(vals[i])) > 0) {
            struct mbuf *e = NEXT_ERR();
            snprintf(idx, sizeof(idx), "values[%zu][", i);
            mb_puts(e, idx);
            mb_puts(e, key);
            mb_puts(e, "]: Invalid value: ");
            mb_quote(e, vals[i], strlen(vals[i]));
            mb_puts(e, ": ");
            mb_put(e, t.b.p ? t.b.p : "", t.b.len);
            if (t.rc)
                e->rc = t.rc;
        }
        buf_release(&t.b);
    }
#undef NEXT_ERR
    for (size_t i = 0; i < nerr; i++)
        if (errs[i].rc) {
            rc = -ENOMEM;
            goto out;
        }
    if (nerr) {
        /* utilerrors aggregate: one error plain, several "[a, b]" without duplicates */
        size_t shown = 0;
        for (size_t i = 0; i < nerr; i++) {
            bool dup = false;
            for (size_t j = 0; j < i && !dup; j++)
                dup = strcmp(errs[i].b.p, errs[j].b.p) == 0;
            if (dup)
                continue;
            if (shown++)
                mb_puts(&m, ", ");
            mb_puts(&m, errs[i].b.p);
        }
        if (shown > 1) {
            struct mbuf w = {0};
            mb_puts(&w, "[");
            mb_put(&w, m.b.p, m.b.len);
            mb_puts(&w, "]");
            if (m.rc)
                w.rc = m.rc;
            buf_release(&m.b);
            m = w;
        }
        if (m.rc) {
            rc = -ENOMEM;
            goto out;
        }
        set_msg(msg, msglen, m.b.p);
        rc = ERR_INVALID;
        goto out;
    }

    r.op = op;
    r.key = strdup(key);
    r.vals = nvals ? calloc(nvals, sizeof(char *)) : NULL;
    if (!r.key || (nvals && !r.vals)) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < nvals; i++) {
        r.vals[i] = strdup(vals[i]);
        if (!r.vals[i]) {
            rc = -ENOMEM;
            goto out;
        }
        r.nvals++;
    }
    if (r.nvals > 1)
        qsort(r.vals, r.nvals, sizeof(char *), cmp_str);
    if (dedupe && r.nvals > 1) {
        size_t w = 1;
        for (size_t i = 1; i < r.nvals; i++) {
            if (strcmp(r.vals[i], r.vals[w - 1]) == 0)
                free(r.vals[i]);
            else
                r.vals[w++] = r.vals[i];
        }
        r.nvals = w;
    }
    *out = r;
    memset(&r, 0, sizeof(r));
out:
    req_release(&r);
    buf_release(&m.b);
    for (size_t i = 0; i < cap; i++)
        buf_release(&errs[i].b);
    return rc;
}

/* ---- label selector lexer and parser (labels.Parse) ---- */

enum tok {
    T_ERR,
    T_EOS,
    T_CPAR,
    T_COMMA,
    T_NOT,
    T_DEQ,
    T_EQ,
    T_GT,
    T_ID,
    T_IN,
    T_LT,
    T_NEQ,
    T_NOTIN,
    T_OPAR,
};

struct token {
    enum tok t;
    const char *s;
    size_t n;
};

struct lparser {
    struct token *toks;
    size_t ntoks, cap, pos;
};

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_special(char c)
{
    return c && strchr("=!(),><", c) != NULL;
}

/* string2token */
static enum tok tok_lookup(const char *s, size_t n)
{
    static const struct {
        const char *s;
        enum tok t;
    } map[] = {
        {")", T_CPAR}, {",", T_COMMA},     {"!", T_NOT},  {"==", T_DEQ},
        {"=", T_EQ},   {">", T_GT},        {"in", T_IN},  {"<", T_LT},
        {"!=", T_NEQ}, {"notin", T_NOTIN}, {"(", T_OPAR},
    };
    for (size_t i = 0; i < ARRAY_LEN(map); i++)
        if (strlen(map[i].s) == n && memcmp(map[i].s, s, n) == 0)
            return map[i].t;
    return T_ERR;
}

static int lex_all(const char *s, struct lparser *p)
{
    size_t pos = 0, len = strlen(s);

    for (;;) {
        struct token tk = {T_EOS, s + len, 0};
        while (pos < len && is_ws(s[pos]))
            pos++;
        if (pos < len && is_special(s[pos])) {
            /* scanSpecialSymbol: longest run of specials that is still a known token */
            size_t start = pos, best = 0;
            enum tok bt = T_ERR;
            while (pos < len && is_special(s[pos])) {
                enum tok t = tok_lookup(s + start, pos - start + 1);
                if (t != T_ERR) {
                    bt = t;
                    best = pos - start + 1;
                } else if (bt != T_ERR) {
                    break;
                }
                pos++;
            }
            if (bt == T_ERR) {
                tk.t = T_ERR;
                tk.s = s + start;
                tk.n = pos - start;
            } else {
                tk.t = bt;
                tk.s = s + start;
                tk.n = best;
                pos = start + best;
            }
        } else if (pos < len) {
            size_t start = pos;
            while (pos < len && !is_special(s[pos]) && !is_ws(s[pos]))
                pos++;
            tk.s = s + start;
            tk.n = pos - start;
            tk.t = tok_lookup(tk.s, tk.n);
            if (tk.t != T_IN && tk.t != T_NOTIN)
                tk.t = T_ID;
        }
        if (p->ntoks == p->cap) {
            size_t cap = p->cap ? p->cap * 2 : 16;
            struct token *nt = realloc(p->toks, cap * sizeof(*nt));
            if (!nt)
                return -ENOMEM;
            p->toks = nt;
            p->cap = cap;
        }
        p->toks[p->ntoks++] = tk;
        if (tk.t == T_EOS)
            return 0;
    }
}

/* lookahead/consume in the Values context: "in" and "notin" are identifiers there. */
static struct token lp_peek(const struct lparser *p, bool values)
{
    struct token t = p->toks[p->pos];
    if (values && (t.t == T_IN || t.t == T_NOTIN))
        t.t = T_ID;
    return t;
}

static struct token lp_next(struct lparser *p, bool values)
{
    struct token t = lp_peek(p, values);
    if (p->pos + 1 < p->ntoks)
        p->pos++;
    return t;
}

/* A dynamic list of (borrowed) value strings. */
struct vlist {
    char **v;
    size_t n, cap;
};

static int vlist_add(struct vlist *l, const char *s, size_t n)
{
    char *c;

    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        char **p = realloc(l->v, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        l->v = p;
        l->cap = cap;
    }
    c = strndup(s, n);
    if (!c)
        return -ENOMEM;
    l->v[l->n++] = c;
    return 0;
}

static void vlist_release(struct vlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Set msg to "found '<tok>', expected: <what>" (parse errors are ERR_INVALID). */
static int found(struct mbuf *m, const struct token *t, const char *what)
{
    mb_puts(m, "found '");
    mb_put(m, t->s, t->n);
    mb_puts(m, "', expected: ");
    mb_puts(m, what);
    return m->rc ? -ENOMEM : ERR_INVALID;
}

static int parse_values(struct lparser *p, struct vlist *vals, struct mbuf *m)
{
    struct token t = lp_next(p, true);
    int rc;

    if (t.t != T_OPAR) {
        /* sic: kube prints no comma here */
        mb_puts(m, "found '");
        mb_put(m, t.s, t.n);
        mb_puts(m, "' expected: '('");
        return m->rc ? -ENOMEM : ERR_INVALID;
    }
    t = lp_peek(p, true);
    if (t.t == T_CPAR) {
        lp_next(p, true);
        return vlist_add(vals, "", 0);
    }
    if (t.t != T_ID && t.t != T_COMMA)
        return found(m, &t, "',', ')' or identifier");
    /* parseIdentifiersList */
    for (;;) {
        struct token c = lp_next(p, true), n2;
        if (c.t == T_ID) {
            rc = vlist_add(vals, c.s, c.n);
            if (rc)
                return rc;
            n2 = lp_peek(p, true);
            if (n2.t == T_COMMA)
                continue;
            if (n2.t == T_CPAR)
                break;
            return found(m, &n2, "',' or ')'");
        } else if (c.t == T_COMMA) {
            if (vals->n == 0 && (rc = vlist_add(vals, "", 0)))
                return rc;
            n2 = lp_peek(p, true);
            if (n2.t == T_CPAR) {
                if ((rc = vlist_add(vals, "", 0)))
                    return rc;
                break;
            }
            if (n2.t == T_COMMA) {
                lp_next(p, true);
                if ((rc = vlist_add(vals, "", 0)))
                    return rc;
            }
        } else {
            return found(m, &c, "',', or identifier");
        }
    }
    t = lp_next(p, true);
    if (t.t != T_CPAR) /* unreachable in practice; kube reports the first value token */
        return found(m, &t, "')'");
    return 0;
}

static int parse_requirement(struct lparser *p, struct sel_req *out, char *msg, size_t msglen,
                             struct mbuf *m)
{
    struct vlist vals = {0};
    struct token t = lp_next(p, true), nx;
    enum sel_op op = OP_EXISTS;
    bool notex = false;
    char *key = NULL;
    int rc = 0;

    if (t.t == T_NOT) {
        notex = true;
        t = lp_next(p, true);
    }
    if (t.t != T_ID) {
        rc = found(m, &t, "identifier");
        goto out;
    }
    key = strndup(t.s, t.n);
    if (!key) {
        rc = -ENOMEM;
        goto out;
    }
    {
        struct mbuf e = {0};
        if (qualified_name_errs(&e, key, t.n) > 0) {
            /* parser path is nil: field.Path prints "<nil>" */
            mb_puts(m, "<nil>: Invalid value: ");
            mb_quote(m, key, t.n);
            mb_puts(m, ": ");
            mb_put(m, e.b.p ? e.b.p : "", e.b.len);
            rc = (m->rc || e.rc) ? -ENOMEM : ERR_INVALID;
            buf_release(&e.b);
            goto out;
        }
        buf_release(&e.b);
    }
    nx = lp_peek(p, true);
    if (notex || nx.t == T_EOS || nx.t == T_COMMA) {
        /*
         * "a" and "!a" are unary; after "!a" kube does not look for an operator at all, so in
         * "!a=b" the "=" is left for the caller to reject.
         */
        rc = req_new(key, notex ? OP_NOTEX : OP_EXISTS, NULL, 0, true, out, msg, msglen);
        goto out;
    }
    t = lp_next(p, false);
    switch (t.t) {
    case T_IN:
        op = OP_IN;
        break;
    case T_NOTIN:
        op = OP_NOTIN;
        break;
    case T_EQ:
        op = OP_EQ;
        break;
    case T_DEQ:
        op = OP_DEQ;
        break;
    case T_NEQ:
        op = OP_NEQ;
        break;
    case T_GT:
        op = OP_GT;
        break;
    case T_LT:
        op = OP_LT;
        break;
    default:
        rc = found(m, &t, "in, notin, =, ==, !=, gt, lt");
        goto out;
    }
    if (op == OP_IN || op == OP_NOTIN) {
        rc = parse_values(p, &vals, m);
    } else {
        /* parseExactValue */
        nx = lp_peek(p, true);
        if (nx.t == T_EOS || nx.t == T_COMMA) {
            rc = vlist_add(&vals, "", 0);
        } else {
            t = lp_next(p, true);
            if (t.t == T_ID)
                rc = vlist_add(&vals, t.s, t.n);
            else
                rc = found(m, &t, "identifier");
        }
    }
    if (rc)
        goto out;
    rc = req_new(key, op, (const char *const *)vals.v, vals.n, true, out, msg, msglen);
out:
    vlist_release(&vals);
    free(key);
    return rc;
}

int selector_parse_labels(const char *s, struct selector **out, char *msg, size_t msglen)
{
    struct lparser p = {0};
    struct selector *sel = NULL;
    struct mbuf m = {0};
    int rc;

    sel = calloc(1, sizeof(*sel));
    if (!sel) {
        rc = -ENOMEM;
        goto out;
    }
    rc = lex_all(s ? s : "", &p);
    if (rc)
        goto out;
    for (;;) {
        struct token t = lp_peek(&p, true);
        if (t.t == T_EOS)
            break;
        if (t.t != T_ID && t.t != T_NOT) {
            rc = found(&m, &t, "!, identifier, or 'end of string'");
            goto out;
        }
        {
            struct sel_req r = {0};
            char detail[4096] = "";
            rc = parse_requirement(&p, &r, detail, sizeof(detail), &m);
            if (rc == ERR_INVALID) {
                /* the message is either in m (syntax) or in detail (NewRequirement) */
                struct mbuf w = {0};
                mb_puts(&w, "unable to parse requirement: ");
                if (m.b.len)
                    mb_put(&w, m.b.p, m.b.len);
                else
                    mb_puts(&w, detail);
                if (w.rc)
                    rc = -ENOMEM;
                buf_release(&m.b);
                m = w;
                goto out;
            }
            if (rc)
                goto out;
            rc = sel_add(sel, &r);
            if (rc)
                goto out;
        }
        {
            struct token t2 = lp_next(&p, true);
            if (t2.t == T_EOS)
                break;
            if (t2.t == T_COMMA) {
                struct token t3 = lp_peek(&p, true);
                if (t3.t != T_ID && t3.t != T_NOT) {
                    rc = found(&m, &t3, "identifier after ','");
                    goto out;
                }
                continue;
            }
            rc = found(&m, &t2, "',' or 'end of string'");
            goto out;
        }
    }
    sel_sort(sel);
    *out = sel;
    sel = NULL;
out:
    if (rc == ERR_INVALID)
        mb_finish(&m, msg, msglen);
    else
        buf_release(&m.b);
    if (rc == -ENOMEM)
        set_msg(msg, msglen, "out of memory");
    free(p.toks);
    selector_free(sel);
    return rc;
}

/* ---- field selectors (fields.ParseSelector + per-resource field sets) ---- */

enum fspecial {
    FS_PATH,       /* plain dotted path */
    FS_POD_IP,     /* status.podIP, else status.podIPs[0].ip */
    FS_EVT_SOURCE, /* source.component, else reportingComponent */
};

struct field_def {
    const char *name;
    const char *path; /* dotted path into the object */
    const char *dflt; /* value when absent (kube prints the Go zero value) */
    enum fspecial special;
};

struct field_set {
    const char *resource;
    const struct field_def *defs;
    size_t n;
};

static const struct field_def common_fields[] = {
    {"metadata.name", "metadata.name", "", FS_PATH},
    {"metadata.namespace", "metadata.namespace", "", FS_PATH},
};

static const struct field_def pod_fields[] = {
    {"spec.nodeName", "spec.nodeName", "", FS_PATH},
    {"spec.restartPolicy", "spec.restartPolicy", "", FS_PATH},
    {"spec.schedulerName", "spec.schedulerName", "", FS_PATH},
    {"spec.serviceAccountName", "spec.serviceAccountName", "", FS_PATH},
    {"spec.hostNetwork", "spec.hostNetwork", "false", FS_PATH},
    {"status.phase", "status.phase", "", FS_PATH},
    {"status.podIP", "status.podIP", "", FS_POD_IP},
    {"status.nominatedNodeName", "status.nominatedNodeName", "", FS_PATH},
};

static const struct field_def secret_fields[] = {
    {"type", "type", "", FS_PATH},
};

static const struct field_def event_fields[] = {
    {"involvedObject.kind", "involvedObject.kind", "", FS_PATH},
    {"involvedObject.namespace", "involvedObject.namespace", "", FS_PATH},
    {"involvedObject.name", "involvedObject.name", "", FS_PATH},
    {"involvedObject.uid", "involvedObject.uid", "", FS_PATH},
    {"involvedObject.apiVersion", "involvedObject.apiVersion", "", FS_PATH},
    {"involvedObject.resourceVersion", "involvedObject.resourceVersion", "", FS_PATH},
    {"involvedObject.fieldPath", "involvedObject.fieldPath", "", FS_PATH},
    {"reason", "reason", "", FS_PATH},
    {"reportingComponent", "reportingComponent", "", FS_PATH},
    {"source", "source.component", "", FS_EVT_SOURCE},
    {"type", "type", "", FS_PATH},
};

static const struct field_def namespace_fields[] = {
    {"status.phase", "status.phase", "", FS_PATH},
};

static const struct field_def replicas_fields[] = {
    {"status.replicas", "status.replicas", "0", FS_PATH},
};

static const struct field_def node_fields[] = {
    {"spec.unschedulable", "spec.unschedulable", "false", FS_PATH},
};

static const struct field_def job_fields[] = {
    {"status.successful", "status.succeeded", "0", FS_PATH},
};

static const struct field_def service_fields[] = {
    {"spec.clusterIP", "spec.clusterIP", "", FS_PATH},
    {"spec.type", "spec.type", "", FS_PATH},
};

static const struct field_def csr_fields[] = {
    {"spec.signerName", "spec.signerName", "", FS_PATH},
};

#define FSET(r, d)                                                                                 \
    {                                                                                              \
        r, d, ARRAY_LEN(d)                                                                         \
    }
static const struct field_set field_sets[] = {
    FSET("pods", pod_fields),
    FSET("secrets", secret_fields),
    FSET("events", event_fields),
    FSET("namespaces", namespace_fields),
    FSET("replicasets", replicas_fields),
    FSET("replicationcontrollers", replicas_fields),
    FSET("nodes", node_fields),
    FSET("jobs", job_fields),
    FSET("services", service_fields),
    FSET("certificatesigningrequests", csr_fields),
};
#undef FSET

static const struct field_set *field_set_for(const char *resource)
{
    for (size_t i = 0; resource && i < ARRAY_LEN(field_sets); i++)
        if (strcmp(field_sets[i].resource, resource) == 0)
            return &field_sets[i];
    return NULL;
}

static const struct field_def *field_lookup(const struct field_set *fs, const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(common_fields); i++)
        if (strcmp(common_fields[i].name, name) == 0)
            return &common_fields[i];
    for (size_t i = 0; fs && i < fs->n; i++)
        if (strcmp(fs->defs[i].name, name) == 0)
            return &fs->defs[i];
    return NULL;
}

/* fields.UnescapeValue; on error sets m and returns ERR_INVALID. */
static int unescape_value(const char *s, size_t n, char **out, struct mbuf *m)
{
    char *v = malloc(n + 1), esc[16];
    size_t w = 0;
    bool in_slash = false;

    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_slash) {
            if (c != '\\' && c != ',' && c != '=') {
                /* Go prints the rune: keep a multibyte UTF-8 sequence whole */
                size_t len = 1;
                while (i + len < n && ((unsigned char)s[i + len] & 0xc0) == 0x80 && len < 4)
                    len++;
                mb_puts(m, "invalid field selector: invalid escape sequence: \\");
                mb_put(m, s + i, len);
                free(v);
                return m->rc ? -ENOMEM : ERR_INVALID;
            }
            v[w++] = c;
            in_slash = false;
            continue;
        }
        if (c == '\\') {
            in_slash = true;
        } else if (c == ',' || c == '=') {
            /* sic: kube formats the rune with %v, i.e. as a number */
            snprintf(esc, sizeof(esc), "%d", c);
            mb_puts(m, "invalid field selector: unescaped character in value: ");
            mb_puts(m, esc);
            free(v);
            return m->rc ? -ENOMEM : ERR_INVALID;
        } else {
            v[w++] = c;
        }
    }
    if (in_slash) {
        mb_puts(m, "invalid field selector: invalid escape sequence: \\");
        free(v);
        return m->rc ? -ENOMEM : ERR_INVALID;
    }
    v[w] = '\0';
    *out = v;
    return 0;
}

/* A term of the selector split at unescaped commas. */
struct term {
    const char *s;
    size_t n;
};

static int cmp_term(const void *a, const void *b)
{
    const struct term *x = a, *y = b;
    size_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->s, y->s, n);
    if (c)
        return c;
    return x->n < y->n ? -1 : x->n > y->n;
}

int selector_parse_fields(const char *s, const char *resource, struct selector **out, char *msg,
                          size_t msglen)
{
    const struct field_set *fs = field_set_for(resource);
    struct selector *sel = NULL;
    struct term *terms = NULL;
    size_t nterms = 0, len = s ? strlen(s) : 0;
    struct mbuf m = {0};
    char *value = NULL;
    int rc = 0;

    sel = calloc(1, sizeof(*sel));
    terms = calloc(len + 1, sizeof(*terms));
    if (!sel || !terms) {
        rc = -ENOMEM;
        goto out;
    }
    sel->fields = true;
    if (len) {
        /* splitTerms: split at commas not preceded by an escaping backslash */
        size_t start = 0;
        bool in_slash = false;
        for (size_t i = 0; i < len; i++) {
            if (in_slash)
                in_slash = false;
            else if (s[i] == '\\')
                in_slash = true;
            else if (s[i] == ',') {
                terms[nterms++] = (struct term){s + start, i - start};
                start = i + 1;
            }
        }
        terms[nterms++] = (struct term){s + start, len - start};
    }
    qsort(terms, nterms, sizeof(*terms), cmp_term);

    for (size_t i = 0; i < nterms; i++) {
        const struct term *t = &terms[i];
        struct sel_req r = {0};
        size_t at = 0, oplen = 0;
        enum sel_op op = OP_EQ;

        if (t->n == 0)
            continue;
        /* splitTerm: first position where "!=", "==" or "=" starts */
        for (at = 0; at < t->n; at++) {
            if (at + 1 < t->n && t->s[at] == '!' && t->s[at + 1] == '=') {
                op = OP_NEQ;
                oplen = 2;
                break;
            }
            if (at + 1 < t->n && t->s[at] == '=' && t->s[at + 1] == '=') {
                op = OP_DEQ;
                oplen = 2;
                break;
            }
            if (t->s[at] == '=') {
                op = OP_EQ;
                oplen = 1;
                break;
            }
        }
        if (!oplen) {
            mb_puts(&m, "invalid selector: '");
            mb_puts(&m, s);
            mb_puts(&m, "'; can't understand '");
            mb_put(&m, t->s, t->n);
            mb_puts(&m, "'");
            rc = m.rc ? -ENOMEM : ERR_INVALID;
            goto out;
        }
        rc = unescape_value(t->s + at + oplen, t->n - at - oplen, &value, &m);
        if (rc)
            goto out;
        r.op = op;
        r.key = strndup(t->s, at);
        r.vals = calloc(1, sizeof(char *));
        if (!r.key || !r.vals) {
            req_release(&r);
            rc = -ENOMEM;
            goto out;
        }
        r.vals[0] = value;
        r.nvals = 1;
        value = NULL;
        rc = sel_add(sel, &r);
        if (rc)
            goto out;
    }

    /* The field label conversion runs after parsing, over the sorted terms. */
    for (size_t i = 0; i < sel->n; i++) {
        struct sel_req *r = &sel->reqs[i];
        if (fs && strcmp(fs->resource, "pods") == 0 && strcmp(r->key, "spec.host") == 0) {
            /* backwards compatibility alias kept by kube */
            char *k = strdup("spec.nodeName");
            if (!k) {
                rc = -ENOMEM;
                goto out;
            }
            free(r->key);
            r->key = k;
        }
        r->field = field_lookup(fs, r->key);
        if (!r->field) {
            mb_quote(&m, r->key, strlen(r->key));
            mb_puts(&m, " is not a known field selector: only \"metadata.name\", "
                        "\"metadata.namespace\"");
            for (size_t j = 0; fs && j < fs->n; j++) {
                mb_puts(&m, ", \"");
                mb_puts(&m, fs->defs[j].name);
                mb_puts(&m, "\"");
            }
            rc = m.rc ? -ENOMEM : ERR_INVALID;
            goto out;
        }
    }
    *out = sel;
    sel = NULL;
out:
    if (rc == ERR_INVALID)
        mb_finish(&m, msg, msglen);
    else
        buf_release(&m.b);
    if (rc == -ENOMEM)
        set_msg(msg, msglen, "out of memory");
    free(value);
    free(terms);
    selector_free(sel);
    return rc;
}

/* ---- LabelSelector objects (metav1.LabelSelectorAsSelector) ---- */

int selector_from_json(const json_t *ls, struct selector **out, char *msg, size_t msglen)
{
    const json_t *ml, *me, *v;
    struct selector *sel = NULL;
    const char **vals = NULL;
    const char *k;
    size_t i;
    int rc = 0;

    sel = calloc(1, sizeof(*sel));
    if (!sel) {
        rc = -ENOMEM;
        goto out;
    }
    if (!ls || json_is_null(ls))
        goto done;
    if (!json_is_object(ls)) {
        set_msg(msg, msglen, "invalid label selector: expected an object");
        rc = ERR_INVALID;
        goto out;
    }
    ml = json_object_get(ls, "matchLabels");
    me = json_object_get(ls, "matchExpressions");
    if (ml && !json_is_null(ml) && !json_is_object(ml)) {
        set_msg(msg, msglen, "invalid label selector: matchLabels must be an object");
        rc = ERR_INVALID;
        goto out;
    }
    if (me && !json_is_null(me) && !json_is_array(me)) {
        set_msg(msg, msglen, "invalid label selector: matchExpressions must be an array");
        rc = ERR_INVALID;
        goto out;
    }
    json_object_foreach((json_t *)ml, k, v)
    {
        struct sel_req r = {0};
        const char *val = json_string_value(v);
        if (!val) {
            struct mbuf m = {0};
            mb_puts(&m, "invalid label selector: matchLabels[");
            mb_quote(&m, k, strlen(k));
            mb_puts(&m, "] must be a string");
            rc = m.rc ? -ENOMEM : ERR_INVALID;
            mb_finish(&m, msg, msglen);
            goto out;
        }
        rc = req_new(k, OP_EQ, &val, 1, false, &r, msg, msglen);
        if (rc)
            goto out;
        rc = sel_add(sel, &r);
        if (rc)
            goto out;
    }
    json_array_foreach(me, i, v)
    {
        const char *key = jstr(v, "key"), *ops = jstr(v, "operator");
        const json_t *jv = json_object_get(v, "values"), *e;
        struct sel_req r = {0};
        enum sel_op op;
        size_t j, nv = 0;

        if (!ops)
            ops = "";
        if (strcmp(ops, "In") == 0) {
            op = OP_IN;
        } else if (strcmp(ops, "NotIn") == 0) {
            op = OP_NOTIN;
        } else if (strcmp(ops, "Exists") == 0) {
            op = OP_EXISTS;
        } else if (strcmp(ops, "DoesNotExist") == 0) {
            op = OP_NOTEX;
        } else {
            struct mbuf m = {0};
            mb_quote(&m, ops, strlen(ops));
            mb_puts(&m, " is not a valid label selector operator");
            rc = m.rc ? -ENOMEM : ERR_INVALID;
            mb_finish(&m, msg, msglen);
            goto out;
        }
        if (jv && !json_is_null(jv) && !json_is_array(jv)) {
            set_msg(msg, msglen, "invalid label selector: values must be an array of strings");
            rc = ERR_INVALID;
            goto out;
        }
        free(vals);
        vals = calloc(json_array_size(jv) + 1, sizeof(*vals));
        if (!vals) {
            rc = -ENOMEM;
            goto out;
        }
        json_array_foreach(jv, j, e)
        {
            if (!json_is_string(e)) {
                set_msg(msg, msglen, "invalid label selector: values must be an array of strings");
                rc = ERR_INVALID;
                goto out;
            }
            vals[nv++] = json_string_value(e);
        }
        rc = req_new(key ? key : "", op, vals, nv, false, &r, msg, msglen);
        if (rc)
            goto out;
        rc = sel_add(sel, &r);
        if (rc)
            goto out;
    }
    sel_sort(sel);
done:
    *out = sel;
    sel = NULL;
out:
    if (rc == -ENOMEM)
        set_msg(msg, msglen, "out of memory");
    free(vals);
    selector_free(sel);
    return rc;
}

/* ---- matching ---- */

static bool req_has(const struct sel_req *r, const char *v)
{
    for (size_t i = 0; i < r->nvals; i++)
        if (strcmp(r->vals[i], v) == 0)
            return true;
    return false;
}

static bool label_req_match(const struct sel_req *r, const json_t *labels)
{
    const char *v = json_string_value(json_object_get(labels, r->key));
    long long lv, rv;

    switch (r->op) {
    case OP_EQ:
    case OP_DEQ:
    case OP_IN:
        return v && req_has(r, v);
    case OP_NEQ:
    case OP_NOTIN:
        return !v || !req_has(r, v);
    case OP_EXISTS:
        return v != NULL;
    case OP_NOTEX:
        return v == NULL;
    case OP_GT:
    case OP_LT:
        if (!v || r->nvals != 1 || !parse_int64(v, &lv) || !parse_int64(r->vals[0], &rv))
            return false;
        return r->op == OP_GT ? lv > rv : lv < rv;
    }
    return false;
}

static const json_t *path_get(const json_t *obj, const char *path)
{
    char seg[128];

    while (obj && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (n >= sizeof(seg))
            return NULL;
        memcpy(seg, path, n);
        seg[n] = '\0';
        obj = json_object_get(obj, seg);
        path += n + (dot ? 1 : 0);
    }
    return obj;
}

/* The string form kube's fields.Set holds for this field; tmp backs numbers. */
static const char *field_value(const json_t *obj, const struct field_def *f, char *tmp, size_t n)
{
    const json_t *v = path_get(obj, f->path);

    if (f->special == FS_POD_IP && !json_string_length(v))
        v = json_object_get(json_array_get(jget2(obj, "status", "podIPs"), 0), "ip");
    if (f->special == FS_EVT_SOURCE && !json_string_length(v))
        v = json_object_get(obj, "reportingComponent");
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_true(v))
        return "true";
    if (json_is_false(v))
        return "false";
    if (json_is_integer(v)) {
        snprintf(tmp, n, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        return tmp;
    }
    if (json_is_real(v)) {
        snprintf(tmp, n, "%g", json_real_value(v));
        return tmp;
    }
    return f->dflt;
}

bool selector_match(const struct selector *sel, const json_t *obj)
{
    const json_t *labels;

    if (!sel)
        return true;
    labels = jget2(obj, "metadata", "labels");
    for (size_t i = 0; i < sel->n; i++) {
        const struct sel_req *r = &sel->reqs[i];
        if (sel->fields) {
            char tmp[32];
            const char *v = field_value(obj, r->field, tmp, sizeof(tmp));
            bool eq = strcmp(v, r->vals[0]) == 0;
            if (r->op == OP_NEQ ? eq : !eq)
                return false;
        } else if (!label_req_match(r, labels)) {
            return false;
        }
    }
    return true;
}

bool selector_empty(const struct selector *sel)
{
    return !sel || sel->n == 0;
}

char *selector_string(const struct selector *sel)
{
    struct mbuf m = {0};
    char *s;

    for (size_t i = 0; sel && i < sel->n; i++) {
        const struct sel_req *r = &sel->reqs[i];
        if (i)
            mb_puts(&m, ",");
        if (sel->fields) {
            mb_puts(&m, r->key);
            mb_puts(&m, r->op == OP_NEQ ? "!=" : "=");
            for (const char *c = r->vals[0]; *c; c++) {
                if (*c == '\\' || *c == ',' || *c == '=')
                    mb_puts(&m, "\\");
                mb_put(&m, c, 1);
            }
            continue;
        }
        if (r->op == OP_NOTEX)
            mb_puts(&m, "!");
        mb_puts(&m, r->key);
        switch (r->op) {
        case OP_EQ:
            mb_puts(&m, "=");
            break;
        case OP_DEQ:
            mb_puts(&m, "==");
            break;
        case OP_NEQ:
            mb_puts(&m, "!=");
            break;
        case OP_IN:
            mb_puts(&m, " in (");
            break;
        case OP_NOTIN:
            mb_puts(&m, " notin (");
            break;
        case OP_GT:
            mb_puts(&m, ">");
            break;
        case OP_LT:
            mb_puts(&m, "<");
            break;
        case OP_EXISTS:
        case OP_NOTEX:
            continue;
        }
        for (size_t j = 0; j < r->nvals; j++) {
            if (j)
                mb_puts(&m, ",");
            mb_puts(&m, r->vals[j]);
        }
        if (r->op == OP_IN || r->op == OP_NOTIN)
            mb_puts(&m, ")");
    }
    if (m.rc) {
        buf_release(&m.b);
        return NULL;
    }
    s = buf_take(&m.b);
    return s;
}
