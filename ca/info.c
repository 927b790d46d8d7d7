/*
 * info.c - reading certificates for rotation decisions, and writing secrets to disk.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca_int.h"

/* One UTF8String of at most max bytes without NUL into out. 0 or -1. */
static int pod_field(struct ca__rd *r, char *out, size_t max)
{
    struct ca__rd v;

    if (ca__rd_next(r, 0x0c, &v, NULL) < 0 || v.len == 0 || v.len > max || memchr(v.p, '\0', v.len))
        return -1;
    memcpy(out, v.p, v.len);
    out[v.len] = '\0';
    return 0;
}

/* The pod extension (CA_POD_EXT_OID) into info; left "" when absent or malformed. */
static void pod_ext(X509 *x, struct ca_cert_info *info)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(CA_POD_EXT_OID, 1);
    int at = oid ? X509_get_ext_by_OBJ(x, oid, -1) : -1;
    const ASN1_OCTET_STRING *v;
    struct ca__rd r, seq;

    ASN1_OBJECT_free(oid);
    if (at < 0)
        return;
    v = X509_EXTENSION_get_data(X509_get_ext(x, at));
    r.p = ASN1_STRING_get0_data(v);
    r.len = (size_t)ASN1_STRING_length(v);
    if (ca__rd_next(&r, 0x30, &seq, NULL) < 0 || r.len != 0 ||
        pod_field(&seq, info->pod_namespace, sizeof(info->pod_namespace) - 1) < 0 ||
        pod_field(&seq, info->pod_name, CA_POD_NAME_MAX) < 0 ||
        pod_field(&seq, info->pod_uid, CA_POD_UID_MAX) < 0 || seq.len != 0)
        info->pod_namespace[0] = info->pod_name[0] = info->pod_uid[0] = '\0';
}

int ca_cert_info(const char *pem, size_t len, struct ca_cert_info *out)
{
    struct ca_cert_info info;
    GENERAL_NAMES *names = NULL;
    X509 *x = NULL;
    BIO *b = NULL;
    int rc = ERR_PARSE;

    if (!pem || len == 0 || len > 1u << 20)
        return ERR_PARSE;
    memset(&info, 0, sizeof(info));
    b = BIO_new_mem_buf(pem, (int)len);
    if (!b)
        return -ENOMEM;
    x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    if (!x)
        goto out;
    if (ca__asn1_time(X509_get0_notBefore(x), &info.not_before) < 0 ||
        ca__asn1_time(X509_get0_notAfter(x), &info.not_after) < 0)
        goto out;
    info.renew_at = info.not_before + (info.not_after - info.not_before) / 2;
    info.is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;
    names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        const ASN1_IA5STRING *u = g->d.uniformResourceIdentifier;

        if (g->type != GEN_URI || u->length < 9 || u->length > CA_SPIFFE_ID_MAX ||
            strncasecmp((const char *)u->data, "spiffe://", 9) != 0 ||
            memchr(u->data, '\0', (size_t)u->length))
            continue;
        memcpy(info.spiffe_id, u->data, (size_t)u->length);
        info.spiffe_id[u->length] = '\0';
        break;
    }
    pod_ext(x, &info);
    rc = ca__x509_fingerprint(x, info.fingerprint);
    if (rc < 0)
        goto out;
    *out = info;
out:
    GENERAL_NAMES_free(names);
    X509_free(x);
    BIO_free(b);
    ERR_clear_error();
    return rc;
}

int ca_key_file_write(const char *path, const char *data, size_t len)
{
    char *tmp = NULL;
    size_t off = 0;
    int fd = -1, rc = 0;

    if (!path || (!data && len))
        return -EINVAL;
    if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
        return -ENOMEM;
    fd = mkstemp(tmp); /* mode 0600 */
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (fchmod(fd, 0600) < 0) {
        rc = -errno;
        goto out;
    }
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = -errno;
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        rc = -errno;
out:
    if (fd >= 0)
        close(fd);
    if (rc < 0 && tmp)
        unlink(tmp);
    free(tmp);
    return rc;
}
