/*
 * admission.c - calling admission webhooks as kube-apiserver does (AdmissionReview v1).
 *
 * Mutating configurations are called in name order, each webhook's JSONPatch applied before
 * the next call, with one reinvocation pass for reinvocationPolicy IfNeeded; validating ones
 * after schema validation. Matching: rules (operations, apiGroups, apiVersions, resources with
 * subresources, scope), namespaceSelector, objectSelector. Calls are HTTPS through libcurl's
 * multi interface on kubelite's own loop, so the server keeps serving while a webhook thinks;
 * TLS is verified against caBundle with the service's DNS name (<svc>.<ns>.svc) as SNI, and
 * service targets are reached through the Service's ready endpoints.
 */
#include <curl/curl.h>
#include <errno.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/base64.h"
#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"
#include "tests/kubelite/patch.h"
#include "tests/kubelite/selector.h"

struct adm_pending {
    json_t *hooks; /* [{"config": name, "hook": webhook}] in call order */
    size_t idx;
    int pass;
    bool mutating;
    json_t *mutated_at; /* indexes (pass 1) whose webhook changed the object */
    kl_write_fn next;
};

struct adm_call {
    struct kl_write *w;
    CURL *easy;
    struct curl_slist *hdrs;
    struct curl_slist *connect_to;
    struct buf resp;
    char *body;
    char url[1024];
    char uid[37];
};

/* ------------------------------------------------------------ libcurl on the loop */

static void check_done(struct kl *kl);

static void on_fd(void *arg, int fd, unsigned events)
{
    struct kl *kl = arg;
    int running, flags = 0;
    if (events & EPOLLIN)
        flags |= CURL_CSELECT_IN;
    if (events & EPOLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (events & (EPOLLERR | EPOLLHUP))
        flags |= CURL_CSELECT_ERR;
    curl_multi_socket_action(kl->curlm, fd, flags, &running);
    check_done(kl);
}

static void on_timer(void *arg)
{
    struct kl *kl = arg;
    int running;
    curl_multi_socket_action(kl->curlm, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(kl);
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct kl *kl = userp;
    struct http_fdwatch *w = socketp;
    unsigned ev = (what == CURL_POLL_IN    ? EPOLLIN
                   : what == CURL_POLL_OUT ? EPOLLOUT
                                           : EPOLLIN | EPOLLOUT);
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        http_fd_unwatch(w);
        curl_multi_assign(kl->curlm, s, NULL);
        return 0;
    }
    if (w) {
        http_fd_modify(w, ev);
    } else if (http_fd_watch(kl->http, s, ev, on_fd, kl, &w) == 0) {
        curl_multi_assign(kl->curlm, s, w);
    }
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct kl *kl = userp;
    (void)multi;
    http_server_set_timer(kl->http, timeout_ms, on_timer, kl);
    return 0;
}

int kl_admission_init(struct kl *kl)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    kl->curlm = curl_multi_init();
    if (!kl->curlm)
        return -ENOMEM;
    curl_multi_setopt(kl->curlm, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(kl->curlm, CURLMOPT_SOCKETDATA, kl);
    curl_multi_setopt(kl->curlm, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(kl->curlm, CURLMOPT_TIMERDATA, kl);
    return 0;
}

void kl_admission_release(struct kl *kl)
{
    if (kl->curlm)
        curl_multi_cleanup(kl->curlm);
    kl->curlm = NULL;
    curl_global_cleanup();
}

/* ------------------------------------------------------------ matching */

static bool resource_matches(const json_t *resources, const char *plural, const char *sub)
{
    size_t i;
    json_t *x;
    json_array_foreach(resources, i, x)
    {
        const char *r = json_string_value(x);
        const char *slash;
        char want_main[300];
        if (!r)
            continue;
        slash = strchr(r, '/');
        if (!sub || !*sub) {
            if (slash)
                continue;
            if (strcmp(r, "*") == 0 || strcmp(r, plural) == 0)
                return true;
        } else {
            if (!slash)
                continue;
            snprintf(want_main, sizeof(want_main), "%.*s", (int)(slash - r), r);
            if ((strcmp(want_main, "*") == 0 || strcmp(want_main, plural) == 0) &&
                (strcmp(slash + 1, "*") == 0 || strcmp(slash + 1, sub) == 0))
                return true;
        }
    }
    return false;
}

static bool label_selector_matches(const json_t *sel, const json_t *obj)
{
    struct selector *s = NULL;
    char msg[256];
    bool ok;
    if (!sel || json_is_null(sel))
        return true;
    if (selector_from_json(sel, &s, msg, sizeof(msg)))
        return false;
    ok = selector_match(s, obj);
    selector_free(s);
    return ok;
}

static bool hook_matches(struct kl *kl, const json_t *hook, const struct kl_write *w,
                         const struct rtype *rt, const char *op)
{
    size_t i;
    json_t *rule;
    bool any = false;

    json_array_foreach(json_object_get(hook, "rules"), i, rule)
    {
        const char *scope = jstr_or(rule, "scope", "*");
        if (!jlist_has(json_object_get(rule, "operations"), op) ||
            !jlist_has(json_object_get(rule, "apiGroups"), rt->group) ||
            !jlist_has(json_object_get(rule, "apiVersions"), rt->version) ||
            !resource_matches(json_object_get(rule, "resources"), rt->plural, w->subresource))
            continue;
        if (strcmp(scope, "Namespaced") == 0 && !rt->namespaced)
            continue;
        if (strcmp(scope, "Cluster") == 0 && rt->namespaced)
            continue;
        any = true;
        break;
    }
    if (!any)
        return false;
    /* namespaceSelector: the labels of the object's namespace (a Namespace's own labels). */
    if (json_object_get(hook, "namespaceSelector")) {
        const json_t *nsobj = NULL;
        if (rt->namespaced) {
            struct rstore *st = kl_store_get(kl, "", "namespaces", false);
            char key[300];
            kl_key(NULL, w->ns ? w->ns : "", key, sizeof(key));
            nsobj = st ? kl_store_lookup(st, key) : NULL;
        } else if (strcmp(rt->plural, "namespaces") == 0 && !rt->group[0]) {
            nsobj = w->obj;
        }
        if ((rt->namespaced || nsobj) &&
            !label_selector_matches(json_object_get(hook, "namespaceSelector"), nsobj))
            return false;
    }
    if (json_object_get(hook, "objectSelector") &&
        !label_selector_matches(json_object_get(hook, "objectSelector"), w->obj) &&
        !(w->old && label_selector_matches(json_object_get(hook, "objectSelector"), w->old)))
        return false;
    return true;
}

static json_t *matching_hooks(struct kl *kl, const struct kl_write *w, bool mutating)
{
    const struct rtype *rt = kl_write_rtype(w);
    struct rstore *st = kl_store_get(
        kl, "admissionregistration.k8s.io",
        mutating ? "mutatingwebhookconfigurations" : "validatingwebhookconfigurations", false);
    json_t *out = json_array(), *configs, *cfg;
    bool gone;
    size_t i, j;
    json_t *hook;

    if (!st || !rt || !json_object_size(st->objs))
        return out;
    configs = kl_store_snapshot(kl, st, 0, &gone); /* sorted by name */
    json_array_foreach(configs, i, cfg)
    {
        json_array_foreach(json_object_get(cfg, "webhooks"), j, hook)
        {
            if (hook_matches(kl, hook, w, rt, w->create ? "CREATE" : "UPDATE"))
                json_array_append_new(
                    out,
                    json_pack("{s:s,s:O}", "config",
                              jstr_or(json_object_get(cfg, "metadata"), "name", ""), "hook", hook));
        }
    }
    json_decref(configs);
    return out;
}

/* ------------------------------------------------------------ calls */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct adm_call *call = userdata;
    if (call->resp.len + size * nmemb > 8u * 1024 * 1024)
        return 0;
    if (buf_append(&call->resp, ptr, size * nmemb))
        return 0;
    return size * nmemb;
}

static void call_free(struct adm_call *call)
{
    if (!call)
        return;
    if (call->easy)
        curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->hdrs);
    curl_slist_free_all(call->connect_to);
    buf_release(&call->resp);
    free(call->body);
    free(call);
}

static void pending_free(struct adm_pending *p)
{
    if (!p)
        return;
    json_decref(p->hooks);
    json_decref(p->mutated_at);
    free(p);
}

/* Fail the write: the client gets the error, the write is dropped. */
static void fail_write(struct kl_write *w, int code, const char *reason, const char *msg)
{
    kl_respond_status(w->c, code, reason, msg, NULL, NULL, NULL, NULL);
    pending_free(w->pending);
    w->pending = NULL;
    kl_write_free(w);
}

static void call_next(struct kl_write *w);

/*
 * A webhook that could not be called or answered badly: failurePolicy decides. With url, why is
 * a transport error ("failed to call webhook: Post URL: why"); without, the whole reason.
 */
static void hook_failed(struct kl_write *w, const json_t *hook, const char *url, const char *why)
{
    char msg[2048];
    const char *name = jstr_or(hook, "name", "");
    const char *policy = jstr_or(hook, "failurePolicy", "Fail");

    if (strcmp(policy, "Ignore") == 0) {
        log_warn("msg=\"webhook call failed, ignored by failurePolicy\" webhook=%s error=\"%s\"",
                 name, why);
        ((struct adm_pending *)w->pending)->idx++;
        call_next(w);
        return;
    }
    if (url)
        snprintf(msg, sizeof(msg),
                 "Internal error occurred: failed calling webhook \"%s\": failed to call "
                 "webhook: Post \"%s\": %s",
                 name, url, why);
    else
        snprintf(msg, sizeof(msg), "Internal error occurred: failed calling webhook \"%s\": %s",
                 name, why);
    fail_write(w, 500, "InternalError", msg);
}

/* Transport errors in the words of Go's net/http and crypto/tls, as kube-apiserver reports them. */
static void describe_error(struct adm_call *call, CURLcode res, char *why, size_t whylen)
{
    long os_errno = 0, verify = 0, port = 0;
    char *ip = NULL;

    if (res == CURLE_OPERATION_TIMEDOUT) {
        snprintf(why, whylen, "context deadline exceeded");
        return;
    }
    if (res == CURLE_COULDNT_CONNECT) {
        curl_easy_getinfo(call->easy, CURLINFO_OS_ERRNO, &os_errno);
        curl_easy_getinfo(call->easy, CURLINFO_PRIMARY_IP, &ip);
        curl_easy_getinfo(call->easy, CURLINFO_PRIMARY_PORT, &port);
        if (os_errno == ECONNREFUSED && ip && *ip) {
            snprintf(why, whylen, "dial tcp %s:%ld: connect: connection refused", ip, port);
            return;
        }
        if (os_errno == ECONNREFUSED) { /* not connected: the address dialled */
            const char *h = call->connect_to ? call->connect_to->data : call->url;
            if (call->connect_to) /* name:port:addr:port */
                h = strchr(strchr(h, ':') + 1, ':') + 1;
            else
                h = strstr(h, "://") ? strstr(h, "://") + 3 : h;
            snprintf(why, whylen, "dial tcp %.*s: connect: connection refused",
                     (int)strcspn(h, "/?"), h);
            return;
        }
    }
    if (res == CURLE_PEER_FAILED_VERIFICATION) {
        curl_easy_getinfo(call->easy, CURLINFO_SSL_VERIFYRESULT, &verify);
        if (verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
            verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
            verify == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
            verify == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
            verify == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE)
            snprintf(why, whylen,
                     "tls: failed to verify certificate: x509: certificate signed by unknown "
                     "authority");
        else if (verify)
            snprintf(why, whylen, "tls: failed to verify certificate: x509: %s",
                     X509_verify_cert_error_string(verify));
        else { /* the chain is good: libcurl's own host name check failed */
            const char *h = strstr(call->url, "://");
            h = h ? h + 3 : call->url;
            snprintf(why, whylen,
                     "tls: failed to verify certificate: x509: certificate is not "
                     "valid for %.*s",
                     (int)strcspn(h, ":/?"), h);
        }
        return;
    }
    snprintf(why, whylen, "%s", curl_easy_strerror(res));
}

/*
 * The checks of kube-apiserver's VerifyAdmissionResponse (v1): the reason a response is
 * invalid, or NULL.
 */
static const char *verify_response(const json_t *review, const json_t *resp, const char *uid,
                                   bool mutating, char *why, size_t whylen)
{
    const json_t *pt = json_object_get(resp, "patchType");
    bool has_patch = jstr(resp, "patch") && *jstr(resp, "patch");

    if (!json_is_object(resp))
        return "webhook response was absent";
    if (strcmp(jstr_or(resp, "uid", ""), uid) != 0) {
        snprintf(why, whylen, "expected response.uid=\"%s\", got \"%s\"", uid,
                 jstr_or(resp, "uid", ""));
        return why;
    }
    if (strcmp(jstr_or(review, "apiVersion", ""), "admission.k8s.io/v1") != 0 ||
        strcmp(jstr_or(review, "kind", ""), "AdmissionReview") != 0) {
        snprintf(why, whylen,
                 "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got "
                 "%s, Kind=%s",
                 jstr_or(review, "apiVersion", ""), jstr_or(review, "kind", ""));
        return why;
    }
    if (!mutating) {
        if (has_patch)
            return "validating webhook may not return response.patch";
        if (pt && !json_is_null(pt))
            return "validating webhook may not return response.patchType";
        return NULL;
    }
    if (has_patch && (!pt || json_is_null(pt)))
        return "webhook returned response.patch but not response.patchType";
    if (!has_patch && pt && !json_is_null(pt))
        return "webhook returned response.patchType but not response.patch";
    if (pt && !json_is_null(pt) && !(json_string_value(pt) && *json_string_value(pt))) {
        snprintf(why, whylen, "webhook returned invalid response.patchType of \"%s\"",
                 json_string_value(pt) ? json_string_value(pt) : "");
        return why;
    }
    return NULL;
}

static void handle_response(struct adm_call *call, CURLcode res)
{
    struct kl_write *w = call->w;
    struct adm_pending *p = w->pending;
    json_t *entry = json_array_get(p->hooks, p->idx);
    json_t *hook = json_object_get(entry, "hook");
    json_t *review = NULL, *resp;
    json_error_t jerr;
    long status = 0;
    char why[1024], invalid[1100];
    const char *bad;

    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    if (res != CURLE_OK) {
        describe_error(call, res, why, sizeof(why));
        hook_failed(w, hook, call->url, why);
        return;
    }
    if (status != 200) {
        snprintf(why, sizeof(why), "the server responded with status %ld", status);
        hook_failed(w, hook, call->url, why);
        return;
    }
    review = json_loadb(call->resp.p ? call->resp.p : "", call->resp.len, 0, &jerr);
    if (!json_is_object(review)) {
        snprintf(why, sizeof(why), "invalid character in the response body: %s", jerr.text);
        json_decref(review);
        hook_failed(w, hook, call->url, why);
        return;
    }
    resp = json_object_get(review, "response");
    bad = verify_response(review, resp, call->uid, p->mutating, why, sizeof(why));
    if (bad) {
        snprintf(invalid, sizeof(invalid), "received invalid webhook response: %s", bad);
        json_decref(review);
        hook_failed(w, hook, NULL, invalid);
        return;
    }
    {
        size_t i;
        json_t *warn;
        json_array_foreach(json_object_get(resp, "warnings"), i, warn)
        {
            if (json_string_value(warn))
                IGNORE_RESULT(
                    buf_printf(&w->hdrs, "Warning: 299 - \"%s\"\r\n", json_string_value(warn)));
        }
    }
    if (!json_is_true(json_object_get(resp, "allowed"))) {
        /* As webhookerrors.ToStatusErr: code at least 400, the webhook's reason kept. */
        json_t *st = json_object_get(resp, "status");
        long code = (long)json_integer_value(json_object_get(st, "code"));
        const char *m = jstr(st, "message"), *r = jstr(st, "reason");
        char msg[2048];
        if (code < 400)
            code = 400;
        if (m && *m)
            snprintf(msg, sizeof(msg), "admission webhook \"%s\" denied the request: %s",
                     jstr_or(hook, "name", ""), m);
        else if (r && *r)
            snprintf(msg, sizeof(msg), "admission webhook \"%s\" denied the request: %s",
                     jstr_or(hook, "name", ""), r);
        else
            snprintf(msg, sizeof(msg),
                     "admission webhook \"%s\" denied the request without explanation",
                     jstr_or(hook, "name", ""));
        fail_write(w, (int)code, r ? r : "", msg);
        json_decref(review);
        return;
    }
    if (jstr(resp, "patch")) {
        const char *pt = jstr(resp, "patchType");
        size_t plen;
        char *raw, pmsg[512];
        json_t *ops, *patched = NULL;
        if (!pt || strcmp(pt, "JSONPatch") != 0) {
            snprintf(why, sizeof(why), "unsupported patch type \"%s\"", pt ? pt : "");
            json_decref(review);
            hook_failed(w, hook, NULL, why);
            return;
        }
        if (base64_decode(jstr(resp, "patch"), &raw, &plen))
            raw = NULL;
        ops = raw ? json_loadb(raw, plen, 0, &jerr) : NULL;
        free(raw);
        if (!ops || patch_json(w->obj, ops, &patched, pmsg, sizeof(pmsg))) {
            char msg[1024];
            snprintf(msg, sizeof(msg),
                     "Internal error occurred: admission webhook \"%s\" returned a patch that "
                     "could not be applied: %s",
                     jstr_or(hook, "name", ""), ops ? pmsg : "not a JSON patch");
            json_decref(ops);
            json_decref(review);
            fail_write(w, 500, "InternalError", msg);
            return;
        }
        json_decref(ops);
        if (!json_equal(patched, w->obj) && p->pass == 1)
            json_array_append_new(p->mutated_at, json_integer((json_int_t)p->idx));
        json_decref(w->obj);
        w->obj = patched;
    }
    json_decref(review);
    p->idx++;
    call_next(w);
}

static void check_done(struct kl *kl)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(kl->curlm, &left))) {
        struct adm_call *call = NULL;
        CURLcode res;
        if (m->msg != CURLMSG_DONE)
            continue;
        res = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        curl_multi_remove_handle(kl->curlm, m->easy_handle);
        if (call) {
            handle_response(call, res);
            call_free(call);
        }
    }
}

/* Where to send the review: url, or the service's ready endpoint. */
static int resolve_target(struct kl *kl, const json_t *hook, struct adm_call *call, char *why,
                          size_t whylen)
{
    const json_t *cc = json_object_get(hook, "clientConfig"), *svc = json_object_get(cc, "service");
    long timeout = json_is_integer(json_object_get(hook, "timeoutSeconds"))
                       ? (long)json_integer_value(json_object_get(hook, "timeoutSeconds"))
                       : 10;
    if (jstr(cc, "url")) {
        snprintf(call->url, sizeof(call->url), "%s%stimeout=%lds", jstr(cc, "url"),
                 strchr(jstr(cc, "url"), '?') ? "&" : "?", timeout);
        return 0;
    }
    if (svc) {
        const char *name = jstr_or(svc, "name", ""), *ns = jstr_or(svc, "namespace", "");
        long port = json_is_integer(json_object_get(svc, "port"))
                        ? (long)json_integer_value(json_object_get(svc, "port"))
                        : 443;
        struct rstore *svcs = kl_store_get(kl, "", "services", false);
        struct rstore *eps = kl_store_get(kl, "discovery.k8s.io", "endpointslices", false);
        char key[600], ct[700];
        const json_t *s, *sp, *slice;
        const char *pname = NULL, *k;
        size_t i;

        snprintf(call->url, sizeof(call->url), "https://%s.%s.svc:%ld%s?timeout=%lds", name, ns,
                 port, jstr_or(svc, "path", ""), timeout);
        kl_key(ns, name, key, sizeof(key));
        s = svcs ? kl_store_lookup((struct rstore *)svcs, key) : NULL;
        if (!s) {
            snprintf(why, whylen, "service \"%s\" not found", name);
            return -ENOENT;
        }
        json_array_foreach(jget2(s, "spec", "ports"), i, sp)
        {
            if (json_integer_value(json_object_get(sp, "port")) == port)
                pname = jstr_or(sp, "name", "");
        }
        if (!pname) {
            snprintf(why, whylen, "service \"%s\" has no port %ld", name, port);
            return -ENOENT;
        }
        if (eps)
            json_object_foreach(eps->objs, k, slice)
            {
                json_t *ep, *p;
                size_t j;
                long target = 0;
                if (strcmp(jstr_or(json_object_get(slice, "metadata"), "namespace", ""), ns) ||
                    strcmp(jstr_or(jget2(slice, "metadata", "labels"), "kubernetes.io/service-name",
                                   ""),
                           name))
                    continue;
                json_array_foreach(json_object_get(slice, "ports"), j, p)
                {
                    if (strcmp(jstr_or(p, "name", ""), pname) == 0)
                        target = (long)json_integer_value(json_object_get(p, "port"));
                }
                json_array_foreach(json_object_get(slice, "endpoints"), j, ep)
                {
                    const char *addr =
                        json_string_value(json_array_get(json_object_get(ep, "addresses"), 0));
                    if (!addr || !target || !json_is_true(jget2(ep, "conditions", "ready")))
                        continue;
                    snprintf(ct, sizeof(ct), "%s.%s.svc:%ld:%s:%ld", name, ns, port, addr, target);
                    call->connect_to = curl_slist_append(NULL, ct);
                    return call->connect_to ? 0 : -ENOMEM;
                }
            }
        snprintf(why, whylen, "no endpoints available for service \"%s\"", name);
        return -ENOENT;
    }
    snprintf(why, whylen, "webhook has neither url nor service");
    return -EINVAL;
}

static json_t *build_review(struct kl *kl, struct kl_write *w, const char *uid)
{
    const struct rtype *rt = kl_write_rtype(w);
    char dry[16];
    bool dry_run = http_query_get(w->req, "dryRun", dry, sizeof(dry)) && strcmp(dry, "All") == 0;
    char mgr[256] = "";
    json_t *req, *options;

    (void)kl;
    http_query_get(w->req, "fieldManager", mgr, sizeof(mgr));
    options = json_pack("{s:s,s:s}", "kind", w->create ? "CreateOptions" : "UpdateOptions",
                        "apiVersion", "meta.k8s.io/v1");
    if (dry_run)
        json_object_set_new(options, "dryRun", json_pack("[s]", "All"));
    if (mgr[0])
        json_object_set_new(options, "fieldManager", json_string(mgr));
    req =
        json_pack("{s:s,s:{s:s,s:s,s:s},s:{s:s,s:s,s:s},s:{s:s,s:s,s:s},s:{s:s,s:s,s:s},s:s,"
                  "s:s,s:O,s:b,s:o}",
                  "uid", uid, "kind", "group", rt->group, "version", rt->version, "kind", rt->kind,
                  "resource", "group", rt->group, "version", rt->version, "resource", rt->plural,
                  "requestKind", "group", rt->group, "version", rt->version, "kind", rt->kind,
                  "requestResource", "group", rt->group, "version", rt->version, "resource",
                  rt->plural, "name", w->name, "operation", w->create ? "CREATE" : "UPDATE",
                  "object", w->obj, "dryRun", dry_run, "options", options);
    if (!req)
        return NULL;
    if (w->ns)
        json_object_set_new(req, "namespace", json_string(w->ns));
    if (w->subresource[0]) {
        json_object_set_new(req, "subResource", json_string(w->subresource));
        json_object_set_new(req, "requestSubResource", json_string(w->subresource));
    }
    if (w->old)
        json_object_set(req, "oldObject", w->old);
    {
        json_t *ui = json_object();
        json_object_set_new(ui, "username",
                            json_string(jstr_or(w->user, "username", "system:anonymous")));
        if (jstr(w->user, "uid"))
            json_object_set_new(ui, "uid", json_string(jstr(w->user, "uid")));
        if (json_object_get(w->user, "groups"))
            json_object_set(ui, "groups", json_object_get(w->user, "groups"));
        json_object_set_new(req, "userInfo", ui);
    }
    return json_pack("{s:s,s:s,s:o}", "apiVersion", "admission.k8s.io/v1", "kind",
                     "AdmissionReview", "request", req);
}

static void start_call(struct kl_write *w, const json_t *hook)
{
    struct kl *kl = w->kl;
    struct adm_call *call = calloc(1, sizeof(*call));
    json_t *review = NULL;
    char why[512];
    const char *cab = jstr(json_object_get(hook, "clientConfig"), "caBundle");
    long timeout = json_is_integer(json_object_get(hook, "timeoutSeconds"))
                       ? (long)json_integer_value(json_object_get(hook, "timeoutSeconds"))
                       : 10;

    if (!call) {
        fail_write(w, 500, "InternalError", "out of memory");
        return;
    }
    call->w = w;
    buf_init(&call->resp);
    if (resolve_target(kl, hook, call, why, sizeof(why))) {
        char url[1100];
        snprintf(url, sizeof(url), "%s", call->url);
        call_free(call);
        hook_failed(w, hook, url, why);
        return;
    }
    kl_new_uid(kl, call->uid);
    review = build_review(kl, w, call->uid);
    call->body = review ? json_dumps(review, JSON_COMPACT) : NULL;
    json_decref(review);
    call->easy = curl_easy_init();
    call->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    call->hdrs = curl_slist_append(call->hdrs, "Accept: application/json, */*");
    if (!call->body || !call->easy || !call->hdrs) {
        call_free(call);
        fail_write(w, 500, "InternalError", "out of memory");
        return;
    }
    curl_easy_setopt(call->easy, CURLOPT_URL, call->url);
    curl_easy_setopt(call->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(call->easy, CURLOPT_POSTFIELDS, call->body);
    curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(call->body));
    curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->hdrs);
    curl_easy_setopt(call->easy, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(call->easy, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(call->easy, CURLOPT_PRIVATE, call);
    curl_easy_setopt(call->easy, CURLOPT_TIMEOUT_MS, timeout * 1000L);
    curl_easy_setopt(call->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(call->easy, CURLOPT_PROTOCOLS_STR, "https");
    if (call->connect_to)
        curl_easy_setopt(call->easy, CURLOPT_CONNECT_TO, call->connect_to);
    if (cab) {
        size_t n = 0;
        char *pem = NULL;
        if (base64_decode(cab, &pem, &n) == 0) {
            struct curl_blob blob = {pem, n, CURL_BLOB_COPY};
            curl_easy_setopt(call->easy, CURLOPT_CAINFO_BLOB, &blob);
        }
        free(pem);
    }
    if (curl_multi_add_handle(kl->curlm, call->easy) != CURLM_OK) {
        char url[1100];
        snprintf(url, sizeof(url), "%s", call->url);
        call_free(call);
        hook_failed(w, hook, url, "cannot start the request");
    }
}

static void call_next(struct kl_write *w)
{
    struct adm_pending *p = w->pending;
    kl_write_fn next;

    if (p->idx < json_array_size(p->hooks)) {
        json_t *hook = json_object_get(json_array_get(p->hooks, p->idx), "hook");
        char dry[16];
        const char *se = jstr_or(hook, "sideEffects", "Unknown");
        if (http_query_get(w->req, "dryRun", dry, sizeof(dry)) && strcmp(dry, "All") == 0 &&
            strcmp(se, "None") != 0 && strcmp(se, "NoneOnDryRun") != 0) {
            char msg[600];
            snprintf(msg, sizeof(msg), "admission webhook \"%s\" does not support dry run",
                     jstr_or(hook, "name", ""));
            fail_write(w, 400, "BadRequest", msg);
            return;
        }
        start_call(w, hook);
        return;
    }
    /* Reinvocation: IfNeeded webhooks run once more if a later one changed the object. */
    if (p->mutating && p->pass == 1 && json_array_size(p->mutated_at)) {
        json_t *again = json_array(), *e;
        size_t i, j;
        json_t *m;
        json_array_foreach(p->hooks, i, e)
        {
            bool later_change = false;
            if (strcmp(jstr_or(json_object_get(e, "hook"), "reinvocationPolicy", "Never"),
                       "IfNeeded") != 0)
                continue;
            json_array_foreach(p->mutated_at, j, m) later_change |=
                (size_t)json_integer_value(m) > i;
            if (later_change)
                json_array_append(again, e);
        }
        if (json_array_size(again)) {
            json_decref(p->hooks);
            p->hooks = again;
            p->idx = 0;
            p->pass = 2;
            call_next(w);
            return;
        }
        json_decref(again);
    }
    next = p->next;
    pending_free(p);
    w->pending = NULL;
    next(w);
}

static void on_client_gone(void *arg, struct http_conn *c)
{
    struct kl_write *w = arg;
    (void)c;
    w->c = NULL; /* the write still completes, as on a real server */
}

void kl_admit(struct kl_write *w, bool mutating, kl_write_fn next)
{
    struct adm_pending *p;
    json_t *hooks;

    if (!w->kl->curlm) {
        next(w);
        return;
    }
    hooks = matching_hooks(w->kl, w, mutating);
    if (!json_array_size(hooks)) {
        json_decref(hooks);
        next(w);
        return;
    }
    p = calloc(1, sizeof(*p));
    if (!p) {
        json_decref(hooks);
        fail_write(w, 500, "InternalError", "out of memory");
        return;
    }
    p->hooks = hooks;
    p->pass = 1;
    p->mutating = mutating;
    p->mutated_at = json_array();
    p->next = next;
    w->pending = p;
    if (w->c)
        http_defer(w->c, on_client_gone, w);
    call_next(w);
}
