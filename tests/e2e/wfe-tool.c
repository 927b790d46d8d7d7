/*
 * wfe-tool - helpers for the e2e suites (tests/e2e/), built as $(BUILD)/tests/wfe-tool:
 *
 *   wfe-tool ca DIR                       a new root (ca/): DIR/root.crt, DIR/root.key
 *   wfe-tool leaf DIR TD NS SA OUT.pem [TTL]
 *                                         a key made here and a workload certificate for
 *                                         spiffe://TD/ns/NS/sa/SA issued by DIR's root through
 *                                         ca_issue() (what weftd's CA issues): OUT.pem holds the
 *                                         certificate chain, then the key (HAProxy's crt)
 *   wfe-tool render DOC.json RUNDIR CERT CAFILE [--ipv6] [--access-log-all]
 *                                         agent_render(): RUNDIR/haproxy.cfg, RUNDIR/outbound.map,
 * RUNDIR/grpc.lua; prints the runtime items (JSON) on stdout
 *
 * Exit 0, or 1 with one line on stderr.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent.h"
#include "ca/ca.h"
#include "core/buf.h"

static int die(const char *what, const char *detail)
{
    fprintf(stderr, "wfe-tool: %s: %s\n", what, detail);
    return 1;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct buf b;
    char chunk[8192];
    size_t n;

    if (!f)
        return NULL;
    buf_init(&b);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(&b, chunk, n) < 0) {
            fclose(f);
            buf_release(&b);
            return NULL;
        }
    }
    fclose(f);
    if (len)
        *len = b.len;
    return buf_take(&b);
}

static int spill(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (!f)
        return -1;
    ok = fwrite(data, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int cmd_ca(const char *dir)
{
    struct ca_signer *s = NULL;
    struct ca_signer_pem pem = {0};
    char path[4096];
    int rc = 1;

    if (ca_signer_generate_root(time(NULL), &s) < 0 || ca_signer_pem_get(s, &pem) < 0) {
        die("ca", "cannot generate a root");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/root.crt", dir);
    if (spill(path, pem.tls_crt, strlen(pem.tls_crt)) < 0) {
        die(path, "cannot write");
        goto out;
    }
    snprintf(path, sizeof(path), "%s/root.key", dir);
    if (ca_key_file_write(path, pem.tls_key, strlen(pem.tls_key)) < 0) {
        die(path, "cannot write");
        goto out;
    }
    rc = 0;
out:
    ca_signer_pem_release(&pem);
    ca_signer_free(s);
    return rc;
}

static int cmd_leaf(char **argv, int argc)
{
    const char *dir = argv[0], *out = argv[4];
    struct ca_identity id = {argv[1], argv[2], argv[3], NULL, NULL};
    long ttl = argc > 5 ? atol(argv[5]) : 3600;
    char path[4096], *crt = NULL, *key = NULL, *csr = NULL, *kp = NULL;
    size_t crt_len = 0, key_len = 0;
    struct ca_signer *s = NULL;
    struct ca *ca = NULL;
    struct ca_leaf leaf = {0};
    struct diag diag = {0};
    struct buf pem;
    int rc = 1;

    buf_init(&pem);
    snprintf(path, sizeof(path), "%s/root.crt", dir);
    crt = slurp(path, &crt_len);
    snprintf(path, sizeof(path), "%s/root.key", dir);
    key = slurp(path, &key_len);
    if (!crt || !key) {
        die(dir, "no root.crt/root.key (wfe-tool ca DIR first)");
        goto out;
    }
    {
        struct ca_signer_input in = {crt, crt_len, key, key_len, NULL, 0};

        if (ca_signer_load(&in, time(NULL), &s, &diag) < 0 || ca_new(s, &ca) < 0) {
            s = NULL;
            die(dir, "cannot load the root");
            goto out;
        }
        s = NULL; /* consumed by ca_new */
    }
    if (ca_csr_new(CA_KEY_EC_P256, &kp, &csr) < 0) {
        die("leaf", "cannot make a key");
        goto out;
    }
    if (ca_issue(ca, csr, strlen(csr), &id, ttl, &leaf, &diag) < 0) {
        die("leaf", "issuance refused");
        goto out;
    }
    if (buf_puts(&pem, leaf.chain_pem) < 0 || buf_puts(&pem, kp) < 0 ||
        ca_key_file_write(out, pem.p, pem.len) < 0) {
        die(out, "cannot write");
        goto out;
    }
    rc = 0;
out:
    if (pem.p)
        memset(pem.p, 0, pem.len);
    buf_release(&pem);
    ca_leaf_release(&leaf);
    ca_key_pem_free(kp);
    ca_key_pem_free(key);
    free(csr);
    free(crt);
    ca_signer_free(s);
    ca_free(ca);
    return rc;
}

static int cmd_render(char **argv, int argc)
{
    struct agent_render_opts o;
    struct agent_render_out out;
    json_error_t je;
    json_t *doc = json_load_file(argv[0], 0, &je);
    struct diag dg = {0, ""};
    char path[4096], *rt;
    int rc;

    if (!doc)
        return die(argv[0], je.text);
    agent_render_opts_init(&o);
    o.run_dir = argv[1];
    o.cert_file = argv[2];
    o.ca_file = argv[3];
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--ipv6") == 0)
            o.ipv6 = true;
        else if (strcmp(argv[i], "--access-log-all") == 0)
            o.access_log_all = true;
        else
            return die(argv[i], "unknown option (want --ipv6 or --access-log-all)");
    }
    rc = agent_render(doc, &o, &out, &dg);
    json_decref(doc);
    if (rc < 0)
        return die("render", dg.text);
    snprintf(path, sizeof(path), "%s/haproxy.cfg", argv[1]);
    if (spill(path, out.config.p, out.config.len) < 0) {
        agent_render_out_release(&out);
        return die(path, "cannot write");
    }
    snprintf(path, sizeof(path), "%s/outbound.map", argv[1]);
    if (spill(path, out.outbound_map.p ? out.outbound_map.p : "", out.outbound_map.len) < 0) {
        agent_render_out_release(&out);
        return die(path, "cannot write");
    }
    snprintf(path, sizeof(path), "%s/" AGENT_GRPC_LUA, argv[1]);
    if (spill(path, agent_grpc_lua, strlen(agent_grpc_lua)) < 0) {
        agent_render_out_release(&out);
        return die(path, "cannot write");
    }
    rt = json_dumps(out.runtime, JSON_COMPACT);
    if (rt)
        puts(rt);
    free(rt);
    agent_render_out_release(&out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "ca") == 0)
        return cmd_ca(argv[2]);
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "leaf") == 0)
        return cmd_leaf(argv + 2, argc - 2);
    if (argc >= 6 && argc <= 8 && strcmp(argv[1], "render") == 0)
        return cmd_render(argv + 2, argc - 2);
    fprintf(stderr, "usage: wfe-tool ca DIR | leaf DIR TD NS SA OUT.pem [TTL] |"
                    " render DOC.json RUNDIR CERT CAFILE [--ipv6] [--access-log-all]\n");
    return 2;
}
