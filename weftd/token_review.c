/*
 * token_review.c - bearer tokens on weftd's endpoints: reading one from a request, and asking
 * the API server whose it is (TokenReview). Used by the certificate endpoint (audience weft)
 * and by the admin port's /debug/ (the API server's own audience). Tokens are never logged and
 * the copy in the serialized review is wiped once sent.
 */
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>

#include "weftd/weftd_int.h"

static const struct kube_resource res_tokenreviews = {"authentication.k8s.io", "v1", "tokenreviews",
                                                      false};

const char *weftd_bearer_token(const struct http_request *req)
{
    const char *auth = http_req_header(req, "authorization");

    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return NULL;
    auth += 7;
    while (*auth == ' ')
        auth++;
    return auth;
}

/* RFC 6750 b64token: the only characters a bearer token may have. */
bool weftd_token_plausible(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 16384)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = t[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~+/=", ch)))
            return false;
    }
    return true;
}

int weftd_token_review(struct weftd *d, const char *token, const char *audience,
                       kube_response_fn *done, void *arg, struct kube_call **call)
{
    json_t *review, *spec;
    char path[256];
    int rc;

    review = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "authentication.k8s.io/v1", "kind",
                       "TokenReview", "spec", "token", token);
    if (!review)
        return -ENOMEM;
    spec = json_object_get(review, "spec");
    rc = audience ? json_object_set_new(spec, "audiences", json_pack("[s]", audience)) : 0;
    if (rc)
        rc = -ENOMEM;
    if (!rc)
        rc = kube_path(&res_tokenreviews, NULL, NULL, NULL, path, sizeof(path));
    if (!rc)
        rc = kube_request(d->kube, "POST", path, review, NULL, done, arg, call);
    /* the token in the serialized request is gone; wipe ours */
    {
        json_t *t = json_object_get(spec, "token");
        OPENSSL_cleanse((char *)json_string_value(t), json_string_length(t));
    }
    json_decref(review);
    return rc;
}
