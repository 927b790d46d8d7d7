/*
 * kube_int.h - internals shared by lib/kube's files (and its unit tests). Not for other modules.
 */
#ifndef WEFT_KUBE_INT_H
#define WEFT_KUBE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "kube/kube.h"

#define KUBE_DEFAULT_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* A loaded configuration. Blobs are raw bytes (PEM); *_file are absolute or as given. */
struct kube_config {
    char *server;
    char *ns;
    char *ca_file;
    char *ca_data;
    size_t ca_data_len;
    bool insecure;
    char *token;
    char *token_file;
    char *cert_file;
    char *cert_data;
    size_t cert_data_len;
    char *key_file;
    char *key_data;
    size_t key_data_len;
};

/* Deep copy; returns 0 or -ENOMEM. */
int kube__config_dup(const struct kube_config *in, struct kube_config **out) WUR;

/*
 * Streaming requests (watches): with a 2xx status the body bytes go to on_data as they arrive
 * (from the loop, outside libcurl callbacks) and done gets body NULL at the end; with another
 * status the body is collected and parsed for done as usual. on_data may cancel the call (then
 * done is not called).
 */
typedef void kube__data_fn(void *arg, const char *data, size_t len);

int kube__request_stream(struct kube_client *c, const char *path, long timeout_s,
                         kube__data_fn *on_data, kube_response_fn *done, void *arg,
                         struct kube_call **call) WUR;

/*
 * Watch-stream line splitter: feed arbitrary chunks; every complete line (terminated by '\n',
 * an optional '\r' before it removed, empty lines skipped) is passed to fn. fn returns 0 to go
 * on; a non-zero return stops the feed and is returned. Lines longer than max_line give
 * -E2BIG. The partial tail is kept for the next feed.
 */
struct kube__lines {
    struct buf pending;
    size_t max_line;
};
typedef int kube__line_fn(void *arg, const char *line, size_t len);
void kube__lines_init(struct kube__lines *l, size_t max_line);
void kube__lines_release(struct kube__lines *l);
void kube__lines_reset(struct kube__lines *l);
int kube__lines_feed(struct kube__lines *l, const char *data, size_t len, kube__line_fn *fn,
                     void *arg) WUR;

/*
 * Watch event decoding. Sets *type to "ADDED" etc. (borrowed from ev) and *obj (borrowed).
 * Returns 0 or ERR_PARSE for a line that is not {"type":string,"object":object}.
 */
int kube__watch_event_parse(const json_t *ev, const char **type, json_t **obj) WUR;

/* True when a Status object (or HTTP status) says the resourceVersion/continue expired. */
bool kube__status_is_gone(long http_status, const json_t *status);

/* Cache key of an object ("ns/name" or "name"); returns 0, ERR_INVALID (no name), -ENAMETOOLONG */
int kube__object_key(const json_t *obj, char *out, size_t outlen) WUR;

/*
 * Replace the cache's contents by items (an array of objects from a full LIST), calling emit for
 * each difference: ADDED for new keys, MODIFIED for keys whose resourceVersion changed, DELETED
 * (with the cached object) for keys no longer listed. items are referenced, not copied. Returns
 * 0 or -ENOMEM (cache unchanged on failure only before the first emit).
 */
typedef void kube__emit_fn(void *arg, enum kube_event_type type, const char *key,
                           const json_t *obj);
int kube__cache_replace(json_t *cache, const json_t *items, kube__emit_fn *emit, void *arg) WUR;

/*
 * Reconnect delay for attempt n (0-based): d = min(cap, base * 2^n), jittered uniformly into
 * [d/2, d) using the xorshift state *rng (never 0).
 */
uint64_t kube__backoff_jitter(uint64_t base_ms, unsigned attempt, uint64_t cap_ms, uint64_t *rng);

#endif
