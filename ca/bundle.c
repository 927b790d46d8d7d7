/*
 * bundle.c - struct ca: the active signer and the trust bundle, with the rotation rules.
 *
 * Rotation (docs/ca.md): add the new root to the bundle and publish it; switch the signer
 * (refused unless its root is in the bundle); once every leaf of the old root has expired,
 * remove the old root (refused while this struct ca knows of a live leaf under it).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "ca/ca_int.h"

static time_t wall_clock(void *arg)
{
    (void)arg;
    return time(NULL);
}

time_t ca__now(const struct ca *ca)
{
    return ca->now(ca->now_arg);
}

void ca_clock_set(struct ca *ca, time_t (*fn)(void *arg), void *arg)
{
    pthread_rwlock_wrlock(&ca->lock);
    ca->now = fn ? fn : wall_clock;
    ca->now_arg = fn ? arg : NULL;
    pthread_rwlock_unlock(&ca->lock);
}

static struct ca_root *root_find(const struct ca *ca, const char *fp)
{
    for (size_t i = 0; i < ca->nroots; i++)
        if (!strcmp(ca->roots[i].fp, fp))
            return &ca->roots[i];
    return NULL;
}

void ca__note_leaf(struct ca *ca, time_t not_after)
{
    struct ca_root *r = root_find(ca, ca->signer->root_fp);

    pthread_mutex_lock(&ca->leaf_mu);
    if (r && r->leaves_until < not_after)
        r->leaves_until = not_after;
    pthread_mutex_unlock(&ca->leaf_mu);
}

/* Writer-preferring, so that a signer switch is not starved by a steady stream of issuers. */
static int lock_init(struct ca *ca)
{
    pthread_rwlockattr_t a;
    int rc;

    if (pthread_rwlockattr_init(&a))
        return -ENOMEM;
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    rc = pthread_rwlock_init(&ca->lock, &a);
    pthread_rwlockattr_destroy(&a);
    if (rc)
        return -ENOMEM;
    if (pthread_mutex_init(&ca->leaf_mu, NULL)) {
        pthread_rwlock_destroy(&ca->lock);
        return -ENOMEM;
    }
    return 0;
}

int ca_new(struct ca_signer *signer, struct ca **out)
{
    struct ca *ca = calloc(1, sizeof(*ca));

    if (!ca || lock_init(ca) < 0) {
        free(ca);
        ca_signer_free(signer);
        return -ENOMEM;
    }
    ca->now = wall_clock;
    /* the curves of CSR keys, built once: each CSR key gets a copy (see csr.c) */
    ca->ec_group[0] = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    ca->ec_group[1] = EC_GROUP_new_by_curve_name(NID_secp384r1);
    ca->roots = calloc(1, sizeof(*ca->roots));
    if (!ca->ec_group[0] || !ca->ec_group[1] || !ca->roots || !X509_up_ref(signer->root)) {
        ERR_clear_error();
        ca_signer_free(signer);
        ca_free(ca);
        return -ENOMEM;
    }
    ca->roots[0].cert = signer->root;
    memcpy(ca->roots[0].fp, signer->root_fp, sizeof(ca->roots[0].fp));
    ca->nroots = 1;
    ca->signer = signer;
    ca->generation = 1;
    *out = ca;
    return 0;
}

void ca_free(struct ca *ca)
{
    if (!ca)
        return;
    for (size_t i = 0; i < ca->nroots; i++)
        X509_free(ca->roots[i].cert);
    free(ca->roots);
    ca_signer_free(ca->signer);
    EC_GROUP_free(ca->ec_group[0]);
    EC_GROUP_free(ca->ec_group[1]);
    pthread_mutex_destroy(&ca->leaf_mu);
    pthread_rwlock_destroy(&ca->lock);
    free(ca);
}

int ca_bundle_add(struct ca *ca, const char *pem, size_t len, size_t *added, struct diag *diag)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    struct ca_root *grown = NULL, *fresh = NULL;
    size_t nfresh = 0;
    time_t now = ca__now(ca);
    int n, rc = -ENOMEM;

    if (!sk)
        goto out;
    n = ca__read_certs(pem, len, sk);
    if (n <= 0) {
        rc = ca__refuse(diag, CA_REFUSAL_NOT_PEM, "no readable PEM certificate");
        goto out;
    }
    fresh = calloc((size_t)n, sizeof(*fresh));
    if (!fresh)
        goto out;
    /* validate everything before changing anything */
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(sk, i);
        char fp[CA_FINGERPRINT_HEX + 1];
        bool dup = false;

        rc = ca__check_ca_cert(x, now, "root", diag);
        if (rc < 0)
            goto out;
        if (!ca__self_signed(x) || X509_verify(x, X509_get0_pubkey(x)) != 1) {
            rc = ca__refuse(diag, CA_REFUSAL_NO_ROOT, "certificate %d is not a self-signed root",
                            i + 1);
            goto out;
        }
        rc = ca__x509_fingerprint(x, fp);
        if (rc < 0)
            goto out;
        for (size_t j = 0; j < nfresh; j++)
            dup = dup || !strcmp(fresh[j].fp, fp);
        if (dup || root_find(ca, fp))
            continue;
        fresh[nfresh].cert = x;
        memcpy(fresh[nfresh].fp, fp, sizeof(fp));
        nfresh++;
    }
    if (nfresh) {
        /* issuers read the array (ca__note_leaf): grow it under the write lock */
        pthread_rwlock_wrlock(&ca->lock);
        grown = realloc(ca->roots, (ca->nroots + nfresh) * sizeof(*grown));
        if (grown) {
            ca->roots = grown;
            for (size_t j = 0; j < nfresh; j++) {
                X509_up_ref(fresh[j].cert); /* cannot fail: refcount of a live object */
                ca->roots[ca->nroots++] = fresh[j];
            }
            ca->generation++;
        }
        pthread_rwlock_unlock(&ca->lock);
        rc = -ENOMEM;
        if (!grown)
            goto out;
    }
    if (added)
        *added = nfresh;
    rc = 0;
out:
    free(fresh);
    sk_X509_pop_free(sk, X509_free);
    ERR_clear_error();
    return rc;
}

int ca_bundle_remove(struct ca *ca, const char *fingerprint, bool force)
{
    struct ca_root *r = fingerprint ? root_find(ca, fingerprint) : NULL;
    size_t i;
    int rc = 0;

    if (!r)
        return ERR_NOTFOUND;
    if (!strcmp(r->fp, ca->signer->root_fp))
        return -EBUSY;
    /* under the write lock: no issuer is between its check and its ca__note_leaf */
    pthread_rwlock_wrlock(&ca->lock);
    if (!force && r->leaves_until > ca__now(ca)) {
        rc = -EBUSY;
    } else {
        i = (size_t)(r - ca->roots);
        X509_free(r->cert);
        memmove(&ca->roots[i], &ca->roots[i + 1], (ca->nroots - i - 1) * sizeof(*r));
        ca->nroots--;
        ca->generation++;
    }
    pthread_rwlock_unlock(&ca->lock);
    return rc;
}

int ca_bundle_pem(const struct ca *ca, char **out, size_t *len)
{
    struct ca__der d;

    ca__der_init(&d);
    for (size_t i = 0; i < ca->nroots; i++)
        if (ca__x509_pem_append(&d, ca->roots[i].cert) < 0)
            break;
    ca__der_raw(&d, "", 1);
    if (d.err) {
        ca__der_release(&d);
        return -ENOMEM;
    }
    *out = (char *)d.p;
    if (len)
        *len = d.len - 1;
    return 0;
}

size_t ca_bundle_count(const struct ca *ca)
{
    return ca->nroots;
}

unsigned long ca_bundle_generation(const struct ca *ca)
{
    return ca->generation;
}

int ca_signer_set(struct ca *ca, struct ca_signer *signer, struct diag *diag)
{
    struct ca_signer *old;

    if (!root_find(ca, signer->root_fp)) {
        int rc = ca__refuse(diag, CA_REFUSAL_NOT_IN_BUNDLE,
                            "root %.16s... of the new signer is not in the trust bundle",
                            signer->root_fp);

        ca_signer_free(signer);
        return rc;
    }
    /* issuers hold the read lock for a whole issuance: once we have the write lock nobody
     * uses the old signer any more */
    pthread_rwlock_wrlock(&ca->lock);
    old = ca->signer;
    ca->signer = signer;
    pthread_rwlock_unlock(&ca->lock);
    ca_signer_free(old);
    return 0;
}

const struct ca_signer *ca_signer_get(const struct ca *ca)
{
    return ca->signer;
}
