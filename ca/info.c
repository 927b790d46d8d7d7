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
