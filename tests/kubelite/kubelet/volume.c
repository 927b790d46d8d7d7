/*
 * volume.c - pod volumes as files under <root>/pods/<uid>/volumes/<name>.
 *
 * emptyDir: an empty directory (mode 0777); with medium Memory a tmpfs mounted there, as a real
 * kubelet does (what the pod writes stays in memory; sizeLimit is not applied: the tmpfs has the
 * kernel's default size, half the memory). configMap, secret, downwardAPI, projected
 * (serviceAccountToken, configMap, secret, downwardAPI sources): files written atomically
 * (temporary file + rename, only when the content changed) so a process reading through a bind
 * mount of the directory sees either the old or the new file. hostPath: no files, the host path
 * itself is mounted. Any other kind is an empty directory (documented). Tokens come from the
 * TokenRequest subresource, bound to the pod, and are requested again at 80% of their life.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "tests/kubelite/kubelet/kubelet.h"

int volume_mkdirs(const char *path, mode_t mode)
{
    char p[4096];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(p))
        return -ENAMETOOLONG;
    memcpy(p, path, len + 1);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, mode) && errno != EEXIST)
        return -errno;
    return 0;
}

/* Write data to dir/rel unless it already holds exactly that; mode applied. */
static int write_file(const char *dir, const char *rel, const void *data, size_t len, int mode)
{
    char path[4096], tmp[4200], *slash;
    struct stat st;
    int fd, rc = 0;

    if (rel[0] == '/' || strstr(rel, "..") || !rel[0])
        return ERR_INVALID;
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    slash = strrchr(path, '/');
    *slash = '\0';
    rc = volume_mkdirs(path, 0755);
    *slash = '/';
    if (rc)
        return rc;
    if (stat(path, &st) == 0 && (size_t)st.st_size == len && (int)(st.st_mode & 07777) == mode) {
        char *cur = malloc(len + 1);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (cur && fd >= 0 && read(fd, cur, len + 1) == (ssize_t)len &&
            memcmp(cur, data, len) == 0) {
            free(cur);
            close(fd);
            return 0;
        }
        free(cur);
        if (fd >= 0)
            close(fd);
    }
    snprintf(tmp, sizeof(tmp), "%s.kl-tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (write(fd, data, len) != (ssize_t)len || fchmod(fd, (mode_t)mode))
        rc = -errno ? -errno : -EIO;
    close(fd);
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

static int get_obj(struct kapi *api, const char *kind, const char *ns, const char *name,
                   json_t **out)
{
    char path[1024];
    snprintf(path, sizeof(path), "/api/v1/namespaces/%s/%s/%s", ns, kind, name);
    return api->ops->get(api->ctx, path, out);
}

/*
 * Project the keys of a ConfigMap or Secret into dir (items select and rename keys). b64: the
 * values of data are base64 (Secret). Returns 0, ERR_NOTFOUND (object or key, unless
 * optional) or another code, with msg.
 */
static int project_keys(struct kapi *api, const char *ns, const char *kind, const char *name,
                        const json_t *items, bool optional, int defmode, const char *dir, char *msg,
                        size_t msglen)
{
    json_t *obj = NULL, *data, *bin, *v, *it;
    const char *k;
    size_t i;
    int rc;

    if (!name) {
        snprintf(msg, msglen, "%s volume without a name", kind);
        return ERR_INVALID;
    }
    rc = get_obj(api, strcmp(kind, "Secret") == 0 ? "secrets" : "configmaps", ns, name, &obj);
    if (rc == ERR_NOTFOUND && optional)
        return 0;
    if (rc) {
        snprintf(msg, msglen, "%s \"%s\" %s", strcmp(kind, "Secret") == 0 ? "secret" : "configmap",
                 name, rc == ERR_NOTFOUND ? "not found" : err_str(rc));
        return rc;
    }
    data = json_object_get(obj, "data");
    bin = json_object_get(obj, "binaryData");
    bool b64 = strcmp(kind, "Secret") == 0;
    /* All keys (or the listed items) become files. */
    json_t *want = json_object();
    if (!want) {
        json_decref(obj);
        return -ENOMEM;
    }
    if (json_array_size(items)) {
        json_array_foreach(items, i, it)
        {
            const char *key = spec_str(it, "key"), *path = spec_str(it, "path");
            if (!key)
                continue;
            if (!json_object_get(data, key) && !json_object_get(bin, key)) {
                if (optional)
                    continue;
                snprintf(msg, msglen, "configmap references non-existent config key: %s", key);
                rc = ERR_NOTFOUND;
                goto out;
            }
            json_object_set_new(want, path ? path : key,
                                json_pack("{s:s,s:I}", "key", key, "mode",
                                          (json_int_t)spec_int(it, "mode", defmode)));
        }
    } else {
        json_object_foreach(data, k, v) json_object_set_new(
            want, k, json_pack("{s:s,s:I}", "key", k, "mode", (json_int_t)defmode));
        json_object_foreach(bin, k, v) json_object_set_new(
            want, k, json_pack("{s:s,s:I}", "key", k, "mode", (json_int_t)defmode));
    }
    json_object_foreach(want, k, v)
    {
        const char *key = spec_str(v, "key");
        json_t *sv = json_object_get(data, key);
        const char *s = json_string_value(sv);
        bool decode = b64 || !sv;
        if (!sv)
            s = json_string_value(json_object_get(bin, key));
        if (!s)
            continue;
        if (decode) {
            unsigned char *d;
            size_t dl;
            rc = spec_b64_decode(s, &d, &dl);
            if (!rc) {
                rc = write_file(dir, k, d, dl, (int)spec_int(v, "mode", defmode));
                free(d);
            }
        } else {
            rc = write_file(dir, k, s, strlen(s), (int)spec_int(v, "mode", defmode));
        }
        if (rc) {
            snprintf(msg, msglen, "cannot write %s/%s: %s", dir, k, err_str(rc));
            goto out;
        }
    }
out:
    json_decref(want);
    json_decref(obj);
    return rc;
}

static int project_downward(const json_t *pod, const char *podip, const json_t *items, int defmode,
                            const char *dir, char *msg, size_t msglen)
{
    size_t i;
    json_t *it;

    json_array_foreach(items, i, it)
    {
        const char *path = spec_str(it, "path");
        const char *fp = spec_str(json_object_get(it, "fieldRef"), "fieldPath");
        char *val;
        int rc = 0;
        if (!path)
            continue;
        if (fp) {
            val = spec_field_ref(pod, fp, podip, &rc);
        } else {
            val = strdup("0"); /* resourceFieldRef: no resource accounting here */
            rc = val ? 0 : -ENOMEM;
        }
        if (rc) {
            snprintf(msg, msglen, "downwardAPI %s: unsupported fieldPath %s", path, fp ? fp : "?");
            return rc;
        }
        rc = write_file(dir, path, val, strlen(val), (int)spec_int(it, "mode", defmode));
        free(val);
        if (rc) {
            snprintf(msg, msglen, "cannot write %s/%s: %s", dir, path, err_str(rc));
            return rc;
        }
    }
    return 0;
}

static int project_token(struct kapi *api, const json_t *pod, const json_t *src, int defmode,
                         const char *dir, const char *statekey, json_t *tokstate, double now,
                         char *msg, size_t msglen)
{
    json_t *md = json_object_get(pod, "metadata"), *body, *resp = NULL, *st;
    const char *ns = spec_str(md, "namespace"), *sa;
    const char *path = spec_str(src, "path"), *aud = spec_str(src, "audience"), *tok;
    long exp = spec_int(src, "expirationSeconds", 3607);
    char url[1024];
    int rc;

    st = json_object_get(tokstate, statekey);
    if (st && now < json_real_value(json_object_get(st, "refresh")))
        return 0;
    sa = spec_str(json_object_get(pod, "spec"), "serviceAccountName");
    if (!path || !sa) {
        snprintf(msg, msglen, "serviceAccountToken without a path or service account");
        return ERR_INVALID;
    }
    body = json_pack("{s:s,s:s,s:{s:I,s:{s:s,s:s,s:s,s:s}}}", "apiVersion",
                     "authentication.k8s.io/v1", "kind", "TokenRequest", "spec",
                     "expirationSeconds", (json_int_t)exp, "boundObjectRef", "kind", "Pod",
                     "apiVersion", "v1", "name", spec_str(md, "name"), "uid", spec_str(md, "uid"));
    if (!body)
        return -ENOMEM;
    if (aud)
        json_object_set_new(json_object_get(body, "spec"), "audiences", json_pack("[s]", aud));
    snprintf(url, sizeof(url), "/api/v1/namespaces/%s/serviceaccounts/%s/token", ns, sa);
    rc = api->ops->call(api->ctx, "POST", url, NULL, body, &resp, msg, msglen);
    json_decref(body);
    if (rc)
        return rc;
    tok = spec_str(json_object_get(resp, "status"), "token");
    if (!tok) {
        snprintf(msg, msglen, "TokenRequest answer without status.token");
        json_decref(resp);
        return -EIO;
    }
    rc = write_file(dir, path, tok, strlen(tok), defmode);
    if (!rc) {
        long got = spec_int(json_object_get(resp, "spec"), "expirationSeconds", exp);
        json_object_set_new(tokstate, statekey,
                            json_pack("{s:f}", "refresh", now + 0.8 * (double)got));
    } else {
        snprintf(msg, msglen, "cannot write token %s/%s: %s", dir, path, err_str(rc));
    }
    json_decref(resp);
    return rc;
}

int volume_sync(struct kapi *api, const json_t *pod, const char *podip, const char *voldir,
                json_t *tokstate, double now, char *msg, size_t msglen)
{
    const char *ns = spec_str(json_object_get(pod, "metadata"), "namespace");
    json_t *vols = json_object_get(json_object_get(pod, "spec"), "volumes"), *v;
    size_t i;
    int rc = 0;

    json_array_foreach(vols, i, v)
    {
        const char *name = spec_str(v, "name");
        char dir[4096];
        json_t *s;
        if (!name || strchr(name, '/'))
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", voldir, name);
        if (json_object_get(v, "hostPath"))
            continue;
        rc = volume_mkdirs(dir, json_object_get(v, "emptyDir") ? 0777 : 0755);
        if (!rc && (s = json_object_get(v, "emptyDir")) != NULL) {
            const char *medium = spec_str(s, "medium");

            if (medium && strcmp(medium, "Memory") == 0 && !host_is_mountpoint(dir) &&
                mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0777") != 0) {
                rc = -errno;
                snprintf(msg, msglen, "cannot mount a tmpfs on %s (emptyDir %s, medium Memory): %s",
                         dir, name, err_str(rc));
                return rc;
            }
            rc = chmod(dir, 0777) ? -errno : 0;
        }
        if (rc) {
            snprintf(msg, msglen, "cannot create %s: %s", dir, err_str(rc));
            return rc;
        }
        if ((s = json_object_get(v, "configMap")) != NULL) {
            rc =
                project_keys(api, ns, "ConfigMap", spec_str(s, "name"), json_object_get(s, "items"),
                             json_is_true(json_object_get(s, "optional")),
                             (int)spec_int(s, "defaultMode", 0644), dir, msg, msglen);
        } else if ((s = json_object_get(v, "secret")) != NULL) {
            rc = project_keys(api, ns, "Secret", spec_str(s, "secretName"),
                              json_object_get(s, "items"),
                              json_is_true(json_object_get(s, "optional")),
                              (int)spec_int(s, "defaultMode", 0644), dir, msg, msglen);
        } else if ((s = json_object_get(v, "downwardAPI")) != NULL) {
            rc = project_downward(pod, podip, json_object_get(s, "items"),
                                  (int)spec_int(s, "defaultMode", 0644), dir, msg, msglen);
        } else if ((s = json_object_get(v, "projected")) != NULL) {
            int defmode = (int)spec_int(s, "defaultMode", 0644);
            json_t *src;
            size_t j;
            json_array_foreach(json_object_get(s, "sources"), j, src)
            {
                json_t *x;
                if (rc)
                    break;
                if ((x = json_object_get(src, "serviceAccountToken")) != NULL) {
                    char key[600];
                    snprintf(key, sizeof(key), "%s/%s", name,
                             spec_str(x, "path") ? spec_str(x, "path") : "");
                    rc = project_token(api, pod, x, defmode, dir, key, tokstate, now, msg, msglen);
                } else if ((x = json_object_get(src, "configMap")) != NULL) {
                    rc = project_keys(
                        api, ns, "ConfigMap", spec_str(x, "name"), json_object_get(x, "items"),
                        json_is_true(json_object_get(x, "optional")), defmode, dir, msg, msglen);
                } else if ((x = json_object_get(src, "secret")) != NULL) {
                    rc = project_keys(
                        api, ns, "Secret", spec_str(x, "name"), json_object_get(x, "items"),
                        json_is_true(json_object_get(x, "optional")), defmode, dir, msg, msglen);
                } else if ((x = json_object_get(src, "downwardAPI")) != NULL) {
                    rc = project_downward(pod, podip, json_object_get(x, "items"), defmode, dir,
                                          msg, msglen);
                }
            }
        }
        if (rc) {
            char tmp[512];
            snprintf(tmp, sizeof(tmp), "%s", msg);
            snprintf(msg, msglen, "MountVolume.SetUp failed for volume \"%s\" : %s", name, tmp);
            return rc;
        }
    }
    return 0;
}

const char *volume_source(const json_t *pod, const char *voldir, const char *name, char *buf,
                          size_t buflen)
{
    json_t *vols = json_object_get(json_object_get(pod, "spec"), "volumes"), *v;
    size_t i;

    json_array_foreach(vols, i, v)
    {
        const char *n = spec_str(v, "name");
        if (!n || strcmp(n, name) != 0)
            continue;
        if (json_object_get(v, "hostPath"))
            return spec_str(json_object_get(v, "hostPath"), "path");
        snprintf(buf, buflen, "%s/%s", voldir, name);
        return buf;
    }
    return NULL;
}
