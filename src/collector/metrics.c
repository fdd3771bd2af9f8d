/*
 * metrics.c: counters and the /metrics text (see metrics.h).
 *
 * Loop thread only.
 */
#include "collector/metrics.h"

#include "collector/util.h"
#include "pprof/pprof.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

metrics g_metrics;

static const int statuses[] = {200, 204, 400, 401, 403, 404, 405, 408, 413,
                               414, 415, 417, 431, 500, 503, 505, 507};
#define STATUS_500_SLOT 13
static const char *const endpoints[EP__COUNT] = {"healthz", "submit", "merge", "metrics",
                                                  "other"};

void metrics_count_request(int endpoint, int status) {
    if (endpoint < 0 || endpoint >= EP__COUNT)
        endpoint = EP_OTHER;
    for (size_t i = 0; i < ARRAY_SIZE(statuses); i++) {
        if (statuses[i] == status) {
            g_metrics.requests[endpoint][i]++;
            return;
        }
    }
    /* A status we do not track would be our bug; count it as 500. */
    g_metrics.requests[endpoint][STATUS_500_SLOT]++;
}

void metrics_count_reject(int reason) {
    if (reason < 0 || reason >= REJECT__COUNT)
        reason = REJECT_STORAGE;
    g_metrics.profiles_rejected[reason]++;
}

typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

static void __attribute__((format(printf, 2, 3))) sb_printf(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap = b->cap * 2 + (n > 0 ? (size_t)n : 0);
        b->p = xrealloc(b->p, b->cap);
    }
}

static const char *reject_name(int r, char *buf, size_t n) {
    if (r == REJECT_BODY_TOO_LARGE)
        return "body_too_large";
    if (r == REJECT_STORAGE)
        return "storage";
    const char *s = pprof_strerror(-(r - REJECT_ENGINE_BASE));
    size_t i;
    /* Label values: the engine's short names with spaces as underscores. */
    for (i = 0; s[i] != '\0' && i + 1 < n; i++)
        buf[i] = (s[i] == ' ' || s[i] == '-') ? '_' : (char)tolower((unsigned char)s[i]);
    buf[i] = '\0';
    return buf;
}

void metrics_count_stages(const double start[STAGE__COUNT], double now) {
    for (int i = 0; i < STAGE__COUNT; i++) {
        double end = i + 1 < STAGE__COUNT ? start[i + 1] : now;
        /* Stamps from different threads of one monotonic clock: never
         * negative, but a zero-length stage must not count below 0. */
        g_metrics.stage_seconds[i] += end > start[i] ? end - start[i] : 0;
    }
    g_metrics.stage_count++;
}

void metrics_render(char **out, size_t *len) {
    sbuf b = {xmalloc(4096), 0, 4096};
    const metrics *m = &g_metrics;
    sb_printf(&b, "# HELP pgof_http_requests_total HTTP requests answered, by endpoint and status.\n"
                  "# TYPE pgof_http_requests_total counter\n");
    for (int e = 0; e < EP__COUNT; e++)
        for (size_t s = 0; s < ARRAY_SIZE(statuses); s++)
            if (m->requests[e][s] != 0)
                sb_printf(&b, "pgof_http_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                          endpoints[e], statuses[s], (unsigned long long)m->requests[e][s]);
    sb_printf(&b, "# HELP pgof_profiles_accepted_total Profiles stored (answered 204).\n"
                  "# TYPE pgof_profiles_accepted_total counter\n"
                  "pgof_profiles_accepted_total %llu\n",
              (unsigned long long)m->profiles_accepted);
    sb_printf(&b, "# HELP pgof_profiles_rejected_total Submitted profiles refused, by reason.\n"
                  "# TYPE pgof_profiles_rejected_total counter\n");
    for (int r = 0; r < REJECT__COUNT; r++) {
        char nb[64];
        if (m->profiles_rejected[r] != 0)
            sb_printf(&b, "pgof_profiles_rejected_total{reason=\"%s\"} %llu\n",
                      reject_name(r, nb, sizeof nb), (unsigned long long)m->profiles_rejected[r]);
    }
    sb_printf(&b,
              "# HELP pgof_received_bytes_total Request body bytes received.\n"
              "# TYPE pgof_received_bytes_total counter\n"
              "pgof_received_bytes_total %llu\n"
              "# HELP pgof_stored_profiles Profile files in the data directory.\n"
              "# TYPE pgof_stored_profiles gauge\n"
              "pgof_stored_profiles %llu\n"
              "# HELP pgof_stored_bytes Bytes of profile files in the data directory.\n"
              "# TYPE pgof_stored_bytes gauge\n"
              "pgof_stored_bytes %llu\n"
              "# HELP pgof_merges_total Merge requests answered with a profile.\n"
              "# TYPE pgof_merges_total counter\n"
              "pgof_merges_total %llu\n"
              "# HELP pgof_merge_errors_total Merge requests that failed.\n"
              "# TYPE pgof_merge_errors_total counter\n"
              "pgof_merge_errors_total %llu\n"
              "# HELP pgof_merge_duration_seconds Time spent producing merged profiles.\n"
              "# TYPE pgof_merge_duration_seconds summary\n"
              "pgof_merge_duration_seconds_sum %.6f\n"
              "pgof_merge_duration_seconds_count %llu\n"
              "# HELP pgof_combines_total Combines that replaced stored files by one.\n"
              "# TYPE pgof_combines_total counter\n"
              "pgof_combines_total %llu\n"
              "# HELP pgof_connections Open client connections.\n"
              "# TYPE pgof_connections gauge\n"
              "pgof_connections %llu\n"
              "# HELP pgof_connections_total Client connections accepted.\n"
              "# TYPE pgof_connections_total counter\n"
              "pgof_connections_total %llu\n"
              "# HELP pgof_connections_refused_total Connections refused (too many open).\n"
              "# TYPE pgof_connections_refused_total counter\n"
              "pgof_connections_refused_total %llu\n"
              "# HELP pgof_timeouts_total Connections cut off by a timeout.\n"
              "# TYPE pgof_timeouts_total counter\n"
              "pgof_timeouts_total %llu\n"
              "# HELP pgof_quarantined_total Stored files moved to quarantine.\n"
              "# TYPE pgof_quarantined_total counter\n"
              "pgof_quarantined_total %llu\n"
              "# HELP pgof_key_reloads_total Key reloads (SIGHUP), by result.\n"
              "# TYPE pgof_key_reloads_total counter\n"
              "pgof_key_reloads_total{result=\"ok\"} %llu\n"
              "pgof_key_reloads_total{result=\"error\"} %llu\n"
              "# HELP pgof_store_ready 1 once the stored profiles are loaded.\n"
              "# TYPE pgof_store_ready gauge\n"
              "pgof_store_ready %d\n",
              (unsigned long long)m->bytes_received, (unsigned long long)m->stored_profiles,
              (unsigned long long)m->stored_bytes, (unsigned long long)m->merges,
              (unsigned long long)m->merge_errors, m->merge_seconds_sum,
              (unsigned long long)m->merges, (unsigned long long)m->combines,
              (unsigned long long)m->connections, (unsigned long long)m->connections_total,
              (unsigned long long)m->connections_refused, (unsigned long long)m->timeouts,
              (unsigned long long)m->quarantined, (unsigned long long)m->key_reloads,
              (unsigned long long)m->key_reload_errors, m->store_ready);
    static const char *const stages[STAGE__COUNT] = {"queue",  "validate", "commit_wait",
                                                     "commit", "reply"};
    sb_printf(&b, "# HELP pgof_submit_stage_seconds Time accepted submissions spent in each "
                  "stage, from the body's last byte to the answer.\n"
                  "# TYPE pgof_submit_stage_seconds summary\n");
    for (int i = 0; i < STAGE__COUNT; i++)
        sb_printf(&b,
                  "pgof_submit_stage_seconds_sum{stage=\"%s\"} %.6f\n"
                  "pgof_submit_stage_seconds_count{stage=\"%s\"} %llu\n",
                  stages[i], m->stage_seconds[i], stages[i], (unsigned long long)m->stage_count);
    *out = b.p;
    *len = b.len;
}
