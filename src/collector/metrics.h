/*
 * metrics.h: the collector's counters and their Prometheus text rendering.
 *
 * DESIGN
 * One global struct of plain counters, written and read only on the loop
 * thread (workers report through their jobs, and after_work_cb counts), so
 * no atomics are needed. metrics_render() writes the text exposition format
 * (version 0.0.4) into a growing buffer.
 */
#ifndef COLLECTOR_METRICS_H
#define COLLECTOR_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum {
    EP_HEALTHZ,
    EP_SUBMIT,
    EP_MERGE,
    EP_METRICS,
    EP_OTHER,
    EP__COUNT
};

/* Why a submitted profile was refused (besides the engine's error codes). */
enum {
    REJECT_BODY_TOO_LARGE = 0,
    REJECT_STORAGE,
    REJECT_ENGINE_BASE, /* + (-PPROF_E*) */
    REJECT__COUNT = REJECT_ENGINE_BASE + 12
};

/* The stages of an accepted submission, in order (pgof_submit_stage_seconds). */
enum {
    STAGE_QUEUE,       /* waiting for a pool thread */
    STAGE_VALIDATE,    /* the submit job: write, decode, check, fsync */
    STAGE_COMMIT_WAIT, /* waiting for the group commit */
    STAGE_COMMIT,      /* the group commit: add, rename, directory fsync */
    STAGE_REPLY,       /* back on the loop, until the answer is queued */
    STAGE__COUNT
};

typedef struct metrics {
    uint64_t requests[EP__COUNT][20]; /* by endpoint and status slot */
    uint64_t profiles_accepted;
    uint64_t profiles_rejected[REJECT__COUNT];
    uint64_t bytes_received;
    uint64_t stored_profiles;
    uint64_t stored_bytes;
    uint64_t merges;
    uint64_t merge_errors;
    double merge_seconds_sum;
    uint64_t combines;
    uint64_t connections;      /* open now */
    uint64_t connections_total;
    uint64_t connections_refused;
    uint64_t timeouts;
    uint64_t quarantined;
    uint64_t key_reloads;
    uint64_t key_reload_errors;
    double stage_seconds[STAGE__COUNT];
    uint64_t stage_count;
    int store_ready;
} metrics;

extern metrics g_metrics;

/* Counts one answered request. */
void metrics_count_request(int endpoint, int status);

/* Adds an accepted submission's stage times: start[i] is when stage i
 * began, now when the last one ended. */
void metrics_count_stages(const double start[STAGE__COUNT], double now);

/* Counts one refused profile; reason is REJECT_* or REJECT_ENGINE_BASE - code. */
void metrics_count_reject(int reason);

/* Renders everything; returns owned text in *out, its length in *len. */
void metrics_render(char **out, size_t *len);

#endif /* COLLECTOR_METRICS_H */
