/*
 * metrics.c - weftd's Prometheus histograms: observing durations, and printing them for
 * /metrics (admin.c renders the rest).
 */
#include <stdio.h>

#include "core/buf.h"
#include "weftd/weftd_int.h"

static const double bounds[WEFTD_HIST_BOUNDS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};

void weftd_hist_observe(struct weftd_hist *h, double seconds)
{
    size_t i = 0;
    while (i < WEFTD_HIST_BOUNDS && seconds > bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += seconds;
}

int weftd_hist_print(struct buf *b, const char *name, const char *help, const struct weftd_hist *h)
{
    uint64_t cum = 0;
    int rc = buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

    for (size_t i = 0; i < WEFTD_HIST_BOUNDS && !rc; i++) {
        cum += h->counts[i];
        rc = buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    if (!rc)
        rc = buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9f\n%s_count %llu\n", name,
                        (unsigned long long)h->count, name, h->sum, name,
                        (unsigned long long)h->count);
    return rc;
}
