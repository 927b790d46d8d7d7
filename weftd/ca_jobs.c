/*
 * ca_jobs.c - keeping weftd's struct ca alive for the worker-pool jobs that issue with it.
 *
 * struct ca allows issuing from any thread, but ca_free() must not run while an issuance is in
 * flight (ca.h). Jobs (workload certificates, serving certificates) count themselves here on
 * the loop thread before they are queued and uncount when their after-work callback runs.
 * weftd_ca_jobs_stop (at weftd's stop) frees the CA at once when nothing is in flight; otherwise
 * it hands the CA to this record and the last job to finish frees both.
 */
#include <stdlib.h>

#include "weftd/weftd_int.h"

struct weftd_ca_jobs {
    struct ca *ca; /* set at stop: the CA to free after the last job */
    int jobs;      /* in flight */
    bool stopped;
};

int weftd_ca_jobs_start(struct weftd *d)
{
    d->ca_jobs = calloc(1, sizeof(*d->ca_jobs));
    return d->ca_jobs ? 0 : -ENOMEM;
}

struct ca *weftd_ca_job_begin(struct weftd *d, struct weftd_ca_jobs **hold)
{
    d->ca_jobs->jobs++;
    *hold = d->ca_jobs;
    return d->ca;
}

void weftd_ca_job_end(struct weftd_ca_jobs *h)
{
    if (--h->jobs == 0 && h->stopped) {
        ca_free(h->ca);
        free(h);
    }
}

void weftd_ca_jobs_stop(struct weftd *d)
{
    struct weftd_ca_jobs *h = d->ca_jobs;

    if (h && h->jobs) {
        h->ca = d->ca; /* workers are still issuing with it: the last one frees it */
        h->stopped = true;
    } else {
        ca_free(d->ca);
        free(h);
    }
    d->ca = NULL;
    d->ca_jobs = NULL;
}
