/*
 * kapi.c - kubeconfig loading and a blocking libcurl (easy) client for the API calls
 * kubelet-lite makes. One handle, reused so the connection stays open; every request has a
 * 10 s timeout (the server is local).
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/yamljson.h"
#include "tests/kubelite/kubelet/kubelet.h"

struct kclient {
    CURL *h;
    char *server;
    char *token;
    char *ca_pem;
    char *ca_file;
    char *cert_pem;
    char *key_pem;
    bool insecure;
};

void kclient_free(struct kclient *c)
{
    if (!c)
        return;
    if (c->h)
        curl_easy_cleanup(c->h);
    free(c->server);
    free(c->token);
    free(c->ca_pem);
    free(c->ca_file);
    free(c->cert_pem);
    free(c->key_pem);
    free(c);
}

const char *kclient_server(const struct kclient *c)
{
    return c->server;
}

/* The element of a kubeconfig list (clusters/users/contexts) named name, its inner key. */
static json_t *named(json_t *cfg, const char *list, const char *name, const char *inner)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(cfg, list), i, e)
    {
        const char *n = spec_str(e, "name");
        if (n && name && strcmp(n, name) == 0)
            return json_object_get(e, inner);
    }
    return NULL;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    struct buf b;
    char chunk[4096];
    size_t n;
    int rc = 0;

    if (!f)
        return NULL;
    buf_init(&b);
    while (!rc && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = buf_append(&b, chunk, n);
    fclose(f);
    if (!rc)
        rc = buf_append(&b, "", 0);
    if (rc) {
        buf_release(&b);
        return NULL;
    }
    return buf_take(&b);
}

static int decode_field(const json_t *obj, const char *key, char **out)
{
    const char *s = spec_str(obj, key);
    unsigned char *d;
    size_t n;
    int rc;

    *out = NULL;
    if (!s)
        return 0;
    rc = spec_b64_decode(s, &d, &n);
    if (rc)
        return rc;
    *out = (char *)d;
    return 0;
}

int kclient_new(const char *kubeconfig, struct kclient **out, char *msg, size_t msglen)
{
    struct kclient *c = calloc(1, sizeof(*c));
    char *text = NULL;
    struct diag yd = {0, ""};
    json_t *docs = NULL, *cfg, *ctx, *cluster, *user;
    const char *cur, *s;
    int rc = 0;

    if (!c)
        return -ENOMEM;
    text = read_file(kubeconfig);
    if (!text) {
        rc = -errno ? -errno : -EIO;
        snprintf(msg, msglen, "%s: %s", kubeconfig, strerror(-rc));
        goto out;
    }
    rc = yaml_to_json(text, strlen(text), &docs, &yd);
    if (rc) {
        snprintf(msg, msglen, "%s: %s", kubeconfig, yd.text);
        goto out;
    }
    cfg = json_array_get(docs, 0);
    cur = spec_str(cfg, "current-context");
    ctx = named(cfg, "contexts", cur, "context");
    if (!ctx && json_array_size(json_object_get(cfg, "contexts")) == 1)
        ctx = json_object_get(json_array_get(json_object_get(cfg, "contexts"), 0), "context");
    cluster = named(cfg, "clusters", spec_str(ctx, "cluster"), "cluster");
    user = named(cfg, "users", spec_str(ctx, "user"), "user");
    if (!cluster && json_array_size(json_object_get(cfg, "clusters")) == 1)
        cluster = json_object_get(json_array_get(json_object_get(cfg, "clusters"), 0), "cluster");
    if (!spec_str(cluster, "server")) {
        snprintf(msg, msglen, "%s: no cluster server for the current context", kubeconfig);
        rc = ERR_INVALID;
        goto out;
    }
    c->server = strdup(spec_str(cluster, "server"));
    c->insecure = json_is_true(json_object_get(cluster, "insecure-skip-tls-verify"));
    if ((rc = decode_field(cluster, "certificate-authority-data", &c->ca_pem)) ||
        (rc = decode_field(user, "client-certificate-data", &c->cert_pem)) ||
        (rc = decode_field(user, "client-key-data", &c->key_pem))) {
        snprintf(msg, msglen, "%s: bad base64 in certificate data", kubeconfig);
        goto out;
    }
    s = spec_str(cluster, "certificate-authority");
    if (s)
        c->ca_file = strdup(s);
    s = spec_str(user, "token");
    if (s) {
        c->token = strdup(s);
    } else if ((s = spec_str(user, "tokenFile")) != NULL) {
        c->token = read_file(s);
        if (!c->token) {
            rc = -errno ? -errno : -EIO;
            snprintf(msg, msglen, "%s: %s", s, strerror(-rc));
            goto out;
        }
        c->token[strcspn(c->token, "\r\n")] = '\0';
    }
    c->h = curl_easy_init();
    if (!c->server || !c->h) {
        rc = -ENOMEM;
        goto out;
    }
out:
    free(text);
    json_decref(docs);
    if (rc) {
        kclient_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct buf *b = ud;
    return buf_append(b, p, sz * n) ? 0 : sz * n;
}

static int code_of(long status, const char *reason)
{
    if (status == 404)
        return ERR_NOTFOUND;
    if (status == 409)
        return reason && strcmp(reason, "AlreadyExists") == 0 ? ERR_EXISTS : ERR_CONFLICT;
    if (status == 400 || status == 422)
        return ERR_INVALID;
    if (status == 405)
        return ERR_UNSUPPORTED;
    if (status == 401 || status == 403)
        return -EACCES;
    return -EIO;
}

static int request(struct kclient *c, const char *method, const char *path, const char *ctype,
                   const json_t *body, json_t **resp, char *msg, size_t msglen)
{
    struct curl_slist *hdrs = NULL;
    struct buf rb;
    char url[2048], auth[8192], ct[128], errbuf[CURL_ERROR_SIZE] = "";
    char *payload = NULL;
    long status = 0;
    json_t *j = NULL;
    CURLcode cc;
    int rc = 0;

    buf_init(&rb);
    snprintf(url, sizeof(url), "%s%s", c->server, path);
    curl_easy_reset(c->h);
    curl_easy_setopt(c->h, CURLOPT_URL, url);
    curl_easy_setopt(c->h, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c->h, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(c->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(c->h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->h, CURLOPT_WRITEDATA, &rb);
    if (c->insecure) {
        curl_easy_setopt(c->h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c->h, CURLOPT_SSL_VERIFYHOST, 0L);
    } else if (c->ca_pem) {
        struct curl_blob blob = {c->ca_pem, strlen(c->ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(c->h, CURLOPT_CAINFO_BLOB, &blob);
    } else if (c->ca_file) {
        curl_easy_setopt(c->h, CURLOPT_CAINFO, c->ca_file);
    }
    if (c->cert_pem && c->key_pem) {
        struct curl_blob cb = {c->cert_pem, strlen(c->cert_pem), CURL_BLOB_COPY};
        struct curl_blob kb = {c->key_pem, strlen(c->key_pem), CURL_BLOB_COPY};
        curl_easy_setopt(c->h, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(c->h, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(c->h, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(c->h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    hdrs = curl_slist_append(hdrs, "User-Agent: kubelet-lite/0.1");
    if (c->token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", c->token);
        hdrs = curl_slist_append(hdrs, auth);
    }
    if (body) {
        payload = json_dumps(body, JSON_COMPACT);
        if (!payload) {
            rc = -ENOMEM;
            goto out;
        }
        snprintf(ct, sizeof(ct), "Content-Type: %s", ctype ? ctype : "application/json");
        hdrs = curl_slist_append(hdrs, ct);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(c->h, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    if (!hdrs) {
        rc = -ENOMEM;
        goto out;
    }
    curl_easy_setopt(c->h, CURLOPT_HTTPHEADER, hdrs);
    cc = curl_easy_perform(c->h);
    if (cc != CURLE_OK) {
        if (msg)
            snprintf(msg, msglen, "%s %s: %s", method, path,
                     errbuf[0] ? errbuf : curl_easy_strerror(cc));
        rc = -EIO;
        goto out;
    }
    curl_easy_getinfo(c->h, CURLINFO_RESPONSE_CODE, &status);
    if (rb.len)
        j = json_loadb(rb.p, rb.len, 0, NULL);
    if (status < 200 || status > 299) {
        if (msg)
            snprintf(msg, msglen, "%s %s: %ld %s", method, path, status,
                     spec_str(j, "message") ? spec_str(j, "message") : "");
        rc = code_of(status, spec_str(j, "reason"));
        goto out;
    }
    if (resp) {
        if (!j) {
            if (msg)
                snprintf(msg, msglen, "%s %s: the answer is not JSON", method, path);
            rc = -EIO;
            goto out;
        }
        *resp = j;
        j = NULL;
    }
out:
    curl_slist_free_all(hdrs);
    free(payload);
    json_decref(j);
    buf_release(&rb);
    return rc;
}

static int op_list(void *ctx, const char *path, json_t **items)
{
    json_t *list = NULL, *it;
    int rc = request(ctx, "GET", path, NULL, NULL, &list, NULL, 0);

    if (rc)
        return rc;
    it = json_object_get(list, "items");
    if (!json_is_array(it)) {
        json_decref(list);
        return -EIO;
    }
    *items = json_incref(it);
    json_decref(list);
    return 0;
}

static int op_get(void *ctx, const char *path, json_t **obj)
{
    return request(ctx, "GET", path, NULL, NULL, obj, NULL, 0);
}

static int op_call(void *ctx, const char *method, const char *path, const char *content_type,
                   const json_t *body, json_t **resp, char *msg, size_t msglen)
{
    return request(ctx, method, path, content_type, body, resp, msg, msglen);
}

const struct kapi_ops kclient_ops = {op_list, op_get, op_call};
