/*
 * spec.c - pure helpers over pod specs: environments, $(VAR) expansion, container argv,
 * downward-API field references, base64, clocks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/kubelite/kubelet/kubelet.h"

void envv_init(struct envv *e)
{
    e->v = NULL;
    e->n = 0;
    e->cap = 0;
}

void envv_release(struct envv *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
    envv_init(e);
}

static ssize_t envv_find(const struct envv *e, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < e->n; i++) {
        if (strncmp(e->v[i], name, nl) == 0 && e->v[i][nl] == '=')
            return (ssize_t)i;
    }
    return -1;
}

int envv_set(struct envv *e, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    char *s = malloc(len);
    ssize_t i;

    if (!s)
        return -ENOMEM;
    snprintf(s, len, "%s=%s", name, value);
    i = envv_find(e, name);
    if (i >= 0) {
        free(e->v[i]);
        e->v[i] = s;
        return 0;
    }
    if (e->n + 2 > e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 16;
        char **nv = realloc(e->v, ncap * sizeof(*nv));
        if (!nv) {
            free(s);
            return -ENOMEM;
        }
        e->v = nv;
        e->cap = ncap;
    }
    e->v[e->n++] = s;
    e->v[e->n] = NULL;
    return 0;
}

const char *envv_get(const struct envv *e, const char *name)
{
    ssize_t i = envv_find(e, name);
    return i >= 0 ? e->v[i] + strlen(name) + 1 : NULL;
}

char *spec_expand(const char *s, const struct envv *env)
{
    struct buf b;
    int rc = 0;

    buf_init(&b);
    while (*s && !rc) {
        if (s[0] == '$' && s[1] == '$') {
            rc = buf_append(&b, "$", 1);
            s += 2;
        } else if (s[0] == '$' && s[1] == '(') {
            const char *end = strchr(s + 2, ')');
            const char *val = NULL;
            if (end) {
                char name[256];
                size_t nl = (size_t)(end - s - 2);
                if (nl < sizeof(name)) {
                    memcpy(name, s + 2, nl);
                    name[nl] = '\0';
                    val = envv_get(env, name);
                }
            }
            if (val) {
                rc = buf_puts(&b, val);
                s = end + 1;
            } else if (end) {
                rc = buf_append(&b, s, (size_t)(end - s) + 1);
                s = end + 1;
            } else {
                rc = buf_puts(&b, s);
                s += strlen(s);
            }
        } else {
            rc = buf_append(&b, s, 1);
            s++;
        }
    }
    if (rc) {
        buf_release(&b);
        return NULL;
    }
    return buf_take(&b);
}

void spec_argv_free(char **argv)
{
    if (!argv)
        return;
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
    free(argv);
}

static int argv_push(char ***v, size_t *n, char *s)
{
    char **nv;
    if (!s)
        return -ENOMEM;
    nv = realloc(*v, (*n + 2) * sizeof(*nv));
    if (!nv) {
        free(s);
        return -ENOMEM;
    }
    *v = nv;
    nv[(*n)++] = s;
    nv[*n] = NULL;
    return 0;
}

static int push_array(char ***v, size_t *n, const json_t *arr, size_t from, const char *what,
                      const struct envv *env, char *msg, size_t msglen)
{
    for (size_t i = from; i < json_array_size(arr); i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        int rc;
        if (!s) {
            if (msg)
                snprintf(msg, msglen, "%s[%zu] is not a string", what, i);
            return ERR_INVALID;
        }
        rc = argv_push(v, n, spec_expand(s, env));
        if (rc)
            return rc;
    }
    return 0;
}

static bool is_executable_file(const char *path)
{
    struct stat st;
    return path[0] == '/' && stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

int spec_argv_build(const struct image_entry *entry, const json_t *command, const json_t *args,
                    const struct envv *env, char ***out, char *msg, size_t msglen)
{
    char **v = NULL;
    size_t n = 0;
    int rc = 0;
    const char *c0 = json_string_value(json_array_get(command, 0));

    if (json_array_size(command) && !c0) {
        if (msg)
            snprintf(msg, msglen, "command[0] is not a string");
        return ERR_INVALID;
    }
    if (!json_array_size(command)) {
        rc = argv_push(&v, &n, strdup(entry->argv[0]));
        if (!rc && json_is_array(args))
            rc = push_array(&v, &n, args, 0, "args", env, msg, msglen);
        for (size_t i = 1; !rc && !json_is_array(args) && i < entry->argc; i++)
            rc = argv_push(&v, &n, spec_expand(entry->argv[i], env));
    } else {
        char *c0x = spec_expand(c0, env);
        if (!c0x) {
            rc = -ENOMEM;
        } else if (is_executable_file(c0x)) {
            rc = argv_push(&v, &n, c0x);
            if (!rc)
                rc = push_array(&v, &n, command, 1, "command", env, msg, msglen);
        } else if (strcmp(base_name(c0x), base_name(entry->argv[0])) == 0) {
            free(c0x);
            rc = argv_push(&v, &n, strdup(entry->argv[0]));
            if (!rc)
                rc = push_array(&v, &n, command, 1, "command", env, msg, msglen);
        } else {
            free(c0x);
            rc = argv_push(&v, &n, strdup(entry->argv[0]));
            if (!rc)
                rc = push_array(&v, &n, command, 0, "command", env, msg, msglen);
        }
        if (!rc && json_is_array(args))
            rc = push_array(&v, &n, args, 0, "args", env, msg, msglen);
    }
    if (rc) {
        spec_argv_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int spec_b64_decode(const char *in, unsigned char **out, size_t *outlen)
{
    size_t len = strlen(in), o = 0;
    unsigned char *d = malloc(len / 4 * 3 + 4);
    unsigned acc = 0;
    int bits = 0, pad = 0;

    if (!d)
        return -ENOMEM;
    for (const char *p = in; *p; p++) {
        int v;
        if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        if (*p == '=') {
            pad++;
            continue;
        }
        v = b64_val((unsigned char)*p);
        if (v < 0 || pad) {
            free(d);
            return ERR_PARSE;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            d[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (bits >= 6 || pad > 2) { /* a lone sextet cannot end a valid encoding */
        free(d);
        return ERR_PARSE;
    }
    d[o] = '\0';
    *out = d;
    *outlen = o;
    return 0;
}

void spec_now_rfc3339(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

double spec_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

long spec_int(const json_t *obj, const char *key, long def)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : def;
}

const char *spec_str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

/* k="v" lines sorted by key, as the kubelet writes labels and annotations files. */
static char *kv_lines(const json_t *map)
{
    const char **keys = NULL;
    size_t n = json_object_size(map), i = 0;
    const char *k;
    json_t *v;
    struct buf b;
    int rc = 0;

    buf_init(&b);
    if (n) {
        keys = calloc(n, sizeof(*keys));
        if (!keys)
            return NULL;
        json_object_foreach((json_t *)map, k, v) keys[i++] = k;
        for (size_t a = 1; a < n; a++) {
            for (size_t c = a; c > 0 && strcmp(keys[c - 1], keys[c]) > 0; c--) {
                const char *t = keys[c];
                keys[c] = keys[c - 1];
                keys[c - 1] = t;
            }
        }
    }
    for (i = 0; i < n && !rc; i++) {
        const char *val = json_string_value(json_object_get(map, keys[i]));
        rc = buf_printf(&b, "%s%s=\"", i ? "\n" : "", keys[i]);
        for (const char *p = val ? val : ""; *p && !rc; p++) {
            if (*p == '"' || *p == '\\')
                rc = buf_printf(&b, "\\%c", *p);
            else if (*p == '\n')
                rc = buf_puts(&b, "\\n");
            else
                rc = buf_append(&b, p, 1);
        }
        if (!rc)
            rc = buf_puts(&b, "\"");
    }
    free(keys);
    if (!rc)
        rc = buf_append(&b, "", 0);
    if (rc) {
        buf_release(&b);
        return NULL;
    }
    return buf_take(&b);
}

/* The key inside "prefix['key']" (or prefix[key]); NULL when s does not have that shape. */
static char *bracket_key(const char *s, const char *prefix)
{
    size_t pl = strlen(prefix), l;
    const char *k;

    if (strncmp(s, prefix, pl) != 0 || s[pl] != '[')
        return NULL;
    k = s + pl + 1;
    l = strlen(k);
    if (l < 1 || k[l - 1] != ']')
        return NULL;
    l--;
    if (l >= 2 && (k[0] == '\'' || k[0] == '"') && k[l - 1] == k[0]) {
        k++;
        l -= 2;
    }
    return strndup(k, l);
}

char *spec_field_ref(const json_t *pod, const char *path, const char *podip, int *rc)
{
    json_t *md = json_object_get(pod, "metadata"), *spec = json_object_get(pod, "spec");
    json_t *status = json_object_get(pod, "status");
    const char *v = NULL;
    char *key, *r;

    *rc = 0;
    if (strcmp(path, "metadata.name") == 0)
        v = spec_str(md, "name");
    else if (strcmp(path, "metadata.namespace") == 0)
        v = spec_str(md, "namespace");
    else if (strcmp(path, "metadata.uid") == 0)
        v = spec_str(md, "uid");
    else if (strcmp(path, "spec.nodeName") == 0)
        v = spec_str(spec, "nodeName");
    else if (strcmp(path, "spec.serviceAccountName") == 0)
        v = spec_str(spec, "serviceAccountName");
    else if (strcmp(path, "status.podIP") == 0)
        v = podip ? podip : spec_str(status, "podIP");
    else if (strcmp(path, "status.hostIP") == 0)
        v = spec_str(status, "hostIP");
    else if (strcmp(path, "metadata.labels") == 0 || strcmp(path, "metadata.annotations") == 0) {
        r = kv_lines(json_object_get(md, path + 9));
        if (!r)
            *rc = -ENOMEM;
        return r;
    } else if ((key = bracket_key(path, "metadata.labels")) != NULL ||
               (key = bracket_key(path, "metadata.annotations")) != NULL) {
        const char *which = strncmp(path, "metadata.labels", 15) == 0 ? "labels" : "annotations";
        v = spec_str(json_object_get(md, which), key);
        free(key);
        r = strdup(v ? v : "");
        if (!r)
            *rc = -ENOMEM;
        return r;
    } else {
        *rc = ERR_INVALID;
        return NULL;
    }
    r = strdup(v ? v : "");
    if (!r)
        *rc = -ENOMEM;
    return r;
}
