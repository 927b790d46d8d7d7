/*
 * identity.c - the pod's certificate: a key made in memory, a CSR to weftd's
 * POST /v1/certificates with the projected token, and when to renew or retry
 * (docs/agent.md, "Identity").
 *
 * The key and the CSR come from ca/ (the only module that calls OpenSSL's crypto API); the
 * request is libcurl's, verified against the trust bundle the webhook mounts. Nothing here
 * logs: the agent's loop reports outcomes, never the key or the token.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/agent.h"
#include "ca/ca.h"
#include "tls/tls.h"

/* Answers beyond this are refused (a chain and a bundle are a few KiB). */
#define ANSWER_MAX (1u << 20)
/* A projected token is a JWT of a few KiB. */
#define TOKEN_MAX (64u << 10)

long agent_renew_delay_ms(time_t now, time_t not_after, double rnd)
{
    double left = (double)(not_after - now) * 1000.0;
    double d;

    if (rnd < 0 || rnd >= 1)
        rnd = 0;
    d = left / 2 - rnd * left / 10;
    return d < 1000 ? 1000 : (long)d;
}

long agent_retry_delay_ms(unsigned attempt, time_t now, time_t not_after, double rnd)
{
    double d = 1000.0;

    if (rnd < 0 || rnd >= 1)
        rnd = 0;
    for (unsigned i = 0; i < attempt && d < 30000.0; i++)
        d *= 2;
    if (d > 30000.0)
        d = 30000.0;
    d *= 0.5 + rnd / 2;
    /* with a certificate held, retry well before it runs out */
    if (not_after && not_after > now && d > (double)(not_after - now) * 500.0)
        d = (double)(not_after - now) * 500.0;
    return d < 200 ? 200 : (long)d;
}

void agent_cert_release(struct agent_cert *c)
{
    if (!c)
        return;
    free(c->chain_pem);
    ca_key_pem_free(c->key_pem);
    free(c->bundle_pem);
    memset(c, 0, sizeof(*c));
}

/* The token, whitespace around it dropped; wiped by the caller. */
static int read_token(const char *path, char **out)
{
    char *t = NULL;
    size_t len = 0;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    t = calloc(1, TOKEN_MAX + 1);
    if (!t) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, t + len, TOKEN_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == TOKEN_MAX) {
            rc = -EFBIG;
            goto out;
        }
    }
    while (len && (t[len - 1] == '\n' || t[len - 1] == ' ' || t[len - 1] == '\r'))
        t[--len] = '\0';
    if (!len)
        rc = -ENODATA;
out:
    close(fd);
    if (rc && t) {
        explicit_bzero(t, TOKEN_MAX);
        free(t);
    } else {
        *out = t;
    }
    return rc;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    struct buf *b = arg;

    if (b->len + sz * n > ANSWER_MAX || buf_append(b, p, sz * n))
        return 0;
    return sz * n;
}

int agent_cert_fetch(const struct agent_cert_req *req, struct agent_cert *out, struct diag *diag)
{
    struct agent_cert c = {0};
    struct ca_cert_info info;
    char *csr = NULL, *token = NULL, *auth = NULL;
    struct curl_slist *hdrs = NULL;
    CURL *h = NULL;
    struct buf body, trust;
    struct curl_blob blob;
    json_t *js = NULL;
    long status = 0;
    CURLcode cc;
    int rc;

    buf_init(&body);
    buf_init(&trust);
    rc = read_token(req->token_file, &token);
    if (rc) {
        diag_set(diag, "the ServiceAccount token %s: %s", req->token_file, err_str(rc));
        goto out;
    }
    rc = ca_csr_new(CA_KEY_EC_P256, &c.key_pem, &csr);
    if (rc) {
        diag_set(diag, "making the key and CSR: %s", err_str(rc));
        goto out;
    }
    if (asprintf(&auth, "Authorization: Bearer %s", token) < 0) {
        auth = NULL;
        rc = -ENOMEM;
        goto out;
    }
    h = curl_easy_init();
    if (!h || !(hdrs = curl_slist_append(NULL, auth)) ||
        !(hdrs = curl_slist_append(hdrs, "Content-Type: application/pkcs10"))) {
        rc = -ENOMEM;
        goto out;
    }
    curl_easy_setopt(h, CURLOPT_URL, req->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(h, CURLOPT_CAINFO, req->ca_file);
    curl_easy_setopt(h, CURLOPT_CAPATH, NULL);
    if (req->trust_pem) {
        /* the mounted bundle and the newest one from weftd, as one blob (a blob replaces the
         * file in libcurl) */
        char *mounted = NULL;

        if (agent_read_file(req->ca_file, &mounted) == 0)
            rc = buf_puts(&trust, mounted);
        free(mounted);
        if (!rc && trust.len && trust.p[trust.len - 1] != '\n')
            rc = buf_puts(&trust, "\n");
        if (!rc)
            rc = buf_puts(&trust, req->trust_pem);
        if (rc)
            goto out;
        blob.data = trust.p;
        blob.len = trust.len;
        blob.flags = CURL_BLOB_COPY;
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, csr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(csr));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 10000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        rc = -ECONNREFUSED;
        diag_set(diag, "%s: %s", req->url, curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    js = json_loadb(body.p ? body.p : "", body.len, 0, NULL);
    if (status != 200) {
        const char *e = json_string_value(json_object_get(js, "error"));
        const char *why = json_string_value(json_object_get(js, "reason"));
        rc = status == 401 || status == 403 ? -EACCES : -EIO;
        diag_set(diag, "%s answered %ld %s: %s", req->url, status, why ? why : "",
                 e ? e : "(no error text)");
        goto out;
    }
    {
        const char *chain = json_string_value(json_object_get(js, "certificateChain"));
        const char *bundle = json_string_value(json_object_get(js, "trustBundle"));

        if (!chain || !bundle) {
            rc = ERR_PARSE;
            diag_set(diag, "%s: the answer lacks certificateChain or trustBundle", req->url);
            goto out;
        }
        if (tls_check_identity(chain, c.key_pem) != 0 || tls_check_trust(bundle) != 0) {
            rc = ERR_INVALID;
            diag_set(diag, "%s: the certificate does not hold the key sent, or the bundle is empty",
                     req->url);
            goto out;
        }
        rc = ca_cert_info(chain, strlen(chain), &info);
        if (rc) {
            diag_set(diag, "%s: the certificate does not parse", req->url);
            goto out;
        }
        c.chain_pem = strdup(chain);
        c.bundle_pem = strdup(bundle);
        if (!c.chain_pem || !c.bundle_pem) {
            rc = -ENOMEM;
            goto out;
        }
        c.not_after = info.not_after;
        snprintf(c.spiffe_id, sizeof(c.spiffe_id), "%s", info.spiffe_id);
        snprintf(c.fingerprint, sizeof(c.fingerprint), "%s", info.fingerprint);
        snprintf(c.pod_namespace, sizeof(c.pod_namespace), "%s", info.pod_namespace);
        snprintf(c.pod_name, sizeof(c.pod_name), "%s", info.pod_name);
        snprintf(c.pod_uid, sizeof(c.pod_uid), "%s", info.pod_uid);
    }
    *out = c;
    memset(&c, 0, sizeof(c));
out:
    buf_release(&trust);
    agent_cert_release(&c);
    if (token) {
        explicit_bzero(token, TOKEN_MAX);
        free(token);
    }
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    free(csr);
    for (struct curl_slist *l = hdrs; l; l = l->next)
        explicit_bzero(l->data, strlen(l->data));
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    json_decref(js);
    buf_release(&body);
    return rc;
}
