/*
 * client.c - HTTP requests to the API server over libcurl's multi-socket API on a libuv loop.
 *
 * libcurl tells us which sockets to watch (socket_cb -> uv_poll_t per socket) and when to call
 * it back (timer_cb -> one uv_timer_t). libcurl forbids calling multi functions from inside its
 * own callbacks, so nothing user-visible runs there: the write callback only buffers bytes, and
 * after each curl_multi_socket_action() returns we first hand buffered stream bytes to their
 * consumers (dispatch_streams), then complete finished transfers (check_done). User callbacks
 * may therefore start, cancel or free anything.
 *
 * Freeing: uv handles close asynchronously, so the client counts its open handles and frees
 * itself in the last close callback.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "conf/jsonio.h"
#include "core/log.h"
#include "kube/kube_int.h"

#define MAX_RESPONSE (64u * 1024 * 1024)
#define REQUEST_TIMEOUT_S 60L
#define CONNECT_TIMEOUT_S 10L

struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct kube_client *c;
};

struct kube_call {
    struct kube_client *c;
    CURL *easy;
    struct curl_slist *hdrs;
    char *body;
    struct buf resp;
    kube_response_fn *done;
    kube__data_fn *on_data;
    void *arg;
    bool streaming; /* on_data set and the status is 2xx */
    bool status_known;
    bool in_pending; /* on the client's stream-dispatch list */
    bool too_large;
    struct kube_call *prev, *next; /* all calls */
    struct kube_call *pend_next;   /* dispatch list */
    char errbuf[CURL_ERROR_SIZE];
};

struct kube_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct kube_config *cfg;
    unsigned open_handles;
    bool closing;
    struct kube_call *calls;
    struct kube_call *pending;
    /* Token file cache: re-read when the file's identity or mtime changes. */
    char *file_token;
    struct stat token_st;
    bool have_token_st;
};

static void client_maybe_release(struct kube_client *c)
{
    if (!c->closing || c->open_handles)
        return;
    kube_config_free(c->cfg);
    free(c->file_token);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct kube_client *c = h->data;
    c->open_handles--;
    client_maybe_release(c);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct sock_ctx *s = h->data;
    struct kube_client *c = s->c;
    free(s);
    c->open_handles--;
    client_maybe_release(c);
}

/* ---- completion ------------------------------------------------------------------------- */

static void call_unlink(struct kube_call *call)
{
    struct kube_client *c = call->c;
    if (call->prev)
        call->prev->next = call->next;
    else
        c->calls = call->next;
    if (call->next)
        call->next->prev = call->prev;
    if (call->in_pending) {
        struct kube_call **pp = &c->pending;
        while (*pp && *pp != call)
            pp = &(*pp)->pend_next;
        if (*pp)
            *pp = call->pend_next;
        call->in_pending = false;
    }
}

static void call_free(struct kube_call *call)
{
    if (call->easy) {
        curl_multi_remove_handle(call->c->multi, call->easy);
        curl_easy_cleanup(call->easy);
    }
    curl_slist_free_all(call->hdrs);
    free(call->body);
    buf_release(&call->resp);
    free(call);
}

static int curl_to_err(CURLcode cc)
{
    switch (cc) {
    case CURLE_OK:
        return 0;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_WRITE_ERROR:
    case CURLE_ABORTED_BY_CALLBACK:
        return -ECANCELED;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
        return -ECONNRESET;
    default:
        return -EIO;
    }
}

static void call_finish(struct kube_call *call, CURLcode cc)
{
    long status = 0;
    json_t *body = NULL;
    int err = curl_to_err(cc);

    call_unlink(call);
    if (call->too_large)
        err = -EFBIG;
    if (!err) {
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        if (!call->streaming && call->resp.len) {
            json_error_t jerr;
            body = conf_json_loadb(call->resp.p, call->resp.len, &jerr);
        }
    } else {
        log_debug("msg=\"kube request failed\" err=%s detail=\"%s\"", err_str(err), call->errbuf);
    }
    if (call->done)
        call->done(call->arg, err, err ? 0 : status, body);
    json_decref(body);
    call_free(call);
}

/* Hand buffered stream bytes to their consumers, outside libcurl. */
static void dispatch_streams(struct kube_client *c)
{
    while (c->pending) {
        struct kube_call *call = c->pending;
        struct buf data;

        c->pending = call->pend_next;
        call->in_pending = false;
        /* Take the bytes first: the consumer may cancel (and free) the call. */
        data = call->resp;
        buf_init(&call->resp);
        call->on_data(call->arg, data.p, data.len);
        buf_release(&data);
    }
}

static void check_done(struct kube_client *c)
{
    CURLMsg *msg;
    int left;

    dispatch_streams(c);
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        struct kube_call *call = NULL;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        if (call)
            call_finish(call, msg->data.result);
    }
}

/* ---- libcurl <-> libuv ------------------------------------------------------------------ */

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock_ctx *s = h->data;
    struct kube_client *c = s->c;
    int flags = 0, running;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    check_done(c);
}

static void on_timer(uv_timer_t *t)
{
    struct kube_client *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct kube_client *c = userp;
    struct sock_ctx *s = socketp;
    int events = 0;

    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_sock_closed);
            curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s)
            return -1;
        s->fd = fd;
        s->c = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct kube_client *c = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---- client ----------------------------------------------------------------------------- */

int kube_client_new(uv_loop_t *loop, const struct kube_config *cfg, struct kube_client **out)
{
    struct kube_client *c;
    int rc;

    if (!loop || !cfg)
        return -EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->loop = loop;
    rc = kube__config_dup(cfg, &c->cfg);
    if (rc) {
        free(c);
        return rc;
    }
    c->multi = curl_multi_init();
    if (!c->multi) {
        kube_config_free(c->cfg);
        free(c);
        return -EIO;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    *out = c;
    return 0;
}

void kube_client_free(struct kube_client *c)
{
    if (!c)
        return;
    /* No new calls from here on (kube_request fails with -EINVAL). */
    c->closing = true;
    while (c->calls) {
        struct kube_call *call = c->calls;
        call_unlink(call);
        /* Let owners of multi-step operations release their state. */
        if (call->done)
            call->done(call->arg, -ECANCELED, 0, NULL);
        call_free(call); /* removing the easy handle closes its sockets via socket_cb */
    }
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

uv_loop_t *kube_client_loop(const struct kube_client *c)
{
    return c->loop;
}

/* The bearer token: the configured one, or the token file's content (re-read when it changes). */
static const char *client_token(struct kube_client *c)
{
    struct stat st;
    FILE *f;
    char buf[16384];
    size_t n;

    if (!c->cfg->token_file)
        return c->cfg->token;
    if (stat(c->cfg->token_file, &st) != 0)
        return c->file_token ? c->file_token : c->cfg->token;
    if (c->have_token_st && c->file_token && st.st_ino == c->token_st.st_ino &&
        st.st_dev == c->token_st.st_dev && st.st_size == c->token_st.st_size &&
        st.st_mtim.tv_sec == c->token_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == c->token_st.st_mtim.tv_nsec)
        return c->file_token;
    f = fopen(c->cfg->token_file, "rb");
    if (!f)
        return c->file_token ? c->file_token : c->cfg->token;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    buf[strcspn(buf, "\r\n")] = '\0';
    if (buf[0]) {
        char *t = strdup(buf);
        if (t) {
            free(c->file_token);
            c->file_token = t;
            c->token_st = st;
            c->have_token_st = true;
        }
    }
    return c->file_token ? c->file_token : c->cfg->token;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct kube_call *call = userdata;
    size_t n = size * nmemb;

    if (!call->status_known) {
        long status = 0;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        call->status_known = true;
        call->streaming = call->on_data && status >= 200 && status < 300;
    }
    if (call->resp.len + n > MAX_RESPONSE) {
        call->too_large = true;
        return 0;
    }
    if (buf_append(&call->resp, ptr, n))
        return 0;
    if (call->streaming && !call->in_pending) {
        call->in_pending = true;
        call->pend_next = call->c->pending;
        call->c->pending = call;
    }
    return n;
}

static int call_new(struct kube_client *c, const char *method, const char *path, const json_t *body,
                    const char *content_type, long timeout_s, struct kube_call **out)
{
    struct kube_call *call = NULL;
    struct kube_config *cfg = c->cfg;
    struct buf url, hdr;
    const char *tok;
    int rc = -ENOMEM;

    buf_init(&url);
    buf_init(&hdr);
    if (!method || !path || path[0] != '/')
        return -EINVAL;
    call = calloc(1, sizeof(*call));
    if (!call)
        goto out;
    call->c = c;
    buf_init(&call->resp);
    call->easy = curl_easy_init();
    if (!call->easy || buf_printf(&url, "%s%s", cfg->server, path))
        goto out;
    curl_easy_setopt(call->easy, CURLOPT_URL, url.p);
    curl_easy_setopt(call->easy, CURLOPT_PRIVATE, call);
    curl_easy_setopt(call->easy, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(call->easy, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(call->easy, CURLOPT_ERRORBUFFER, call->errbuf);
    curl_easy_setopt(call->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(call->easy, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(call->easy, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(call->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(call->easy, CURLOPT_USERAGENT, "weft/0.1");
    curl_easy_setopt(call->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (cfg->insecure) {
        curl_easy_setopt(call->easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(call->easy, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (cfg->ca_data) {
        struct curl_blob b = {cfg->ca_data, cfg->ca_data_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(call->easy, CURLOPT_CAINFO_BLOB, &b);
    } else if (cfg->ca_file) {
        curl_easy_setopt(call->easy, CURLOPT_CAINFO, cfg->ca_file);
    }
    if (cfg->cert_data) {
        struct curl_blob b = {cfg->cert_data, cfg->cert_data_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(call->easy, CURLOPT_SSLCERT_BLOB, &b);
    } else if (cfg->cert_file) {
        curl_easy_setopt(call->easy, CURLOPT_SSLCERT, cfg->cert_file);
    }
    if (cfg->key_data) {
        struct curl_blob b = {cfg->key_data, cfg->key_data_len, CURL_BLOB_NOCOPY};
        curl_easy_setopt(call->easy, CURLOPT_SSLKEY_BLOB, &b);
    } else if (cfg->key_file) {
        curl_easy_setopt(call->easy, CURLOPT_SSLKEY, cfg->key_file);
    }
    if (!(call->hdrs = curl_slist_append(NULL, "Accept: application/json")))
        goto out;
    tok = client_token(c);
    if (tok) {
        struct curl_slist *l;
        if (buf_printf(&hdr, "Authorization: Bearer %s", tok) ||
            !(l = curl_slist_append(call->hdrs, hdr.p)))
            goto out;
        call->hdrs = l;
    }
    if (body) {
        struct curl_slist *l;
        call->body = json_dumps(body, JSON_COMPACT);
        buf_reset(&hdr);
        if (!call->body ||
            buf_printf(&hdr, "Content-Type: %s",
                       content_type ? content_type : "application/json") ||
            !(l = curl_slist_append(call->hdrs, hdr.p)))
            goto out;
        call->hdrs = l;
        curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS, call->body);
        curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(call->body));
    }
    if (strcmp(method, "GET") != 0) {
        if (!body && strcmp(method, "DELETE") != 0) {
            /* POST/PUT/PATCH without a body still need a request body (empty). */
            curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS, "");
            curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE, 0L);
        }
        curl_easy_setopt(call->easy, CURLOPT_CUSTOMREQUEST, method);
    }
    curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->hdrs);
    *out = call;
    call = NULL;
    rc = 0;
out:
    if (call)
        call_free(call);
    buf_release(&url);
    buf_release(&hdr);
    return rc;
}

static int call_start(struct kube_client *c, struct kube_call *call, struct kube_call **out)
{
    if (curl_multi_add_handle(c->multi, call->easy) != CURLM_OK) {
        call_free(call);
        return -EIO;
    }
    call->next = c->calls;
    if (c->calls)
        c->calls->prev = call;
    c->calls = call;
    if (out)
        *out = call;
    return 0;
}

int kube_request(struct kube_client *c, const char *method, const char *path, const json_t *body,
                 const char *content_type, kube_response_fn *cb, void *arg, struct kube_call **out)
{
    struct kube_call *call = NULL;
    int rc;

    if (!c || c->closing)
        return -EINVAL;
    rc = call_new(c, method, path, body, content_type, REQUEST_TIMEOUT_S, &call);
    if (rc)
        return rc;
    call->done = cb;
    call->arg = arg;
    return call_start(c, call, out);
}

int kube__request_stream(struct kube_client *c, const char *path, long timeout_s,
                         kube__data_fn *on_data, kube_response_fn *done, void *arg,
                         struct kube_call **out)
{
    struct kube_call *call = NULL;
    int rc;

    if (!c || c->closing || !on_data)
        return -EINVAL;
    rc = call_new(c, "GET", path, NULL, NULL, timeout_s, &call);
    if (rc)
        return rc;
    call->done = done;
    call->on_data = on_data;
    call->arg = arg;
    return call_start(c, call, out);
}

void kube_call_cancel(struct kube_call *call)
{
    if (!call)
        return;
    call_unlink(call);
    call_free(call);
}

/* ---- results ---------------------------------------------------------------------------- */

int kube_result_err(int err, long status, const json_t *body)
{
    const char *reason;

    if (err)
        return err;
    if (status >= 200 && status < 300)
        return 0;
    reason = json_string_value(json_object_get(body, "reason"));
    switch (status) {
    case 404:
        return ERR_NOTFOUND;
    case 409:
        return reason && strcmp(reason, "AlreadyExists") == 0 ? ERR_EXISTS : ERR_CONFLICT;
    case 410:
        return ERR_GONE;
    case 400:
    case 422:
        return ERR_INVALID;
    case 401:
    case 403:
        return -EACCES;
    case 415:
        return ERR_UNSUPPORTED;
    case 504:
        return -ETIMEDOUT;
    default:
        return -EIO;
    }
}

const char *kube_status_message(const json_t *body)
{
    const char *m = json_string_value(json_object_get(body, "message"));
    return m ? m : "";
}

static uint64_t mono_now(void *ctx)
{
    struct timespec ts;
    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const struct kube_clock_ops mono_ops = {mono_now};
const struct kube_clock kube_clock_monotonic = {&mono_ops, NULL};
