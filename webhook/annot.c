/*
 * annot.c - validation of the annotation values a pod may set (ports, CIDRs, quantities,
 * booleans). Every rejection names the annotation and the offending item, because the message
 * reaches the user verbatim as the admission denial.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/netaddr.h"
#include "webhook/webhook_int.h"

/* Longest list item we look at; anything longer is reported truncated. */
#define ITEM_MAX 64

/* Is the whole value blank? */
static bool blank(const char *v)
{
    for (; *v; v++)
        if (!isspace((unsigned char)*v))
            return false;
    return true;
}

static bool is_star(const char *v)
{
    const char *s = v, *e = v + strlen(v);

    netaddr_trim(&s, &e);
    return e - s == 1 && *s == '*';
}

typedef bool item_fn(const char *item);

static bool port_ok(const char *item)
{
    int port;

    return netaddr_port_parse(item, &port);
}

static bool cidr_ok(const char *item)
{
    return netaddr_cidr_parse(item, NULL);
}

static int list_parse(const char *annot, const char *value, bool allow_star, item_fn *ok,
                      const char *want, struct buf *norm, struct diag *diag)
{
    const char *p = value;
    int rc;

    buf_reset(norm);
    if (blank(value))
        return 0;
    if (is_star(value)) {
        if (allow_star)
            return buf_puts(norm, "*");
        diag_set(diag, "annotation %s: \"*\" is not allowed here (want %s)", annot, want);
        return ERR_INVALID;
    }
    for (;;) {
        const char *comma = strchr(p, ','), *e = comma ? comma : p + strlen(p), *s = p;
        char item[ITEM_MAX + 1];
        size_t n;

        netaddr_trim(&s, &e);
        n = (size_t)(e - s);
        if (n > ITEM_MAX)
            n = ITEM_MAX;
        memcpy(item, s, n);
        item[n] = '\0';
        if (n == 0 || (size_t)(e - s) > ITEM_MAX || !ok(item)) {
            if (n == 0)
                diag_set(diag, "annotation %s: empty item in \"%s\" (want %s)", annot, value, want);
            else
                diag_set(diag, "annotation %s: invalid item \"%s\" (want %s)", annot, item, want);
            return ERR_INVALID;
        }
        if (norm->len && (rc = buf_puts(norm, ",")) < 0)
            return rc;
        if ((rc = buf_puts(norm, item)) < 0)
            return rc;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

int webhook__ports_parse(const char *annot, const char *value, bool allow_star, struct buf *norm,
                         struct diag *diag)
{
    return list_parse(annot, value, allow_star, port_ok,
                      allow_star ? "\"*\" or comma-separated ports 1-65535"
                                 : "comma-separated ports 1-65535",
                      norm, diag);
}

int webhook__cidrs_parse(const char *annot, const char *value, bool allow_star, struct buf *norm,
                         struct diag *diag)
{
    return list_parse(annot, value, allow_star, cidr_ok,
                      allow_star ? "\"*\" or comma-separated CIDRs such as 10.0.0.0/8"
                                 : "comma-separated CIDRs such as 10.0.0.0/8",
                      norm, diag);
}

int webhook__bool_parse(const char *annot, const char *value, bool *out, struct diag *diag)
{
    if (strcmp(value, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcmp(value, "false") == 0) {
        *out = false;
        return 0;
    }
    diag_set(diag, "annotation %s: \"%.64s\" is not \"true\" or \"false\"", annot, value);
    return ERR_INVALID;
}

/*
 * Kubernetes quantity grammar (k8s.io/apimachinery resource.Quantity):
 *   [+]digits[.digits] | [+].digits, then one of Ki Mi Gi Ti Pi Ei | n u m "" k M G T P E |
 *   e/E followed by a signed integer. Negative quantities are refused (resources cannot be).
 */
int webhook__quantity_parse(const char *s, double *out)
{
    static const struct {
        const char *sfx;
        double mul;
    } sfx[] = {
        {"Ki", 1024.0},
        {"Mi", 1048576.0},
        {"Gi", 1073741824.0},
        {"Ti", 1099511627776.0},
        {"Pi", 1125899906842624.0},
        {"Ei", 1152921504606846976.0},
        {"n", 1e-9},
        {"u", 1e-6},
        {"m", 1e-3},
        {"k", 1e3},
        {"M", 1e6},
        {"G", 1e9},
        {"T", 1e12},
        {"P", 1e15},
        {"E", 1e18},
    };
    const char *p = s;
    size_t digits = 0;
    double num;
    char *end;

    if (*p == '+')
        p++;
    {
        const char *q = p;
        bool dot = false;

        for (; *q; q++) {
            if (isdigit((unsigned char)*q))
                digits++;
            else if (*q == '.' && !dot)
                dot = true;
            else
                break;
        }
        char mant[48];

        if (digits == 0 || q - p > 40)
            return ERR_INVALID;
        /* Only the mantissa: strtod would also eat an exponent or "inf". */
        memcpy(mant, p, (size_t)(q - p));
        mant[q - p] = '\0';
        num = strtod(mant, &end);
        if (*end != '\0')
            return ERR_INVALID;
        p = q;
    }
    if (*p == '\0') {
        *out = num;
        return 0;
    }
    for (size_t i = 0; i < ARRAY_LEN(sfx); i++) {
        if (strcmp(p, sfx[i].sfx) == 0) {
            *out = num * sfx[i].mul;
            return 0;
        }
    }
    if (*p == 'e' || *p == 'E') {
        const char *q = p + 1;
        long ex;

        if (*q == '+' || *q == '-')
            q++;
        if (!isdigit((unsigned char)*q) || strlen(q) > 3)
            return ERR_INVALID;
        for (const char *r = q; *r; r++)
            if (!isdigit((unsigned char)*r))
                return ERR_INVALID;
        ex = strtol(p + 1, NULL, 10);
        *out = num * pow(10.0, (double)ex);
        return 0;
    }
    return ERR_INVALID;
}
