/*
 * err.h - error codes shared by every Weft module.
 *
 * Fallible functions return 0 or a negative code: a negative errno where one fits, or one of
 * the project codes below for API-level outcomes. err_str() names any of them.
 */
#ifndef WEFT_CORE_ERR_H
#define WEFT_CORE_ERR_H

#include <errno.h>

enum {
    ERR_BASE = 4096,
    ERR_NOTFOUND = -(ERR_BASE + 1), /* object does not exist */
    ERR_EXISTS = -(ERR_BASE + 2),   /* object already exists */
    ERR_CONFLICT = -(ERR_BASE + 3), /* stale resourceVersion or field-manager conflict */
    ERR_GONE = -(ERR_BASE + 4),     /* resourceVersion too old */
    ERR_INVALID = -(ERR_BASE + 5),  /* input failed validation; detail in a diag */
    ERR_PARSE = -(ERR_BASE + 6),    /* input could not be parsed */
    ERR_UNSUPPORTED = -(ERR_BASE + 7),
};

/* Name of an error code; never NULL. Thread-safe for project codes. */
const char *err_str(int rc);

#if defined(__GNUC__)
#define WUR __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define WUR
#define PRINTF_LIKE(f, a)
#endif

#define FREE_AND_NULL(p)                                                                           \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

/* Deliberately ignore a warn_unused_result value (the outcome is handled elsewhere). */
#define IGNORE_RESULT(x)                                                                           \
    do {                                                                                           \
        if (x) {                                                                                   \
        }                                                                                          \
    } while (0)

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
