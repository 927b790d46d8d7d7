/*
 * diag.h - the human-readable detail of a refusal: bad configuration, a refused admission
 * review, a CSR the CA will not sign. The one shape for it (STYLE.md section 3).
 *
 * A fallible function returns its error code as usual (ERR_INVALID, ERR_PARSE, ...) and, when
 * the caller passed a struct diag *, describes the problem there. The text starts with where
 * the problem is: "file:line: ...", "file: json.path: ..." or a JSON path alone
 * ("spec.backends[0].service: required"). code is a module's stable, machine-readable refusal
 * code where it has one (ca/: enum ca_refusal), else 0.
 *
 * The caller owns the storage (usually on its stack); a NULL struct diag * means "no detail
 * wanted". diag_set overwrites: a function that may find several problems and wants to report
 * the first checks diag->text[0] itself.
 */
#ifndef WEFT_CORE_DIAG_H
#define WEFT_CORE_DIAG_H

#include <stdarg.h>

#include "core/err.h"

#define DIAG_TEXT_MAX 512

struct diag {
    int code;                 /* module refusal code, 0 when none */
    char text[DIAG_TEXT_MAX]; /* "" when nothing was said; always NUL-terminated */
};

/* Empty d (code 0, text ""). d may be NULL. */
void diag_clear(struct diag *d);
/* Write the text (truncated to DIAG_TEXT_MAX - 1 bytes); code is left alone. d may be NULL. */
void diag_set(struct diag *d, const char *fmt, ...) PRINTF_LIKE(2, 3);
void diag_vset(struct diag *d, const char *fmt, va_list ap) PRINTF_LIKE(2, 0);

#endif
