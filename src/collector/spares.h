/*
 * spares.h: decoded profiles kept for their memory.
 *
 * DESIGN
 * A submission is decoded on one pool thread and merged on another, the
 * commit's. pprof_decode_fd_reuse builds a profile in the memory of one no
 * longer needed, skipping the growth of its tables (a tenth of a decode's
 * CPU); this small stack carries merged profiles back to the next decode,
 * on whatever thread that runs. It is bounded in count and in the memory
 * each kept profile may hold, so a rare large profile is not kept.
 *
 * Threads: every function but spares_new and spares_free from any thread
 * (one mutex, held for a push or a pop).
 */
#ifndef COLLECTOR_SPARES_H
#define COLLECTOR_SPARES_H

#include <stddef.h>

#include "pprof/pprof.h"

typedef struct spares spares;

/* At most max_count profiles, each holding at most max_bytes. */
spares *spares_new(size_t max_count, size_t max_bytes);

/* A kept profile for pprof_decode_fd_reuse, or NULL when none is. */
pprof_profile *spares_take(spares *s);

/* Keeps p, or frees it when full or p holds too much (p may be NULL). */
void spares_give(spares *s, pprof_profile *p);

/* Frees s and every profile kept. */
void spares_free(spares *s);

#endif
