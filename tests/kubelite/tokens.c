/*
 * tokens.c - ServiceAccount tokens: ES256 JWTs signed by kubelite's service-account key,
 * issued through the TokenRequest subresource and checked by TokenReview and by the
 * authenticator, with the claims kube-apiserver uses (bound pod, audiences, expiry).
 */
#include <fcntl.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kjson.h"
#include "tests/kubelite/kubelite_int.h"

#define API_AUDIENCE "https://kubernetes.default.svc.cluster.local"
#define ISSUER "https://kubernetes.default.svc.cluster.local"

static char *b64url(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    int len;
    if (!out)
        return NULL;
    len = EVP_EncodeBlock((unsigned char *)out, in, (int)n);
    while (len > 0 && out[len - 1] == '=')
        len--;
    out[len] = '\0';
    for (int i = 0; i < len; i++) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
    return out;
}

/* Decode base64url (no padding) into a new buffer; *outlen bytes. NULL on bad input. */
static unsigned char *b64url_decode(const char *in, size_t n, size_t *outlen)
{
    size_t padded = n + (4 - n % 4) % 4;
    char *tmp = malloc(padded + 1);
    unsigned char *out = malloc(padded / 4 * 3 + 1);
    int len;

    if (!tmp || !out || n % 4 == 1)
        goto bad;
    for (size_t i = 0; i < n; i++) {
        char ch = in[i];
        if (ch == '-')
            ch = '+';
        else if (ch == '_')
            ch = '/';
        else if (ch == '+' || ch == '/' || ch == '=')
            goto bad;
        tmp[i] = ch;
    }
    for (size_t i = n; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    len = EVP_DecodeBlock(out, (unsigned char *)tmp, (int)padded);
    if (len < 0)
        goto bad;
    len -= (int)(padded - n);
    free(tmp);
    *outlen = (size_t)len;
    return out;
bad:
    free(tmp);
    free(out);
    return NULL;
}

int kl_tokens_init(struct kl *kl)
{
    char path[4096];
    FILE *f;

    if (kl->data_dir) {
        snprintf(path, sizeof(path), "%s/sa.key", kl->data_dir);
        f = fopen(path, "r");
        if (f) {
            kl->sa_key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
            fclose(f);
            if (kl->sa_key)
                return 0;
            log_warn("msg=\"unreadable service-account key, making a new one\" file=%s", path);
        }
    }
    kl->sa_key = EVP_EC_gen("P-256");
    if (!kl->sa_key)
        return -ENOMEM;
    if (kl->data_dir) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            return -errno;
        f = fdopen(fd, "w");
        if (!f || !PEM_write_PrivateKey(f, kl->sa_key, NULL, NULL, 0, NULL, NULL)) {
            if (f)
                fclose(f);
            return -EIO;
        }
        fclose(f);
    }
    return 0;
}

static char *sign_jwt(EVP_PKEY *key, const json_t *claims)
{
    const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"kubelite\"}";
    char *payload = json_dumps(claims, JSON_COMPACT), *h64 = NULL, *p64 = NULL, *s64 = NULL;
    char *signing = NULL, *out = NULL;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char der[128], raw[64];
    const unsigned char *dp = der;
    size_t derlen = sizeof(der);
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *s;

    if (!payload || !md)
        goto out;
    h64 = b64url((const unsigned char *)hdr, strlen(hdr));
    p64 = b64url((const unsigned char *)payload, strlen(payload));
    if (!h64 || !p64 || asprintf(&signing, "%s.%s", h64, p64) < 0) {
        signing = NULL;
        goto out;
    }
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, der, &derlen, (const unsigned char *)signing, strlen(signing)) != 1)
        goto out;
    sig = d2i_ECDSA_SIG(NULL, &dp, (long)derlen);
    if (!sig)
        goto out;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
        goto out;
    s64 = b64url(raw, sizeof(raw));
    if (!s64 || asprintf(&out, "%s.%s", signing, s64) < 0)
        out = NULL;
out:
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(md);
    free(payload);
    free(h64);
    free(p64);
    free(s64);
    free(signing);
    return out;
}

/* Verify the signature and parse the claims. Returns claims (new ref) or NULL with *why set. */
static json_t *verify_jwt(EVP_PKEY *key, const char *token, const char **why)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    unsigned char *hdr = NULL, *payload = NULL, *sigraw = NULL, *der = NULL;
    size_t hl, pl, sl;
    json_t *claims = NULL, *h = NULL;
    json_error_t jerr;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *sig = NULL;
    int derlen;

    *why = "invalid bearer token";
    if (!d1 || !d2 || strchr(d2 + 1, '.'))
        return NULL;
    hdr = b64url_decode(token, (size_t)(d1 - token), &hl);
    payload = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &pl);
    sigraw = b64url_decode(d2 + 1, strlen(d2 + 1), &sl);
    if (!hdr || !payload || !sigraw || sl != 64)
        goto out;
    h = json_loadb((const char *)hdr, hl, 0, &jerr);
    if (!h || strcmp(jstr_or(h, "alg", ""), "ES256") != 0)
        goto out;
    sig = ECDSA_SIG_new();
    if (!sig ||
        ECDSA_SIG_set0(sig, BN_bin2bn(sigraw, 32, NULL), BN_bin2bn(sigraw + 32, 32, NULL)) != 1)
        goto out;
    derlen = i2d_ECDSA_SIG(sig, &der);
    md = EVP_MD_CTX_new();
    if (derlen <= 0 || !md || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, key) != 1)
        goto out;
    if (EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)token,
                         (size_t)(d2 - token)) != 1) {
        *why = "invalid bearer token, square/go-jose: error in cryptographic primitive";
        goto out;
    }
    claims = json_loadb((const char *)payload, pl, 0, &jerr);
    if (!json_is_object(claims)) {
        json_decref(claims);
        claims = NULL;
    }
out:
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(sig);
    json_decref(h);
    free(hdr);
    free(payload);
    free(sigraw);
    return claims;
}

static json_t *lookup(struct kl *kl, const char *plural, const char *ns, const char *name)
{
    struct rstore *st = kl_store_get(kl, "", plural, false);
    char key[600];
    if (!st || !ns || !name)
        return NULL;
    kl_key(ns, name, key, sizeof(key));
    return kl_store_lookup(st, key);
}

/*
 * Review a token against audiences (array; NULL or empty = the API server's audience).
 * Returns a TokenReview status object (new ref).
 */
json_t *kl_token_review(struct kl *kl, const char *token, const json_t *audiences)
{
    const char *why = NULL;
    json_t *claims = verify_jwt(kl->sa_key, token, &why), *aud, *ok_aud = json_array(), *a, *b;
    json_t *k8s, *sa, *pod, *status = NULL;
    const char *ns, *sa_name, *sa_uid, *pod_name, *pod_uid;
    json_t *sa_obj, *pod_obj;
    long long now = (long long)time(NULL);
    size_t i, j;
    char user[600];

    if (!claims)
        goto fail;
    if (strcmp(jstr_or(claims, "iss", ""), ISSUER) != 0) {
        why = "invalid bearer token, token issuer is not trusted";
        goto fail;
    }
    if (json_integer_value(json_object_get(claims, "exp")) <= now) {
        why = "invalid bearer token, service account token has expired";
        goto fail;
    }
    if (json_integer_value(json_object_get(claims, "nbf")) > now + 60) {
        why = "invalid bearer token, service account token is not valid yet";
        goto fail;
    }
    aud = json_object_get(claims, "aud");
    if (!json_array_size(audiences)) {
        json_array_foreach(aud, i, a) if (strcmp(json_string_value(a) ? json_string_value(a) : "",
                                                 API_AUDIENCE) == 0) json_array_append(ok_aud, a);
    } else {
        json_array_foreach(audiences, i, b)
        {
            json_array_foreach(aud, j, a) if (json_equal(a, b)) json_array_append(ok_aud, a);
        }
    }
    if (!json_array_size(ok_aud)) {
        why = "invalid bearer token, token audiences [...] is invalid for the target audiences";
        goto fail;
    }
    k8s = json_object_get(claims, "kubernetes.io");
    ns = jstr(k8s, "namespace");
    sa = json_object_get(k8s, "serviceaccount");
    sa_name = jstr(sa, "name");
    sa_uid = jstr(sa, "uid");
    sa_obj = lookup(kl, "serviceaccounts", ns, sa_name);
    if (!sa_obj || strcmp(jstr_or(json_object_get(sa_obj, "metadata"), "uid", ""),
                          sa_uid ? sa_uid : "") != 0) {
        why = "invalid bearer token, service account has been deleted";
        goto fail;
    }
    pod = json_object_get(k8s, "pod");
    pod_name = jstr(pod, "name");
    pod_uid = jstr(pod, "uid");
    if (pod) {
        pod_obj = lookup(kl, "pods", ns, pod_name);
        if (!pod_obj || strcmp(jstr_or(json_object_get(pod_obj, "metadata"), "uid", ""),
                               pod_uid ? pod_uid : "") != 0) {
            why = "invalid bearer token, the pod the token is bound to no longer exists";
            goto fail;
        }
    }
    snprintf(user, sizeof(user), "system:serviceaccount:%s:%s", ns, sa_name);
    {
        char g2[400];
        snprintf(g2, sizeof(g2), "system:serviceaccounts:%s", ns);
        status = json_pack("{s:b,s:{s:s,s:s,s:[s,s,s]},s:O}", "authenticated", 1, "user",
                           "username", user, "uid", sa_uid, "groups", "system:serviceaccounts", g2,
                           "system:authenticated", "audiences", ok_aud);
        if (status && pod)
            json_object_set_new(json_object_get(status, "user"), "extra",
                                json_pack("{s:[s],s:[s]}", "authentication.kubernetes.io/pod-name",
                                          pod_name ? pod_name : "",
                                          "authentication.kubernetes.io/pod-uid",
                                          pod_uid ? pod_uid : ""));
    }
    json_decref(claims);
    json_decref(ok_aud);
    return status;
fail:
    json_decref(claims);
    json_decref(ok_aud);
    return json_pack("{s:b,s:{},s:s}", "authenticated", 0, "user", "error",
                     why ? why : "invalid bearer token");
}

bool kl_auth_token(struct kl *kl, const char *token, char *user, size_t userlen)
{
    json_t *st = kl_token_review(kl, token, NULL);
    bool ok = json_is_true(json_object_get(st, "authenticated"));
    if (ok)
        snprintf(user, userlen, "%s", jstr_or(json_object_get(st, "user"), "username", ""));
    json_decref(st);
    return ok;
}

/* POST .../serviceaccounts/<sa>/token (TokenRequest). */
void kl_token_request(struct kl *kl, struct http_conn *c, const struct http_request *req,
                      const char *ns, const char *sa_name)
{
    json_t *body = NULL, *sa, *spec, *aud, *bound, *claims = NULL, *resp = NULL, *pod = NULL;
    long long exp_s = 3600, now = (long long)time(NULL);
    char *token = NULL, expts[40], nowts[40];
    const char *bkind = NULL, *bname = NULL, *buid = NULL;
    struct tm tm;
    time_t expt;

    sa = lookup(kl, "serviceaccounts", ns, sa_name);
    if (!sa) {
        char msg[600];
        snprintf(msg, sizeof(msg), "serviceaccounts \"%s\" not found", sa_name);
        kl_respond_status(c, 404, "NotFound", msg, "serviceaccounts", sa_name, "", NULL);
        return;
    }
    if (!req->body_len)
        body = json_object();
    else if (kl_parse_body(c, req, &body))
        return;
    if (!json_is_object(body)) {
        kl_respond_status(c, 400, "BadRequest", "the body must be a TokenRequest object", NULL,
                          NULL, NULL, NULL);
        goto out;
    }
    spec = json_object_get(body, "spec");
    if (json_is_integer(json_object_get(spec, "expirationSeconds")))
        exp_s = json_integer_value(json_object_get(spec, "expirationSeconds"));
    if (exp_s < 600 || exp_s > (1LL << 32)) {
        char msg[300];
        snprintf(msg, sizeof(msg),
                 "TokenRequest.authentication.k8s.io \"%s\" is invalid: spec.expirationSeconds: "
                 "Invalid value: %lld: may not specify a duration less than 10 minutes",
                 sa_name, exp_s);
        kl_respond_status(c, 422, "Invalid", msg, "TokenRequest", sa_name, "authentication.k8s.io",
                          NULL);
        goto out;
    }
    aud = json_object_get(spec, "audiences");
    if (!json_array_size(aud))
        aud = NULL;
    bound = json_object_get(spec, "boundObjectRef");
    if (bound) {
        bkind = jstr(bound, "kind");
        bname = jstr(bound, "name");
        buid = jstr(bound, "uid");
        if (!bkind || strcmp(bkind, "Pod") != 0 || !bname) {
            kl_respond_status(c, 422, "Invalid",
                              "spec.boundObjectRef.kind: Unsupported value: only Pod is supported",
                              "TokenRequest", sa_name, "authentication.k8s.io", NULL);
            goto out;
        }
        pod = lookup(kl, "pods", ns, bname);
        if (!pod || (buid && strcmp(buid, jstr_or(json_object_get(pod, "metadata"), "uid", "")))) {
            char msg[600];
            snprintf(msg, sizeof(msg), "pods \"%s\" not found", bname);
            kl_respond_status(c, 404, "NotFound", msg, "pods", bname, "", NULL);
            goto out;
        }
        buid = jstr(json_object_get(pod, "metadata"), "uid");
    }
    {
        char sub[600];
        snprintf(sub, sizeof(sub), "system:serviceaccount:%s:%s", ns, sa_name);
        json_t *aud_use = aud ? json_incref(aud) : json_pack("[s]", API_AUDIENCE);
        claims = json_pack("{s:o,s:I,s:I,s:s,s:{s:s,s:{s:s,s:s}},s:I,s:s}", "aud", aud_use, "exp",
                           (json_int_t)(now + exp_s), "iat", (json_int_t)now, "iss", ISSUER,
                           "kubernetes.io", "namespace", ns, "serviceaccount", "name", sa_name,
                           "uid", jstr_or(json_object_get(sa, "metadata"), "uid", ""), "nbf",
                           (json_int_t)now, "sub", sub);
    }
    if (!claims)
        goto oom;
    if (pod)
        json_object_set_new(json_object_get(claims, "kubernetes.io"), "pod",
                            json_pack("{s:s,s:s}", "name", bname, "uid", buid ? buid : ""));
    token = sign_jwt(kl->sa_key, claims);
    if (!token)
        goto oom;
    expt = (time_t)(now + exp_s);
    gmtime_r(&expt, &tm);
    strftime(expts, sizeof(expts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    kl_now_rfc3339(nowts, sizeof(nowts));
    resp = json_pack("{s:s,s:s,s:{s:s,s:s,s:s},s:{s:O,s:I},s:{s:s,s:s}}", "kind", "TokenRequest",
                     "apiVersion", "authentication.k8s.io/v1", "metadata", "name", sa_name,
                     "namespace", ns, "creationTimestamp", nowts, "spec", "audiences",
                     json_object_get(claims, "aud"), "expirationSeconds", (json_int_t)exp_s,
                     "status", "token", token, "expirationTimestamp", expts);
    if (!resp)
        goto oom;
    if (bound)
        json_object_set(json_object_get(resp, "spec"), "boundObjectRef", bound);
    kl_respond_json(c, 201, resp, NULL);
    goto out;
oom:
    kl_respond_status(c, 500, "InternalError", "cannot sign the token", NULL, NULL, NULL, NULL);
out:
    free(token);
    json_decref(resp);
    json_decref(claims);
    json_decref(body);
}
