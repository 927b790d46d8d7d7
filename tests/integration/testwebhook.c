/*
 * testwebhook - a small mutating/validating admission webhook for kubelite's tests.
 *
 *   testwebhook --listen 127.0.0.1:PORT --cert FILE --key FILE --mode MODE [--sleep SEC]
 *
 * MODE: patch       allow, adding label testwebhook=patched and an annotation with the call count
 *       deny        deny with message "denied by testwebhook"
 *       bad-uid     answer with a different uid
 *       no-type     return a patch without patchType
 *       slow        sleep --sleep seconds before answering (for timeouts), then allow
 * Every review received is appended, one JSON line each, to --log FILE when given, and
 * "answered UID" is printed on stdout once its answer is sent (tests tell from it whether the API
 * server gave up before the answer).
 */
#include <getopt.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/http.h"
#include "tests/kubelite/kjson.h"

struct hook {
    const char *mode;
    int sleep_s;
    FILE *log;
    int calls;
};

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static void handle(void *arg, struct http_conn *c, const struct http_request *req)
{
    struct hook *h = arg;
    json_error_t jerr;
    json_t *review = json_loadb(req->body, req->body_len, 0, &jerr), *resp, *out;
    const char *uid = jstr(json_object_get(review, "request"), "uid");
    char *s;

    if (!review || !uid) {
        http_respond(c, 400, "text/plain", "bad review\n", 11, NULL);
        json_decref(review);
        return;
    }
    h->calls++;
    if (h->log) {
        char *line = json_dumps(review, JSON_COMPACT);
        fprintf(h->log, "%s\n", line ? line : "{}");
        fflush(h->log);
        free(line);
    }
    if (strcmp(h->mode, "slow") == 0)
        sleep((unsigned)h->sleep_s);
    resp = json_pack("{s:s,s:b}", "uid", strcmp(h->mode, "bad-uid") == 0 ? "not-the-uid" : uid,
                     "allowed", strcmp(h->mode, "deny") != 0);
    if (strcmp(h->mode, "deny") == 0) {
        json_object_set_new(
            resp, "status",
            json_pack("{s:i,s:s}", "code", 403, "message", "denied by testwebhook"));
    } else if (strcmp(h->mode, "patch") == 0 || strcmp(h->mode, "no-type") == 0) {
        json_t *obj = json_object_get(json_object_get(review, "request"), "object");
        json_t *md = json_object_get(obj, "metadata"), *ops = json_array();
        char count[32], *ptxt, *enc;
        snprintf(count, sizeof(count), "%d", h->calls);
        if (!json_object_get(md, "labels"))
            json_array_append_new(
                ops, json_pack("{s:s,s:s,s:{}}", "op", "add", "path", "/metadata/labels", "value"));
        json_array_append_new(ops, json_pack("{s:s,s:s,s:s}", "op", "add", "path",
                                             "/metadata/labels/testwebhook", "value", "patched"));
        if (!json_object_get(md, "annotations"))
            json_array_append_new(ops, json_pack("{s:s,s:s,s:{}}", "op", "add", "path",
                                                 "/metadata/annotations", "value"));
        json_array_append_new(ops, json_pack("{s:s,s:s,s:s}", "op", "add", "path",
                                             "/metadata/annotations/testwebhook~1calls", "value",
                                             count));
        ptxt = json_dumps(ops, JSON_COMPACT);
        enc = ptxt ? b64(ptxt) : NULL;
        if (enc)
            json_object_set_new(resp, "patch", json_string(enc));
        if (strcmp(h->mode, "patch") == 0)
            json_object_set_new(resp, "patchType", json_string("JSONPatch"));
        free(ptxt);
        free(enc);
        json_decref(ops);
    }
    out = json_pack("{s:s,s:s,s:o}", "apiVersion", "admission.k8s.io/v1", "kind", "AdmissionReview",
                    "response", resp);
    s = json_dumps(out, JSON_COMPACT);
    http_respond(c, 200, "application/json", s ? s : "{}", s ? strlen(s) : 2, NULL);
    printf("answered %s\n", uid);
    fflush(stdout);
    free(s);
    json_decref(out);
    json_decref(review);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"mode", required_argument, NULL, 'm'},
        {"sleep", required_argument, NULL, 's'},
        {"log", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    const char *listen = NULL, *cert = NULL, *key = NULL;
    struct hook h = {"patch", 15, NULL, 0};
    struct http_server *srv;
    SSL_CTX *ctx;
    int opt;

    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'l':
            listen = optarg;
            break;
        case 'c':
            cert = optarg;
            break;
        case 'k':
            key = optarg;
            break;
        case 'm':
            h.mode = optarg;
            break;
        case 's':
            h.sleep_s = atoi(optarg);
            break;
        case 'g':
            h.log = fopen(optarg, "a");
            break;
        default:
            return 2;
        }
    }
    if (!listen || !cert || !key) {
        fprintf(stderr, "usage: testwebhook --listen ADDR:PORT --cert F --key F --mode M\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a caller that timed out must not kill us with our answer */
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "testwebhook: cannot load %s / %s\n", cert, key);
        return 1;
    }
    if (http_server_new(listen, ctx, 4u << 20, handle, &h, &srv)) {
        fprintf(stderr, "testwebhook: cannot listen on %s\n", listen);
        return 1;
    }
    return http_server_run(srv) ? 1 : 0;
}
