/*
 * pct.h - percent-encoding (RFC 3986 section 2.1) for URL path segments and query values, as
 * the Kubernetes API paths and selectors need them.
 */
#ifndef WEFT_CORE_PCT_H
#define WEFT_CORE_PCT_H

#include "core/buf.h"
#include "core/err.h"

/*
 * Append s to b, keeping RFC 3986's unreserved characters (ALPHA DIGIT - . _ ~) and those in
 * keep (NULL or "" for none; e.g. ":" inside a path segment) and writing every other byte as
 * %XX with upper-case hex. Returns 0 or -ENOMEM (b unchanged then).
 */
int pct_encode_buf(struct buf *b, const char *s, const char *keep) WUR;

#endif
