/*
 * fuzz_csr.c - ca_csr_parse (ca/ca.h): the body an agent POSTs to weftd's CSR endpoint, read by
 * the CA's own PEM decoder and strict DER reader before OpenSSL sees the key.
 *
 * Input: bytes handed to ca_csr_parse as they are, except that an input starting with 'D' is
 * taken as DER: the rest is wrapped in a "CERTIFICATE REQUEST" PEM block first, so mutations
 * reach the DER reader instead of breaking the base64.
 *
 * Invariants:
 *   - ca_csr_parse returns 0 or ERR_INVALID (never -ENOMEM or another code for bad input);
 *   - a refusal carries a refusal code (not CA_REFUSAL_NONE) with a name and a non-empty text;
 *   - an accepted CSR can be issued: ca_issue_csr for a fixed identity returns 0 and the leaf
 *     reads back (ca_cert_info) with that identity's SPIFFE ID;
 *   - no leak (LeakSanitizer), no memory error.
 * One struct ca (a generated root) serves the whole run.
 */
#include <string.h>
#include <time.h>

#include "ca/ca.h"
#include "core/base64.h"
#include "core/buf.h"
#include "tests/fuzz/fuzz.h"

static struct ca *the_ca; /* created once, lives for the process */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct ca_signer *s = NULL;

    (void)argc;
    (void)argv;
    FUZZ_ASSERT(ca_signer_generate_root(time(NULL), &s) == 0);
    FUZZ_ASSERT(ca_new(s, &the_ca) == 0);
    return 0;
}

/* Wrap DER bytes in a PEM CERTIFICATE REQUEST block (64-column lines). */
static void pem_wrap(const uint8_t *der, size_t n, struct buf *out)
{
    char *b64 = base64_encode(der, n);
    size_t len;

    FUZZ_ASSERT(b64 != NULL);
    len = strlen(b64);
    FUZZ_ASSERT(buf_puts(out, "-----BEGIN CERTIFICATE REQUEST-----\n") == 0);
    for (size_t i = 0; i < len; i += 64) {
        FUZZ_ASSERT(buf_append(out, b64 + i, len - i < 64 ? len - i : 64) == 0);
        FUZZ_ASSERT(buf_puts(out, "\n") == 0);
    }
    FUZZ_ASSERT(buf_puts(out, "-----END CERTIFICATE REQUEST-----\n") == 0);
    free(b64);
}

static void check_issue(const struct ca_csr *csr)
{
    static const struct ca_identity id = {"cluster.local", "fuzz", "default", NULL, NULL};
    struct ca_leaf leaf;
    struct ca_cert_info info;
    int rc;

    memset(&leaf, 0, sizeof(leaf));
    rc = ca_issue_csr(the_ca, csr, &id, 0, &leaf);
    FUZZ_ASSERTF(rc == 0, "an accepted CSR cannot be issued: %d", rc);
    rc = ca_cert_info(leaf.chain_pem, leaf.chain_len, &info);
    FUZZ_ASSERTF(rc == 0, "the issued leaf does not read back: %d", rc);
    FUZZ_ASSERTF(strcmp(info.spiffe_id, "spiffe://cluster.local/ns/fuzz/sa/default") == 0,
                 "leaf SPIFFE ID %s", info.spiffe_id);
    FUZZ_ASSERT(!info.is_ca);
    ca_leaf_release(&leaf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ca_csr *csr = NULL;
    struct diag diag;
    struct buf pem;
    const char *text = (const char *)data;
    size_t len = size;
    int rc;

    buf_init(&pem);
    if (size && data[0] == 'D') {
        pem_wrap(data + 1, size - 1, &pem);
        text = pem.p;
        len = pem.len;
    }
    memset(&diag, 0, sizeof(diag));
    rc = ca_csr_parse(the_ca, text, len, &csr, &diag);
    FUZZ_ASSERTF(rc == 0 || rc == ERR_INVALID, "ca_csr_parse returned %d", rc);
    if (rc == 0) {
        FUZZ_ASSERT(csr != NULL);
        check_issue(csr);
        ca_csr_free(csr);
    } else {
        FUZZ_ASSERT(csr == NULL);
        FUZZ_ASSERTF(diag.code != CA_REFUSAL_NONE, "refused without a code (%s)", diag.text);
        FUZZ_ASSERT(ca_refusal_str(diag.code) != NULL && ca_refusal_str(diag.code)[0]);
        FUZZ_ASSERTF(diag.text[0] != '\0', "refusal %s without a text", ca_refusal_str(diag.code));
    }
    buf_release(&pem);
    return 0;
}
