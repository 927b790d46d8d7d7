/*
 * config.c - kubeconfig and in-cluster configuration.
 *
 * The kubeconfig is read through conf/yamljson (Kubernetes' YAML typing) and resolved the way
 * client-go's clientcmd does for the fields Weft supports: current-context picks a context,
 * whose cluster and user entries are looked up by name. Errors name the file and the field.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base64.h"
#include "conf/yamljson.h"
#include "kube/kube_int.h"

#define MAX_FILE (4u * 1024 * 1024)

/* Read a whole file; *out is NUL-terminated. Returns 0, a negative errno or -EFBIG. */
static int read_whole(const char *path, char **out, size_t *outlen)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[4096];
    size_t n;
    int rc = 0;

    buf_init(&b);
    if (!f)
        return -errno;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (b.len + n > MAX_FILE) {
            rc = -EFBIG;
            goto out;
        }
        rc = buf_append(&b, chunk, n);
        if (rc)
            goto out;
    }
    if (ferror(f)) {
        rc = -EIO;
        goto out;
    }
    if (outlen)
        *outlen = b.len;
    *out = buf_take(&b);
out:
    fclose(f);
    buf_release(&b);
    return rc;
}

void kube_config_free(struct kube_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->server);
    free(cfg->ns);
    free(cfg->ca_file);
    free(cfg->ca_data);
    free(cfg->token);
    free(cfg->token_file);
    free(cfg->cert_file);
    free(cfg->cert_data);
    free(cfg->key_file);
    free(cfg->key_data);
    free(cfg);
}

const char *kube_config_server(const struct kube_config *cfg)
{
    return cfg->server;
}

const char *kube_config_namespace(const struct kube_config *cfg)
{
    return cfg->ns;
}

static int dup_str(const char *in, char **out)
{
    *out = NULL;
    if (!in)
        return 0;
    *out = strdup(in);
    return *out ? 0 : -ENOMEM;
}

static int dup_blob(const char *in, size_t len, char **out)
{
    *out = NULL;
    if (!in)
        return 0;
    *out = malloc(len + 1);
    if (!*out)
        return -ENOMEM;
    memcpy(*out, in, len);
    (*out)[len] = '\0';
    return 0;
}

int kube__config_dup(const struct kube_config *in, struct kube_config **out)
{
    struct kube_config *c = calloc(1, sizeof(*c));
    int rc = -ENOMEM;

    if (!c)
        return -ENOMEM;
    c->insecure = in->insecure;
    c->ca_data_len = in->ca_data_len;
    c->cert_data_len = in->cert_data_len;
    c->key_data_len = in->key_data_len;
    if (dup_str(in->server, &c->server) || dup_str(in->ns, &c->ns) ||
        dup_str(in->ca_file, &c->ca_file) || dup_blob(in->ca_data, in->ca_data_len, &c->ca_data) ||
        dup_str(in->token, &c->token) || dup_str(in->token_file, &c->token_file) ||
        dup_str(in->cert_file, &c->cert_file) ||
        dup_blob(in->cert_data, in->cert_data_len, &c->cert_data) ||
        dup_str(in->key_file, &c->key_file) ||
        dup_blob(in->key_data, in->key_data_len, &c->key_data))
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    kube_config_free(c);
    return rc;
}

/* ---- kubeconfig --------------------------------------------------------------------------- */

struct kc_parse {
    const char *file;
    char dir[4096];
    struct diag *diag;
};

/* Find the entry named name in list (an array of {name, <kind>: {...}}); returns its body. */
static int find_named(struct kc_parse *p, const json_t *root, const char *list, const char *kind,
                      const char *name, const json_t **body)
{
    const json_t *arr = json_object_get(root, list), *e;
    size_t i;

    if (arr && !json_is_array(arr)) {
        diag_set(p->diag, "%s: %s: must be a list", p->file, list);
        return ERR_INVALID;
    }
    json_array_foreach(arr, i, e)
    {
        const json_t *n = json_object_get(e, "name");
        if (json_is_string(n) && strcmp(json_string_value(n), name) == 0) {
            const json_t *b = json_object_get(e, kind);
            if (b && !json_is_object(b)) {
                diag_set(p->diag, "%s: %s[%zu].%s: must be a mapping", p->file, list, i, kind);
                return ERR_INVALID;
            }
            *body = b;
            return 0;
        }
    }
    diag_set(p->diag, "%s: %s: no entry named \"%s\"", p->file, list, name);
    return ERR_INVALID;
}

/* Optional string field: *out NULL when absent; ERR_INVALID when not a string. */
static int get_str(struct kc_parse *p, const json_t *obj, const char *where, const char *field,
                   const char **out)
{
    const json_t *v = json_object_get(obj, field);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v)) {
        diag_set(p->diag, "%s: %s.%s: must be a string", p->file, where, field);
        return ERR_INVALID;
    }
    *out = json_string_value(v);
    if (!**out)
        *out = NULL;
    return 0;
}

/* A file name from the kubeconfig, made relative to the kubeconfig's directory. */
static int resolve_path(struct kc_parse *p, const char *name, char **out)
{
    size_t n;
    if (name[0] == '/' || !p->dir[0])
        return dup_str(name, out);
    n = strlen(p->dir) + strlen(name) + 2;
    *out = malloc(n);
    if (!*out)
        return -ENOMEM;
    snprintf(*out, n, "%s/%s", p->dir, name);
    return 0;
}

static int get_b64(struct kc_parse *p, const json_t *obj, const char *where, const char *field,
                   char **out, size_t *outlen)
{
    const char *s;
    int rc = get_str(p, obj, where, field, &s);
    if (rc || !s)
        return rc;
    rc = base64_decode(s, out, outlen);
    if (rc == ERR_PARSE)
        diag_set(p->diag, "%s: %s.%s: invalid base64", p->file, where, field);
    return rc;
}

static int get_file(struct kc_parse *p, const json_t *obj, const char *where, const char *field,
                    char **out)
{
    const char *s;
    int rc = get_str(p, obj, where, field, &s);
    if (rc || !s)
        return rc;
    return resolve_path(p, s, out);
}

static int parse_cluster(struct kc_parse *p, const json_t *cl, const char *where,
                         struct kube_config *c)
{
    const char *server;
    const json_t *ins;
    int rc;

    rc = get_str(p, cl, where, "server", &server);
    if (rc)
        return rc;
    if (!server) {
        diag_set(p->diag, "%s: %s.server: missing", p->file, where);
        return ERR_INVALID;
    }
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0) {
        diag_set(p->diag, "%s: %s.server: \"%s\" is not an http:// or https:// URL", p->file, where,
                 server);
        return ERR_INVALID;
    }
    c->server = strdup(server);
    if (!c->server)
        return -ENOMEM;
    /* kube_request appends absolute paths. */
    while (strlen(c->server) > 8 && c->server[strlen(c->server) - 1] == '/')
        c->server[strlen(c->server) - 1] = '\0';
    ins = json_object_get(cl, "insecure-skip-tls-verify");
    if (ins && !json_is_boolean(ins)) {
        diag_set(p->diag, "%s: %s.insecure-skip-tls-verify: must be true or false", p->file, where);
        return ERR_INVALID;
    }
    c->insecure = json_is_true(ins);
    if ((rc = get_b64(p, cl, where, "certificate-authority-data", &c->ca_data, &c->ca_data_len)) ||
        (rc = get_file(p, cl, where, "certificate-authority", &c->ca_file)))
        return rc;
    return 0;
}

static int parse_user(struct kc_parse *p, const json_t *u, const char *where, struct kube_config *c)
{
    const char *tok;
    int rc;

    if (json_object_get(u, "exec") || json_object_get(u, "auth-provider")) {
        diag_set(p->diag, "%s: %s.%s: credential plugins are not supported", p->file, where,
                 json_object_get(u, "exec") ? "exec" : "auth-provider");
        return ERR_UNSUPPORTED;
    }
    if ((rc = get_str(p, u, where, "token", &tok)))
        return rc;
    if (tok && !(c->token = strdup(tok)))
        return -ENOMEM;
    if ((rc = get_file(p, u, where, "tokenFile", &c->token_file)) ||
        (rc = get_b64(p, u, where, "client-certificate-data", &c->cert_data, &c->cert_data_len)) ||
        (rc = get_file(p, u, where, "client-certificate", &c->cert_file)) ||
        (rc = get_b64(p, u, where, "client-key-data", &c->key_data, &c->key_data_len)) ||
        (rc = get_file(p, u, where, "client-key", &c->key_file)))
        return rc;
    if ((c->cert_data || c->cert_file) != (c->key_data || c->key_file)) {
        diag_set(p->diag, "%s: %s: client-certificate and client-key must be given together",
                 p->file, where);
        return ERR_INVALID;
    }
    return 0;
}

static int parse_kubeconfig(struct kc_parse *p, const json_t *root, struct kube_config *c)
{
    const char *cur, *cluster_name = NULL, *user_name = NULL, *ns = NULL;
    const json_t *ctx = NULL, *cl = NULL, *u = NULL;
    char where[300];
    int rc;

    if (!json_is_object(root)) {
        diag_set(p->diag, "%s: not a kubeconfig (expected a mapping at the top)", p->file);
        return ERR_INVALID;
    }
    if ((rc = get_str(p, root, "(top)", "current-context", &cur)))
        return rc;
    if (!cur) {
        diag_set(p->diag, "%s: current-context: not set", p->file);
        return ERR_INVALID;
    }
    if ((rc = find_named(p, root, "contexts", "context", cur, &ctx)))
        return rc;
    snprintf(where, sizeof(where), "contexts[name=%s].context", cur);
    if (!ctx) {
        diag_set(p->diag, "%s: %s: missing", p->file, where);
        return ERR_INVALID;
    }
    if ((rc = get_str(p, ctx, where, "cluster", &cluster_name)) ||
        (rc = get_str(p, ctx, where, "user", &user_name)) ||
        (rc = get_str(p, ctx, where, "namespace", &ns)))
        return rc;
    if (!cluster_name) {
        diag_set(p->diag, "%s: %s.cluster: missing", p->file, where);
        return ERR_INVALID;
    }
    if ((rc = find_named(p, root, "clusters", "cluster", cluster_name, &cl)))
        return rc;
    snprintf(where, sizeof(where), "clusters[name=%s].cluster", cluster_name);
    if (!cl) {
        diag_set(p->diag, "%s: %s: missing", p->file, where);
        return ERR_INVALID;
    }
    if ((rc = parse_cluster(p, cl, where, c)))
        return rc;
    if (user_name) {
        if ((rc = find_named(p, root, "users", "user", user_name, &u)))
            return rc;
        snprintf(where, sizeof(where), "users[name=%s].user", user_name);
        if (u && (rc = parse_user(p, u, where, c)))
            return rc;
    }
    c->ns = strdup(ns ? ns : "default");
    return c->ns ? 0 : -ENOMEM;
}

static int load_file(const char *path, struct kube_config **out, struct diag *diag)
{
    struct kc_parse p = {.file = path, .diag = diag};
    struct kube_config *c = NULL;
    char *text = NULL;
    struct diag yd = {0, ""};
    const char *slash;
    json_t *docs = NULL;
    size_t len = 0;
    int rc;

    rc = read_whole(path, &text, &len);
    if (rc) {
        diag_set(diag, "%s: %s", path, rc == -EFBIG ? "file too large" : strerror(-rc));
        goto out;
    }
    slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path) < sizeof(p.dir))
        snprintf(p.dir, sizeof(p.dir), "%.*s", (int)(slash - path), path);
    if (slash == path)
        snprintf(p.dir, sizeof(p.dir), "/");
    rc = yaml_to_json(text, len, &docs, &yd);
    if (rc) {
        diag_set(diag, "%s: %s", path, yd.text[0] ? yd.text : err_str(rc));
        goto out;
    }
    if (json_array_size(docs) != 1) {
        diag_set(diag, "%s: expected one YAML document, found %zu", path, json_array_size(docs));
        rc = ERR_INVALID;
        goto out;
    }
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = -ENOMEM;
        goto out;
    }
    rc = parse_kubeconfig(&p, json_array_get(docs, 0), c);
    if (rc)
        goto out;
    *out = c;
    c = NULL;
out:
    kube_config_free(c);
    json_decref(docs);
    free(text);
    return rc;
}

int kube_config_in_cluster(const char *sa_dir, struct kube_config **out, struct diag *diag)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    struct kube_config *c = NULL;
    char path[4096], *tok = NULL, *ns = NULL;
    size_t n;
    int rc;

    if (!sa_dir)
        sa_dir = KUBE_DEFAULT_SA_DIR;
    if (!host || !*host || !port || !*port) {
        diag_set(diag, "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be "
                       "set");
        return ERR_INVALID;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    n = strlen(host) + strlen(port) + 16;
    rc = -ENOMEM;
    c->server = malloc(n);
    if (!c->server)
        goto out;
    /* An IPv6 literal needs brackets in a URL. */
    snprintf(c->server, n, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host, port);
    snprintf(path, sizeof(path), "%s/token", sa_dir);
    /* Read it now so a missing token fails at start-up; the client re-reads it on change. */
    rc = read_whole(path, &tok, NULL);
    if (rc) {
        diag_set(diag, "in-cluster: %s: %s", path, strerror(-rc));
        goto out;
    }
    rc = -ENOMEM;
    if (!(c->token_file = strdup(path)))
        goto out;
    snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
    if (access(path, R_OK) != 0) {
        rc = -errno;
        diag_set(diag, "in-cluster: %s: %s", path, strerror(errno));
        goto out;
    }
    rc = -ENOMEM;
    if (!(c->ca_file = strdup(path)))
        goto out;
    snprintf(path, sizeof(path), "%s/namespace", sa_dir);
    if (read_whole(path, &ns, NULL) == 0) {
        ns[strcspn(ns, "\r\n")] = '\0';
        if (!ns[0])
            FREE_AND_NULL(ns);
    }
    c->ns = ns ? ns : strdup("default");
    ns = NULL;
    if (!c->ns)
        goto out;
    *out = c;
    c = NULL;
    rc = 0;
out:
    free(tok);
    free(ns);
    kube_config_free(c);
    return rc;
}

int kube_config_load(const char *path, struct kube_config **out, struct diag *diag)
{
    const char *env = getenv("KUBECONFIG"), *home;
    char buf[4096];

    if (path)
        return load_file(path, out, diag);
    if (env && *env) {
        size_t n = strcspn(env, ":");
        snprintf(buf, sizeof(buf), "%.*s", (int)n, env);
        return load_file(buf, out, diag);
    }
    if (getenv("KUBERNETES_SERVICE_HOST"))
        return kube_config_in_cluster(NULL, out, diag);
    home = getenv("HOME");
    if (!home) {
        diag_set(diag, "no kubeconfig: KUBECONFIG, KUBERNETES_SERVICE_HOST and HOME are unset");
        return ERR_INVALID;
    }
    snprintf(buf, sizeof(buf), "%s/.kube/config", home);
    return load_file(buf, out, diag);
}
