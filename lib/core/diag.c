/*
 * diag.c - refusal detail, see diag.h.
 */
#include <stdio.h>

#include "core/diag.h"

void diag_clear(struct diag *d)
{
    if (!d)
        return;
    d->code = 0;
    d->text[0] = '\0';
}

void diag_vset(struct diag *d, const char *fmt, va_list ap)
{
    if (!d)
        return;
    vsnprintf(d->text, sizeof(d->text), fmt, ap);
}

void diag_set(struct diag *d, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_vset(d, fmt, ap);
    va_end(ap);
}
