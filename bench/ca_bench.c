/*
 * ca_bench.c - certificate issuance speed of ca/ against raw ECDSA P-256 signing, same run.
 *
 *   ca_bench [--seconds S] [--csrs N] [--threads T] [--no-speed]
 *
 * The CA is a generated P-256 root; N distinct P-256 CSRs (made with ca_csr_new, as the agent
 * does) are issued round-robin. Per-core measurements run on one thread, S CPU-seconds each:
 *
 *   raw sign        EVP_DigestSign on the CA's own key over a 450-byte message (typical TBS
 *                   size), one EVP_DigestSignInit per operation (OpenSSL's ordinary API path).
 *   raw sign, ctx   EVP_PKEY_sign of a precomputed digest on one reused context (the floor).
 *   raw verify      EVP_PKEY_verify of a P-256 signature on one reused context.
 *   ca_csr_parse    PEM + DER parsing, key checks and the CSR signature check.
 *   ca_issue_csr    building, signing and PEM-encoding a leaf for a parsed CSR.
 *   ca_issue        everything (parse + verify + issue), with per-call latency p50/p99.
 *
 * Then the per-process figure: T threads (default: the number of online CPUs) call ca_issue on
 * one shared struct ca for S wall-clock seconds (the way weftd's worker pool does).
 *
 * The baseline of the ratios is `openssl speed -seconds S ecdsap256` run by this program
 * (signs per CPU-second, OpenSSL's own loop on a reused context), which is what the issue's
 * target is stated against; the in-process EVP_DigestSign rate is printed next to it. A full
 * ca_issue includes one ECDSA verify (proof of possession), which on P-256 costs about three
 * signs, so its per-core ceiling is 1 / (1 + sign_rate / verify_rate); the bench prints it.
 * With --no-speed the in-process EVP_PKEY_sign rate stands in for `openssl speed`.
 *
 * The baselines call OpenSSL directly on purpose: they measure the library ca/ is built on.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "ca/ca.h"
#include "core/err.h"

static double seconds = 2.0;

/* Thread CPU time: the rate per core even when other processes share the machine. */
static double cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

static void die(const char *what)
{
    fprintf(stderr, "ca_bench: %s failed\n", what);
    exit(1);
}

/* Shared state of the workloads. */
struct bench {
    EVP_PKEY *key;
    EVP_PKEY_CTX *sign, *verify;
    unsigned char msg[450], dgst[32], sig[128];
    size_t sig_len;
    struct ca *ca;
    char **csrs;
    size_t *lens;
    struct ca_csr **parsed;
    size_t ncsr;
    long seq;
    double *lat_wall, *lat_cpu;
    size_t nlat, cap;
};

static const struct ca_identity bench_id = {"cluster.local", "default", "web", NULL, NULL};

static void w_digestsign(struct bench *b)
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    size_t sl = sizeof(b->sig);

    b->msg[0] = (unsigned char)b->seq++;
    if (!c || EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, b->key) != 1 ||
        EVP_DigestSign(c, b->sig, &sl, b->msg, sizeof(b->msg)) != 1)
        die("EVP_DigestSign");
    EVP_MD_CTX_free(c);
}

static void w_pkey_sign(struct bench *b)
{
    size_t sl = sizeof(b->sig);

    b->msg[0] = (unsigned char)b->seq++;
    SHA256(b->msg, sizeof(b->msg), b->dgst);
    if (EVP_PKEY_sign(b->sign, b->sig, &sl, b->dgst, 32) != 1)
        die("EVP_PKEY_sign");
    b->sig_len = sl;
}

static void w_verify(struct bench *b)
{
    if (EVP_PKEY_verify(b->verify, b->sig, b->sig_len, b->dgst, 32) != 1)
        die("EVP_PKEY_verify");
}

static void w_parse(struct bench *b)
{
    struct ca_csr *c = NULL;
    size_t k = (size_t)b->seq++ % b->ncsr;

    if (ca_csr_parse(b->ca, b->csrs[k], b->lens[k], &c, NULL) != 0)
        die("ca_csr_parse");
    ca_csr_free(c);
}

static void w_issue_csr(struct bench *b)
{
    struct ca_leaf leaf;

    if (ca_issue_csr(b->ca, b->parsed[(size_t)b->seq++ % b->ncsr], &bench_id, 0, &leaf) != 0)
        die("ca_issue_csr");
    ca_leaf_release(&leaf);
}

static void w_issue(struct bench *b)
{
    struct ca_leaf leaf;
    size_t k = (size_t)b->seq++ % b->ncsr;
    double w = wall_s(), c = cpu_s();

    if (ca_issue(b->ca, b->csrs[k], b->lens[k], &bench_id, 0, &leaf, NULL) != 0)
        die("ca_issue");
    if (b->nlat < b->cap) {
        b->lat_cpu[b->nlat] = cpu_s() - c;
        b->lat_wall[b->nlat++] = wall_s() - w;
    }
    ca_leaf_release(&leaf);
}

struct workload {
    const char *name;
    void (*fn)(struct bench *b);
    long ops;
    double cpu;
};

/* Run the workloads round-robin in slices of about 20 ms of CPU each, so that background
 * load on a shared machine hits all of them alike; rates are ops per CPU-second. */
static void run_interleaved(struct bench *b, struct workload *w, size_t nw)
{
    double total = 0;

    while (total < seconds * (double)nw) {
        for (size_t i = 0; i < nw; i++) {
            double t0 = cpu_s(), t;

            do {
                for (int k = 0; k < 16; k++)
                    w[i].fn(b);
                w[i].ops += 16;
                t = cpu_s() - t0;
            } while (t < 0.02);
            w[i].cpu += t;
            total += t;
        }
    }
}

static double rate(const struct workload *w)
{
    return (double)w->ops / w->cpu;
}

/* ---- per process: T threads on one struct ca ----------------------------------------------- */

struct mt {
    struct bench *b;
    double until; /* wall clock */
    long ops;
    double cpu;
    unsigned seed;
};

static void *mt_run(void *arg)
{
    struct mt *m = arg;
    double c0 = cpu_s();

    while (wall_s() < m->until) {
        for (int k = 0; k < 8; k++) {
            size_t i = (size_t)rand_r(&m->seed) % m->b->ncsr;
            struct ca_leaf leaf;

            if (ca_issue(m->b->ca, m->b->csrs[i], m->b->lens[i], &bench_id, 0, &leaf, NULL) != 0)
                die("ca_issue (threads)");
            ca_leaf_release(&leaf);
        }
        m->ops += 8;
    }
    m->cpu = cpu_s() - c0;
    OPENSSL_thread_stop();
    return NULL;
}

/* Issued per wall-clock second by nthreads threads; *cpu_rate gets issued per CPU-second. */
static double run_threads(struct bench *b, int nthreads, double *cpu_rate)
{
    pthread_t th[64];
    struct mt m[64];
    double t0 = wall_s(), cpu = 0;
    long ops = 0;

    for (int i = 0; i < nthreads; i++) {
        m[i] = (struct mt){b, t0 + seconds, 0, 0, (unsigned)i + 1};
        if (pthread_create(&th[i], NULL, mt_run, &m[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        ops += m[i].ops;
        cpu += m[i].cpu;
    }
    *cpu_rate = (double)ops / cpu;
    return (double)ops / (wall_s() - t0);
}

/* `openssl speed -seconds S ecdsap256`: signs and verifies per CPU-second. Returns 0 or -1. */
static int openssl_speed(double *sign, double *verify)
{
    char cmd[128], line[512];
    int rc = -1;
    FILE *p;

    snprintf(cmd, sizeof(cmd), "openssl speed -seconds %d ecdsap256 2>/dev/null",
             seconds < 1 ? 1 : (int)seconds);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    while (fgets(line, sizeof(line), p)) {
        const char *q = strstr(line, "(nistp256)");
        double ts, tv;

        if (q && sscanf(q + 10, " %lfs %lfs %lf %lf", &ts, &tv, sign, verify) == 4)
            rc = 0;
    }
    if (pclose(p) != 0)
        rc = -1;
    return rc;
}

int main(int argc, char **argv)
{
    struct workload w[] = {
        {"raw ECDSA P-256 sign (EVP_DigestSign, init per op)", w_digestsign, 0, 0},
        {"raw ECDSA P-256 sign (EVP_PKEY_sign, reused ctx)", w_pkey_sign, 0, 0},
        {"raw ECDSA P-256 verify (EVP_PKEY_verify, reused ctx)", w_verify, 0, 0},
        {"ca_csr_parse (PEM, DER, key checks, signature check)", w_parse, 0, 0},
        {"ca_issue_csr (build, sign, PEM; CSR already verified)", w_issue_csr, 0, 0},
        {"ca_issue (everything)", w_issue, 0, 0},
    };
    struct ca_signer *root = NULL;
    struct ca_signer_pem pem = {0};
    struct bench b;
    double r_ds, r_ps, r_issue, ceiling, sp_sign = 0, sp_verify = 0, base, mt_wall, mt_cpu;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = ncpu > 0 ? (int)ncpu : 1;
    bool speed = true;
    BIO *bio;

    memset(&b, 0, sizeof(b));
    b.ncsr = 1000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (!strcmp(argv[i], "--csrs") && i + 1 < argc)
            b.ncsr = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            nthreads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-speed"))
            speed = false;
        else {
            fprintf(stderr,
                    "usage: ca_bench [--seconds S] [--csrs N] [--threads T] [--no-speed]\n");
            return 2;
        }
    }
    if (b.ncsr == 0 || seconds <= 0 || nthreads < 1 || nthreads > 64)
        return 2;

    if (ca_signer_generate_root(time(NULL), &root) != 0 || ca_signer_pem_get(root, &pem) != 0)
        die("root generation");
    if (ca_new(root, &b.ca) != 0)
        die("ca_new");
    bio = BIO_new_mem_buf(pem.tls_key, -1);
    b.key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!b.key)
        die("reading the CA key");
    b.sign = EVP_PKEY_CTX_new_from_pkey(NULL, b.key, NULL);
    b.verify = EVP_PKEY_CTX_new_from_pkey(NULL, b.key, NULL);
    if (!b.sign || !b.verify || EVP_PKEY_sign_init(b.sign) != 1 ||
        EVP_PKEY_verify_init(b.verify) != 1)
        die("EVP_PKEY_CTX setup");
    memset(b.msg, 0x5a, sizeof(b.msg));
    w_pkey_sign(&b); /* a signature for w_verify */

    b.csrs = calloc(b.ncsr, sizeof(*b.csrs));
    b.lens = calloc(b.ncsr, sizeof(*b.lens));
    b.parsed = calloc(b.ncsr, sizeof(*b.parsed));
    b.cap = 1 << 20;
    b.lat_wall = malloc(b.cap * sizeof(double));
    b.lat_cpu = malloc(b.cap * sizeof(double));
    if (!b.csrs || !b.lens || !b.parsed || !b.lat_wall || !b.lat_cpu)
        die("allocation");
    for (size_t i = 0; i < b.ncsr; i++) {
        char *k = NULL;

        if (ca_csr_new(CA_KEY_EC_P256, &k, &b.csrs[i]) != 0)
            die("ca_csr_new");
        ca_key_pem_free(k);
        b.lens[i] = strlen(b.csrs[i]);
        if (ca_csr_parse(b.ca, b.csrs[i], b.lens[i], &b.parsed[i], NULL) != 0)
            die("ca_csr_parse");
    }
    printf("ca_bench: %.1f CPU-s per measurement, interleaved; %zu distinct P-256 CSRs; P-256 "
           "root signer; 1 thread\n",
           seconds, b.ncsr);
    run_interleaved(&b, w, ARRAY_LEN(w));
    mt_wall = run_threads(&b, nthreads, &mt_cpu);
    if (speed && openssl_speed(&sp_sign, &sp_verify) < 0) {
        fprintf(stderr, "ca_bench: openssl speed unavailable; using EVP_PKEY_sign as baseline\n");
        speed = false;
    }

    r_ds = rate(&w[0]);
    r_ps = rate(&w[1]);
    r_issue = rate(&w[5]);
    base = speed ? sp_sign : r_ps;
    ceiling = 1.0 / (1.0 + base / (speed ? sp_verify : rate(&w[2])));
    if (speed)
        printf("%-56s %8.0f /s  (verify %.0f /s)\n", "openssl speed ecdsap256 sign (the baseline)",
               sp_sign, sp_verify);
    for (size_t i = 0; i < 4; i++)
        printf("%-56s %8.0f /s  ratio %.2f\n", w[i].name, rate(&w[i]), rate(&w[i]) / base);
    for (size_t i = 4; i < 6; i++)
        printf("%-56s %8.0f /s  ratio %.2f (vs EVP_DigestSign %.2f)\n", w[i].name, rate(&w[i]),
               rate(&w[i]) / base, rate(&w[i]) / r_ds);
    printf("%-56s %8.2f     (%.0f%% of it reached)\n",
           "per-core ceiling of ca_issue (1 sign + 1 verify)", ceiling,
           100.0 * (r_issue / base) / ceiling);
    printf("ca_issue, %d threads, one struct ca (per process)         %8.0f /s  ratio %.2f "
           "(%.0f /s per CPU-second, ratio %.2f)\n",
           nthreads, mt_wall, mt_wall / base, mt_cpu, mt_cpu / base);
    qsort(b.lat_cpu, b.nlat, sizeof(double), cmp_double);
    qsort(b.lat_wall, b.nlat, sizeof(double), cmp_double);
    printf("ca_issue latency (%zu calls): CPU p50 %.1f us p99 %.1f us; wall p50 %.1f us p99 "
           "%.1f us\n",
           b.nlat, b.lat_cpu[b.nlat / 2] * 1e6, b.lat_cpu[(size_t)((double)b.nlat * 0.99)] * 1e6,
           b.lat_wall[b.nlat / 2] * 1e6, b.lat_wall[(size_t)((double)b.nlat * 0.99)] * 1e6);
    fflush(stdout);

    for (size_t i = 0; i < b.ncsr; i++) {
        free(b.csrs[i]);
        ca_csr_free(b.parsed[i]);
    }
    free(b.csrs);
    free(b.lens);
    free(b.parsed);
    free(b.lat_wall);
    free(b.lat_cpu);
    EVP_PKEY_CTX_free(b.sign);
    EVP_PKEY_CTX_free(b.verify);
    EVP_PKEY_free(b.key);
    ca_signer_pem_release(&pem);
    ca_free(b.ca);
    return 0;
}
