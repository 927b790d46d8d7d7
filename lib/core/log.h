/*
 * log.h - structured key=value logging to stderr.
 *
 * Lines look like: ts=2026-01-01T00:00:00.000Z level=info msg="..." (caller adds key=value
 * pairs in the message). The level threshold is process-wide and set once at start-up.
 */
#ifndef WEFT_CORE_LOG_H
#define WEFT_CORE_LOG_H

#include <stdbool.h>

#include "core/err.h"

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Set the lowest level that is printed. Call from main before any thread starts. */
void log_set_level(enum log_level lvl);
/* Parse "debug"/"info"/"warn"/"error"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out) WUR;
/* The name log_level_parse reads for lvl ("unknown" for a value out of range). */
const char *log_level_name(enum log_level lvl);
/* Whether lines of level lvl are printed: skip preparing arguments for lines that are not. */
bool log_enabled(enum log_level lvl);
void log_msg(enum log_level lvl, const char *fmt, ...) PRINTF_LIKE(2, 3);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
