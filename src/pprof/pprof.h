/*
 * pprof.h: the pprof engine's public interface.
 *
 * DESIGN
 * The engine reads pprof profiles (gzip-compressed or raw protobuf, as Go's
 * runtime/pprof writes them), validates them, merges many into one running
 * aggregate and writes the aggregate back out as a gzip-compressed profile.
 * It knows nothing about sockets, libuv or files other than the descriptor it
 * is handed, so the collector, the pgof command, the embedded profiler, the
 * unit tests and the fuzzer all drive the same code.
 *
 * Threads: no function here touches global mutable state. A pprof_profile is
 * immutable once decoded and may be read from any thread. A pprof_merger is
 * not synchronised: the caller serialises every call on one merger (the
 * collector runs them on its threadpool under its own lock).
 *
 * Errors: every fallible function returns 0 or a negative PPROF_E* code and,
 * when the caller passes a pprof_error, fills it with the code and one short
 * human sentence naming what is wrong and where. Nothing here aborts on
 * hostile input; allocation sizes derived from input are checked.
 *
 * Ownership: "returns owned" means the caller frees with the matching _free
 * function; every other pointer argument is borrowed for the call only.
 */
#ifndef PPROF_H
#define PPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: 0 is success, each failure is negative. */
enum {
    PPROF_OK = 0,
    PPROF_EIO = -1,       /* reading the descriptor failed */
    PPROF_EGZIP = -2,     /* gzip stream corrupt or truncated */
    PPROF_ETOOBIG = -3,   /* inflated size passed the configured cap */
    PPROF_EPROTO = -4,    /* protobuf wire format is malformed */
    PPROF_EINVALID = -5,  /* well-formed protobuf, but not a valid profile */
    PPROF_ENOTCPU = -6,   /* a valid profile, but not a Go CPU profile */
    PPROF_EINCOMPAT = -7, /* profiles cannot be merged with each other */
    PPROF_ENOMEM = -8,    /* allocation failed */
    PPROF_ELIMIT = -9,    /* a table grew past its configured limit */
    PPROF_EEMPTY = -10,   /* the input holds no bytes at all */
    PPROF_EWRITE = -11,   /* the output sink reported failure */
};

/* Room for one human sentence; longer messages are truncated. */
#define PPROF_ERRMSG_MAX 256

typedef struct pprof_error {
    int code;
    char msg[PPROF_ERRMSG_MAX];
} pprof_error;

/* A short, constant name for an error code ("gzip", "too big", ...). */
const char *pprof_strerror(int code);

/* Default cap on the inflated (raw protobuf) size of one profile. */
#define PPROF_DEFAULT_MAX_INFLATED ((uint64_t)256 << 20)

/* Default cap on the memory one decoded profile's tables may use. */
#define PPROF_DEFAULT_MAX_MEMORY ((uint64_t)1 << 30)

typedef struct pprof_limits {
    /* Largest inflated protobuf accepted, in bytes; 0 means the default. */
    uint64_t max_inflated;
    /*
     * Largest memory, in bytes, the decoded tables of one profile may take
     * (added after the first version; 0 means the default). A protobuf of
     * empty samples costs 2 bytes per sample on the wire but tens in memory,
     * so max_inflated alone does not bound memory; past this cap decoding
     * fails with PPROF_ELIMIT.
     */
    uint64_t max_memory;
} pprof_limits;

/* ---- decoding and validation ---------------------------------------- */

typedef struct pprof_profile pprof_profile;

/*
 * Decodes and structurally validates one profile from memory. gzip is
 * detected by its magic bytes; anything else is taken as raw protobuf.
 * lim may be NULL for the defaults. On success *out is owned by the caller.
 */
int pprof_decode_mem(const void *data, size_t len, const pprof_limits *lim,
                     pprof_profile **out, pprof_error *err);

/*
 * The same, reading the descriptor from its current offset to end of file in
 * bounded chunks (never a second copy of the whole input). Safe to call off
 * the loop thread; the descriptor is borrowed, not closed.
 */
int pprof_decode_fd(int fd, const pprof_limits *lim, pprof_profile **out,
                    pprof_error *err);

/*
 * pprof_decode_fd, building the profile in the memory of spare, a profile no
 * longer needed (or NULL). spare is consumed whatever the result. A caller
 * that decodes profile after profile and hands each back once it is merged
 * stops growing tables after the first few: about a tenth less CPU per
 * decode (docs/performance.md). The limits apply exactly as to a fresh
 * decode. Memory held is at most the budget plus spare's memory while
 * decoding, and at most four times a fresh decode's tables after it.
 */
int pprof_decode_fd_reuse(int fd, const pprof_limits *lim, pprof_profile *spare,
                          pprof_profile **out, pprof_error *err);

/* pprof_decode_mem in the memory of spare, as pprof_decode_fd_reuse. */
int pprof_decode_mem_reuse(const void *data, size_t len, const pprof_limits *lim,
                           pprof_profile *spare, pprof_profile **out, pprof_error *err);

/* Bytes p's tables hold allocated (for a caller deciding what to keep). */
size_t pprof_profile_memory(const pprof_profile *p);

/*
 * The CPU-profile rule of the collector this project reimplements: period
 * type cpu/nanoseconds, and exactly two sample types, samples/count then
 * cpu/nanoseconds. Returns 0 or PPROF_ENOTCPU with the reason.
 */
int pprof_check_cpu(const pprof_profile *p, pprof_error *err);

void pprof_profile_free(pprof_profile *p);

/* ---- merging ---------------------------------------------------------- */

/*
 * A running aggregate: profiles are added one at a time and the sum can be
 * encoded at any moment. Semantics follow google/pprof's profile.Merge; see
 * docs/pprof.md for the corners where we differ. Memory grows with the
 * number of distinct stacks, functions, locations and strings, never with
 * the number of profiles added.
 */
typedef struct pprof_merger pprof_merger;

/* Returns owned, or NULL when out of memory. */
pprof_merger *pprof_merger_new(void);
void pprof_merger_free(pprof_merger *m);

/*
 * Adds p into m. The first profile fixes the sample types and period type;
 * a later profile that differs is refused with PPROF_EINCOMPAT and m is left
 * exactly as it was.
 */
int pprof_merger_add(pprof_merger *m, const pprof_profile *p,
                     pprof_error *err);

/* How many profiles were added, and how many distinct samples m holds. */
uint64_t pprof_merger_profiles(const pprof_merger *m);
uint64_t pprof_merger_samples(const pprof_merger *m);

/*
 * Output sink: called with successive chunks of the encoded profile; returns
 * 0 to go on or non-zero to stop (the encoder then fails with PPROF_EWRITE).
 */
typedef int (*pprof_write_cb)(void *ctx, const void *data, size_t len);

/*
 * Encodes the aggregate as a gzip-compressed pprof profile with compact,
 * deduplicated tables. Fails with PPROF_EEMPTY if nothing was added.
 */
int pprof_merger_write(const pprof_merger *m, pprof_write_cb cb, void *ctx,
                       pprof_error *err);

/* Convenience: encode into a malloc'd buffer the caller frees (returns owned). */
int pprof_merger_encode(const pprof_merger *m, uint8_t **out, size_t *out_len,
                        pprof_error *err);

/*
 * An encoder that remembers the pieces of its last output, for a caller that
 * encodes a changing aggregate again and again: pieces whose protobuf bytes
 * did not change are not deflated again. The output is byte for byte what
 * pprof_merger_write gives for the same aggregate, whatever the encoder
 * remembers (from this aggregate or any other). It holds about the size of
 * the merged profile, raw and deflated. One caller at a time.
 */
typedef struct pprof_encoder pprof_encoder;

typedef struct pprof_encoder_stats { /* of the last encode */
    uint64_t pieces, pieces_reused;  /* pieces written; of those, not deflated again */
    uint64_t bytes, bytes_reused;    /* the same in protobuf bytes */
} pprof_encoder_stats;

/* Returns owned, or NULL when out of memory. */
pprof_encoder *pprof_encoder_new(void);
void pprof_encoder_free(pprof_encoder *x);
int pprof_encoder_write(pprof_encoder *x, const pprof_merger *m, pprof_write_cb cb,
                        void *ctx, pprof_error *err);
int pprof_encoder_encode(pprof_encoder *x, const pprof_merger *m, uint8_t **out,
                         size_t *out_len, pprof_error *err);
void pprof_encoder_get_stats(const pprof_encoder *x, pprof_encoder_stats *out);

/* ---- derived merges (src/pprof/shape.c, src/pprof/weight.c) ----------- */

/* pprof_merger_reshape flags. */
#define PPROF_RESHAPE_STRIP_LABELS 1u /* drop sample labels, merge their samples */
#define PPROF_RESHAPE_PGO 2u          /* what Go's PGO reads (implies no labels) */

/*
 * Builds a new aggregate from m (read only): PPROF_RESHAPE_STRIP_LABELS is
 * the merge the same inputs would give without labels; PPROF_RESHAPE_PGO is
 * the smallest CPU profile that gives Go's compiler (1.21 and later) the
 * same weighted call graph as m (docs/pprof.md, "shape=pgo"). On success *out
 * is owned by the caller (pprof_merger_free). Fails with PPROF_EEMPTY when
 * nothing was added to m, PPROF_ENOMEM or PPROF_ELIMIT.
 */
int pprof_merger_reshape(const pprof_merger *m, unsigned flags, pprof_merger **out,
                         pprof_error *err);

/*
 * The sample type weight=equal balances: the first samples/count or
 * cpu/nanoseconds type (the value Go's PGO reads), else the last type.
 */
size_t pprof_weight_index(const pprof_profile *p);

/* The total of that value over p's samples. PPROF_EINVALID when a value is
 * negative or the total passes 2^63. */
int pprof_profile_total(const pprof_profile *p, int64_t *total, pprof_error *err);

/*
 * Scales p's values in place so that its weight total becomes exactly
 * target, every other type's total its proportional share (largest
 * remainder rounding, documented in docs/pprof.md). A profile whose total is
 * 0 is left unchanged. PPROF_EINVALID for negative values or overflow,
 * PPROF_ENOMEM.
 */
int pprof_profile_scale(pprof_profile *p, int64_t target, pprof_error *err);

/* ---- summary (src/pprof/summary.c, for `pgof inspect`) ---------------- */

/* One function name and its cost in the summary's chosen value. */
typedef struct pprof_summary_func {
    char *name;    /* owned by the summary */
    int64_t flat;  /* value of samples whose leaf frame is this function */
    int64_t cum;   /* value of samples with this function anywhere on the
                      stack, counted once per sample */
} pprof_summary_func;

typedef struct pprof_summary_type {
    char *type, *unit; /* owned by the summary */
} pprof_summary_type;

/*
 * What `pgof inspect` prints. Every string is owned by the summary, so it
 * outlives the profile. Flat and cum follow `go tool pprof -top` at function
 * granularity: frames grouped by function name, inlined frames as their own
 * functions, recursion counted once per sample; locations without lines are
 * grouped as "(unknown)".
 */
typedef struct pprof_summary {
    size_t ntypes;
    pprof_summary_type *types;  /* the sample types, in order */
    int64_t *totals;            /* per sample type: the sum over all samples */
    size_t value_index;         /* the type flat/cum use: default_sample_type,
                                   else the last (pprof's rule) */
    char *period_type, *period_unit; /* "" when the profile has none */
    int64_t period, time_nanos, duration_nanos;
    uint64_t samples;           /* sample records */
    uint64_t stacks;            /* distinct location sequences */
    uint64_t locations, functions, mappings, strings; /* table sizes */
    uint64_t inflated;          /* bytes of raw protobuf decoded */
    size_t nfuncs;
    pprof_summary_func *funcs;  /* every name with a non-zero cost, by flat
                                   descending, then cum, then name */
} pprof_summary;

/* Summarises p. On success *out is owned by the caller (pprof_summary_free).
 * Fails only with PPROF_ENOMEM (or PPROF_EINVALID for an unvalidated p). */
int pprof_summarize(const pprof_profile *p, pprof_summary **out,
                    pprof_error *err);
void pprof_summary_free(pprof_summary *s);

/* ---- builder (src/pprof/builder.c, for the embedded profiler) -------- */

/*
 * Builds a CPU profile (period type cpu/nanoseconds; sample types
 * samples/count and cpu/nanoseconds) table by table. Ids are handed out
 * 1..n in the order things are added. pprof_builder_finish validates the
 * result with exactly the rules a decoded profile meets and returns an
 * ordinary pprof_profile, to be checked, merged (deduplicated) and encoded
 * with the functions above. The builder does not deduplicate functions or
 * locations itself; send the profile through a merger for compact output.
 * After any failure every later call on the builder fails the same way.
 */
typedef struct pprof_builder pprof_builder;

/* One frame of a location: the innermost (inlined) frame comes first, as in
 * pprof. Strings are copied; NULL means "". A NULL system_name repeats
 * function. */
typedef struct pprof_builder_line {
    const char *function, *system_name, *file;
    int64_t start_line, line;
} pprof_builder_line;

/* Returns owned (pprof_builder_free), or NULL when out of memory. */
pprof_builder *pprof_builder_new_cpu(int64_t period_ns, int64_t time_nanos,
                                     int64_t duration_nanos);
void pprof_builder_free(pprof_builder *b);

/* Adds a mapping [start, limit) of file at offset; *id receives its id. */
int pprof_builder_add_mapping(pprof_builder *b, uint64_t start, uint64_t limit,
                              uint64_t offset, const char *file,
                              const char *build_id, uint64_t *id,
                              pprof_error *err);

/* Adds a location at address in mapping mapping_id (0 = none) with nlines
 * frames (0 = unsymbolized); *id receives its id. A mapping gets
 * has_functions once one of its locations has a frame. */
int pprof_builder_add_location(pprof_builder *b, uint64_t mapping_id,
                               uint64_t address,
                               const pprof_builder_line *lines, size_t nlines,
                               uint64_t *id, pprof_error *err);

/* Adds a sample: location ids leaf first, and its two values. */
int pprof_builder_add_sample(pprof_builder *b, const uint64_t *loc_ids,
                             size_t nloc, int64_t count, int64_t cpu_ns,
                             pprof_error *err);

/* Adds a free-text comment (pprof shows them with -comments). */
int pprof_builder_add_comment(pprof_builder *b, const char *comment,
                              pprof_error *err);

/* Validates and hands out the profile (*out owned by the caller); the
 * builder is then spent and only pprof_builder_free may follow. */
int pprof_builder_finish(pprof_builder *b, pprof_profile **out,
                         pprof_error *err);

#ifdef __cplusplus
}
#endif

#endif /* PPROF_H */
