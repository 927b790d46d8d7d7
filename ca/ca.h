/*
 * ca.h - Weft's certificate authority: roots, trust bundle, workload and serving certificates.
 *
 * This is the only module that calls OpenSSL's crypto API; everything else (weftd's CSR endpoint,
 * the webhook, the agent) goes through these functions. It is a pure library: no I/O except
 * ca_key_file_write(), no logging of key material, no global state.
 *
 * Objects:
 *   struct ca_signer  a signing certificate + private key + the chain up to its root (a Weft
 *                     generated root, or an operator's root or intermediate loaded from PEM).
 *   struct ca         the active signer plus the trust bundle (every root that may have signed a
 *                     live leaf). Leaves are issued by the active signer only.
 *   struct ca_csr     a parsed PKCS#10 request whose self-signature has been verified and whose
 *                     key has been accepted. Only its public key is ever used.
 *
 * Invariants:
 *   - The bundle always contains the active signer's root (ca_new seeds it, ca_signer_set
 *     requires it, ca_bundle_remove refuses it), and refuses to drop a root under which this
 *     struct ca issued a leaf that is still valid (unless forced).
 *   - A leaf's subject and extensions come only from the identity the caller passes, never from
 *     the CSR; a leaf never outlives its signer.
 *
 * Identity encoding (see docs/ca.md): URI SAN spiffe://<td>/ns/<ns>/sa/<sa>; subject
 * O=<td>, OU=<ns>, CN=ca_identity_subject_cn() (<sa>.<ns>.<td>, or a hashed form when that is
 * longer than 64 bytes), all UTF8String, in that order.
 *
 * Threads: no function touches global mutable state. A struct ca has one owner thread (weftd's
 * loop), which makes every call on it, except that the issuing calls ca_csr_parse(),
 * ca_issue_csr(), ca_issue() and ca_issue_server() may run on any number of threads at once,
 * concurrently with each other and with the owner's calls (signer switch, bundle changes,
 * clock). Issuers hold an internal read lock for one issuance (tens of microseconds); the
 * owner's changes take it for writing and so wait for issuances in flight, and a leaf is
 * always issued entirely by one signer. ca_free() must not run while any call is in flight.
 * A struct ca_csr and a struct ca_signer not yet handed to a struct ca belong to one thread
 * at a time. Distinct objects may be used from distinct threads.
 *
 * Errors: functions return 0 or a negative code from core/err.h; out-parameters are written
 * only on success. Input that is refused (bad CSR, unusable signer PEM) returns ERR_INVALID
 * and, when a struct diag is given, a stable reason code and a human-readable text.
 */
#ifndef WEFT_CA_CA_H
#define WEFT_CA_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "core/diag.h"
#include "core/err.h"

struct ca;
struct ca_signer;
struct ca_csr;

/* Largest CSR input accepted (PEM bytes). Bigger input is refused with CA_REFUSAL_TOO_LARGE. */
#define CA_CSR_MAX_PEM 16384
/* X.509 upper bound for CN / O / OU (RFC 5280 ub-common-name etc.). */
#define CA_CN_MAX 64
/* Longest SPIFFE ID this module produces or reports (SPIFFE spec limit). */
#define CA_SPIFFE_ID_MAX 2048
/* Length of a hex SHA-256 fingerprint (without NUL). */
#define CA_FINGERPRINT_HEX 64
/* Default, minimum and maximum leaf lifetime. */
#define CA_TTL_DEFAULT (24 * 3600)
#define CA_TTL_MIN 60
#define CA_TTL_MAX (366L * 24 * 3600)
/* A root's notBefore is backdated by this much to tolerate clock skew between nodes. */
#define CA_BACKDATE 60
/* A leaf's is backdated by ttl / CA_BACKDATE_DIV, at most CA_BACKDATE: a 60 s certificate is
 * backdated 6 s, so its half-life (when agents renew) still lies 27 s ahead, not at once. */
#define CA_BACKDATE_DIV 10
/* The backdate of a leaf with lifetime ttl (after ttl 0 became CA_TTL_DEFAULT). */
#define CA_LEAF_BACKDATE(ttl)                                                                      \
    ((ttl) / CA_BACKDATE_DIV < CA_BACKDATE ? (ttl) / CA_BACKDATE_DIV : CA_BACKDATE)
/* Lifetime of a generated root. */
#define CA_ROOT_LIFETIME (3650L * 24 * 3600)

/* Why input was refused. Stable; ca_refusal_str() gives the CamelCase name used in metrics,
 * logs and HTTP error bodies. */
enum ca_refusal {
    CA_REFUSAL_NONE = 0,
    CA_REFUSAL_TOO_LARGE,       /* input longer than the limit */
    CA_REFUSAL_NOT_PEM,         /* not one PEM block of the expected type, or bad base64 */
    CA_REFUSAL_MALFORMED,       /* DER does not parse as the expected structure */
    CA_REFUSAL_BAD_SIGNATURE,   /* the CSR's self-signature does not verify */
    CA_REFUSAL_UNSUPPORTED_ALG, /* signature algorithm not accepted (SHA-1, PSS, mismatch) */
    CA_REFUSAL_WEAK_KEY,        /* RSA below 2048 bits, bad exponent */
    CA_REFUSAL_UNSUPPORTED_KEY, /* key type or curve not accepted (only P-256, P-384, RSA) */
    CA_REFUSAL_KEY_MISMATCH,    /* signer: private key does not belong to the certificate */
    CA_REFUSAL_NOT_CA,          /* signer/root: not CA:TRUE or keyCertSign missing */
    CA_REFUSAL_EXPIRED,         /* signer/root: outside notBefore..notAfter */
    CA_REFUSAL_CHAIN_INVALID,   /* signer: chain does not verify to its root */
    CA_REFUSAL_NO_ROOT,         /* signer: no self-signed root in tls.crt or ca.crt */
    CA_REFUSAL_ENCRYPTED_KEY,   /* signer: key PEM is encrypted or unreadable */
    CA_REFUSAL_NOT_IN_BUNDLE,   /* ca_signer_set: the signer's root is not in the bundle */
    CA_REFUSAL_NREASONS         /* how many values there are (sizes counters); not a reason */
};

/*
 * Refused input is described in a struct diag (core/diag.h): code is the enum ca_refusal, text
 * one line that never contains key material.
 */

/* Stable CamelCase name of a refusal ("BadSignature", ...); never NULL. */
const char *ca_refusal_str(enum ca_refusal r);

/* A workload identity. Validated by every function that takes one (-EINVAL otherwise):
 *   trust_domain   1..64 bytes of [a-z0-9.-_] (fits the O attribute)
 *   namespace_     1..63 bytes, Kubernetes namespace (DNS label: [a-z0-9-], alnum at both ends)
 *   serviceaccount 1..253 bytes, Kubernetes ServiceAccount name (DNS subdomain)
 *   pod_name, pod_uid  optional, both or neither: the pod (in namespace_) the certificate is
 *                  issued to (TokenReview's extra pod-name and pod-uid of a bound token): a pod
 *                  name (DNS subdomain) and 1..CA_POD_UID_MAX bytes of [A-Za-z0-9-]. Issued
 *                  leaves carry them in the pod extension (CA_POD_EXT_OID). */
struct ca_identity {
    const char *trust_domain;
    const char *namespace_;
    const char *serviceaccount;
    const char *pod_name;
    const char *pod_uid;
};

/*
 * The pod extension: non-critical, extnValue = SEQUENCE { namespace UTF8String, name
 * UTF8String, uid UTF8String }. Its OID is under ITU-T X.667's 2.25 arc (an OID made from a
 * UUID, 0920a2e4-35d1-4726-9f6a-04680dec6065, needing no registration). A private extension
 * rather than a second URI SAN (an X.509-SVID has exactly one) or a subject attribute (proxies'
 * ACLs match the whole subject, see docs/ca.md).
 */
#define CA_POD_EXT_OID "2.25.12132509292569909180439193538005852261"
#define CA_POD_NAME_MAX 253
#define CA_POD_UID_MAX 63

/* Write "spiffe://<td>/ns/<ns>/sa/<sa>" to out. Returns 0 or -EINVAL (invalid identity). */
int ca_identity_spiffe_id(const struct ca_identity *id, char out[CA_SPIFFE_ID_MAX + 1]) WUR;

/* Write the exact subject CN that ca_issue() puts in the leaf (what HAProxy's ssl_c_s_dn(CN)
 * returns and what verifyhost compares): "<sa>.<ns>.<td>" if that is at most 64 bytes, else
 * its first 35 bytes, "~", and the first 28 hex digits of SHA-256(SPIFFE ID) (64 bytes).
 * Returns 0 or -EINVAL. */
int ca_identity_subject_cn(const struct ca_identity *id, char out[CA_CN_MAX + 1]) WUR;

/* ---- signers (roots and intermediates) ---------------------------------------------------- */

/* Generate a self-signed ECDSA P-256 root: 10 years from now - CA_BACKDATE, CA:TRUE (critical),
 * keyUsage keyCertSign+cRLSign (critical), SKI/AKI, subject O=weft, CN=weft root <first 8 hex
 * digits of SHA-256 of its SubjectPublicKeyInfo>. Slow (key generation): not for the loop
 * thread. Returns 0, -ENOMEM or -EIO (OpenSSL failure). */
int ca_signer_generate_root(time_t now, struct ca_signer **out) WUR;

/* The three fields of the Secret that stores a signer (Kubernetes TLS Secret layout). */
struct ca_signer_pem {
    char *tls_crt; /* signing certificate, then its intermediates (not the root unless self) */
    char *tls_key; /* PKCS#8 private key PEM ("PRIVATE KEY") */
    char *ca_crt;  /* the root */
};

/* Borrowed input for ca_signer_load(); lengths in bytes, ca may be NULL/0. */
struct ca_signer_input {
    const char *crt;
    size_t crt_len;
    const char *key;
    size_t key_len;
    const char *ca;
    size_t ca_len;
};

/* Load a signer from PEM: the first certificate of crt signs; the rest of crt and all of ca are
 * its chain. Refused (ERR_INVALID + diag) unless: the key matches the certificate; the signer
 * and every intermediate are CA:TRUE with keyCertSign (when keyUsage is present); all are
 * valid at `now`; the signer is a P-256/P-384/RSA 2048..8192 key; a self-signed root is present
 * (the signer itself, or in crt/ca) and the chain verifies to it. Encrypted keys are refused.
 * Returns 0, ERR_INVALID, -ENOMEM. */
int ca_signer_load(const struct ca_signer_input *in, time_t now, struct ca_signer **out,
                   struct diag *diag) WUR;

/* Serialize for storage in a Secret. out's strings are allocated; release with
 * ca_signer_pem_release() (which wipes the key). Returns 0 or -ENOMEM. */
int ca_signer_pem_get(const struct ca_signer *s, struct ca_signer_pem *out) WUR;
void ca_signer_pem_release(struct ca_signer_pem *p);

/* SHA-256 fingerprint (lowercase hex of the DER) of the signer's root; never NULL, owned by s. */
const char *ca_signer_root_fingerprint(const struct ca_signer *s);
/* The signing certificate's notAfter. */
time_t ca_signer_not_after(const struct ca_signer *s);
void ca_signer_free(struct ca_signer *s);

/* ---- the CA and its trust bundle ----------------------------------------------------------- */

/* Create a CA issuing from `signer` (consumed, even on failure); the bundle starts as the
 * signer's root. Returns 0 or -ENOMEM. */
int ca_new(struct ca_signer *signer, struct ca **out) WUR;
void ca_free(struct ca *ca);

/* Override the clock (tests). fn(arg) returns seconds since the epoch; NULL restores time(). */
void ca_clock_set(struct ca *ca, time_t (*fn)(void *arg), void *arg);

/* Add every certificate in pem (concatenated PEM) to the bundle. Each must be a self-signed
 * CA root (CA:TRUE, valid self-signature, not expired). Roots already present are skipped.
 * All-or-nothing. *added (may be NULL) gets the number of new roots. Returns 0, ERR_INVALID
 * (+diag), -ENOMEM. */
int ca_bundle_add(struct ca *ca, const char *pem, size_t len, size_t *added, struct diag *diag) WUR;

/* Remove the root with this SHA-256 fingerprint (64 lowercase hex). Returns 0; ERR_NOTFOUND;
 * -EBUSY if it is the active signer's root, or if this struct ca issued a leaf under it that
 * is still valid and force is false. */
int ca_bundle_remove(struct ca *ca, const char *fingerprint, bool force) WUR;

/* The bundle as concatenated PEM, in the order roots were added. *out is allocated (free());
 * len may be NULL. Returns 0 or -ENOMEM. */
int ca_bundle_pem(const struct ca *ca, char **out, size_t *len) WUR;
/* Number of roots, and a counter bumped by every bundle change (republish when it moves). */
size_t ca_bundle_count(const struct ca *ca);
unsigned long ca_bundle_generation(const struct ca *ca);

/* Switch issuance to `signer` (consumed, even on failure). Its root must already be in the
 * bundle (publish the bundle first: rotation step 1), else ERR_INVALID with
 * CA_REFUSAL_NOT_IN_BUNDLE. Returns 0 or ERR_INVALID. */
int ca_signer_set(struct ca *ca, struct ca_signer *signer, struct diag *diag) WUR;
/* The active signer, borrowed. */
const struct ca_signer *ca_signer_get(const struct ca *ca);

/* ---- CSRs and issuance --------------------------------------------------------------------- */

/* Parse a PEM PKCS#10 CSR ("CERTIFICATE REQUEST" block; only whitespace around it), verify its
 * self-signature and accept only EC P-256/P-384 (uncompressed point) or RSA 2048..8192 keys
 * with a matching SHA-256/384/512 signature. Subject, attributes and extensions are ignored.
 * ca supplies the curves (read only: any thread, see Threads); the result may be issued by
 * any struct ca. Returns 0, ERR_INVALID (+diag), -ENOMEM. Free with ca_csr_free(). */
int ca_csr_parse(const struct ca *ca, const char *pem, size_t len, struct ca_csr **out,
                 struct diag *diag) WUR;
void ca_csr_free(struct ca_csr *csr);

/* An issued certificate. chain_pem: the leaf, then the signer's intermediates (never the root),
 * NUL-terminated; free with ca_leaf_release(). */
struct ca_leaf {
    char *chain_pem;
    size_t chain_len;
    time_t not_before;
    time_t not_after;
    char fingerprint[CA_FINGERPRINT_HEX + 1]; /* of the leaf */
};
void ca_leaf_release(struct ca_leaf *leaf);

/* Issue a workload leaf for exactly `id` with csr's public key: URI SAN spiffe ID, subject
 * O=<td>/OU=<ns>/CN=ca_identity_subject_cn(), EKU serverAuth+clientAuth, keyUsage
 * digitalSignature (+keyEncipherment for RSA keys), CA:FALSE, SKI/AKI, random 128-bit serial,
 * notBefore = now - CA_LEAF_BACKDATE(ttl), notAfter = now + ttl (ttl 0 = CA_TTL_DEFAULT, else
 * CA_TTL_MIN..CA_TTL_MAX) clamped to the signer's validity. Returns 0, -EINVAL (bad identity or
 * ttl), -EKEYEXPIRED (signer expired),
 * -ENOMEM, -EIO. */
int ca_issue_csr(struct ca *ca, const struct ca_csr *csr, const struct ca_identity *id,
                 long ttl_seconds, struct ca_leaf *out) WUR;

/* ca_csr_parse() + ca_issue_csr(). Refused CSRs return ERR_INVALID with diag. */
int ca_issue(struct ca *ca, const char *csr_pem, size_t len, const struct ca_identity *id,
             long ttl_seconds, struct ca_leaf *out, struct diag *diag) WUR;

/* A serving certificate (e.g. the webhook's weft-webhook.weft-system.svc) with a fresh P-256
 * key made here: SANs = dns names + IP addresses (textual IPv4/IPv6), subject O=weft and
 * CN=dns[0] when it fits in 64 bytes, EKU serverAuth, same validity rules as ca_issue_csr().
 * At least one name. *key_pem is PKCS#8 PEM (free with ca_key_pem_free()). Slow (keygen).
 * Returns 0, -EINVAL (no/invalid name), -EKEYEXPIRED, -ENOMEM, -EIO. */
int ca_issue_server(struct ca *ca, const char *const *dns, size_t ndns, const char *const *ips,
                    size_t nips, long ttl_seconds, struct ca_leaf *out, char **key_pem) WUR;

/* ---- agent side ---------------------------------------------------------------------------- */

enum ca_key_type { CA_KEY_EC_P256, CA_KEY_EC_P384 };

/* Generate a key pair locally and a CSR for it (empty subject, signed with SHA-256/384).
 * *key_pem (PKCS#8) and *csr_pem are allocated; free the key with ca_key_pem_free() and the
 * CSR with free(). Returns 0, -EINVAL, -ENOMEM, -EIO. */
int ca_csr_new(enum ca_key_type type, char **key_pem, char **csr_pem) WUR;
/* Wipe and free a private-key PEM string. NULL is fine. */
void ca_key_pem_free(char *key_pem);

/* Facts about a certificate for rotation decisions. */
struct ca_cert_info {
    time_t not_before;
    time_t not_after;
    time_t renew_at;                          /* half-life: not_before + lifetime / 2 */
    char spiffe_id[CA_SPIFFE_ID_MAX + 1];     /* first spiffe:// URI SAN, or "" */
    char fingerprint[CA_FINGERPRINT_HEX + 1]; /* SHA-256 of the DER, lowercase hex */
    bool is_ca;
    /* The pod extension (CA_POD_EXT_OID), or all "" when absent or malformed. */
    char pod_namespace[64];
    char pod_name[CA_POD_NAME_MAX + 1];
    char pod_uid[CA_POD_UID_MAX + 1];
};

/* Read the first certificate of a PEM string. Returns 0, ERR_PARSE, -ENOMEM. */
int ca_cert_info(const char *pem, size_t len, struct ca_cert_info *out) WUR;

/* Write key material (or anything secret) to path atomically with mode 0600: a temporary file
 * in the same directory, fsync, rename. Returns 0 or a negative errno. */
int ca_key_file_write(const char *path, const char *data, size_t len) WUR;

#endif
