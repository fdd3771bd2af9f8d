/*
 * mergeopts.h: the merge options that the collector's POST /v1/merge, `pgof
 * fetch` and `pgof merge` share: strip_labels, shape, weight and since, and
 * how they combine with and_combine.
 *
 * DESIGN
 * One parser and one set of rules for every front end, so a value the
 * collector refuses is refused by pgof before any request is made, with the
 * same sentence. Nothing here knows HTTP or getopt: the collector feeds it
 * decoded query pairs, pgof its flags. mergeopts_merge (mergepipe.c) runs a
 * filtered or weighted merge of a list of files with the pprof engine; it is
 * what the collector's worker and `pgof merge` execute.
 *
 * Errors: 0 or a negative MERGEOPTS_E* code, with one sentence in the
 * caller's buffer. Threads: no shared state; any thread.
 */
#ifndef COMMON_MERGEOPTS_H
#define COMMON_MERGEOPTS_H

#include <stddef.h>
#include <stdint.h>

#include "pprof/pprof.h"

enum {
    MERGEOPTS_EINVAL = -1, /* an unknown or malformed value */
    MERGEOPTS_ECOMBINE = -2, /* refused in combination with and_combine */
};

enum { MERGEOPTS_SHAPE_FULL = 0, MERGEOPTS_SHAPE_PGO = 1 };
enum { MERGEOPTS_WEIGHT_NONE = 0, MERGEOPTS_WEIGHT_EQUAL = 1 };

#define MERGEOPTS_ERR_MAX 256

typedef struct mergeopts {
    int combine;       /* and_combine=true */
    int strip_labels;  /* strip_labels=true */
    int shape;         /* MERGEOPTS_SHAPE_* */
    int weight;        /* MERGEOPTS_WEIGHT_* */
    uint64_t since_ms; /* since=DURATION; 0 = every profile */
} mergeopts;

/* All defaults: a plain merge of everything. */
void mergeopts_init(mergeopts *o);

/*
 * Parses a duration: one or more <digits><unit> groups, units s, m, h, d
 * (24 h) and w (7 d), e.g. "90m", "36h", "7d", "1d12h". Writes milliseconds.
 * Returns 0, or MERGEOPTS_EINVAL for anything else, zero, or more than 100
 * years. s need not be NUL-terminated (len bytes).
 */
int mergeopts_parse_duration(const char *s, size_t len, uint64_t *ms);

/* Writes ms in the largest exact unit of d, h, m, s ("7d", "36h", "90m"). */
void mergeopts_format_duration(uint64_t ms, char *out, size_t outsz);

/*
 * Applies one option: key is strip_labels, shape, weight or since (and
 * and_combine, which follows the Go collector: exactly "true" combines,
 * any other value does not). Returns 1 when key was applied, 0 when key is
 * not one of these (callers ignore unknown keys, as the Go collector does),
 * or MERGEOPTS_EINVAL with the reason in why.
 */
int mergeopts_set(mergeopts *o, const char *key, const char *val, size_t vlen, char *why,
                  size_t whylen);

/*
 * The and_combine rule (docs/api.md): a combine stores its answer in place
 * of the stored profiles, so it is refused with any option that would make
 * that answer less than the full merge of everything. Returns 0 or
 * MERGEOPTS_ECOMBINE with a one-line reason.
 */
int mergeopts_check(const mergeopts *o, char *why, size_t whylen);

/* Whether the answer is the plain merge of everything (the running
 * aggregate's), possibly reshaped: no since and no weight. */
int mergeopts_needs_files(const mergeopts *o);

/* Whether any option differs from the defaults (and_combine aside). */
int mergeopts_any(const mergeopts *o);

/*
 * Writes the options that differ from the defaults as a query string
 * without the leading '?' ("strip_labels=true&shape=pgo"), and_combine
 * first; "" when none. Also the canonical key of a query for caches.
 */
void mergeopts_query(const mergeopts *o, char *out, size_t outsz);

/*
 * The stored time of a profile file, in unix milliseconds: from its name
 * when it is one the collector writes ("<unix ms>_<counter>.pgo",
 * "merged_<unix ms>_<counter>.pgo"), else from the file's modification
 * time. name is the file's name in dir (dir may be NULL: name is a path).
 * Returns 0 or a negative errno when the file cannot be stat'ed.
 */
int mergeopts_file_time_ms(const char *dir, const char *name, uint64_t *ms);

/* The time from a collector file name only; 0 when name has none. */
int mergeopts_name_time_ms(const char *name, uint64_t *ms);

/* ---- mergepipe.c: running a merge with options ------------------------ */

/*
 * An optional cache of per-file weight totals (pprof_profile_total) that a
 * caller keeps between merges: a stored file never changes under one name,
 * so a total once read stays true. Looks name up; returns 1 and *total when known. */
typedef int (*mergeopts_totals_get)(void *ctx, const char *name, int64_t *total);
/* Records name's total. */
typedef void (*mergeopts_totals_put)(void *ctx, const char *name, int64_t total);

typedef struct mergeopts_input {
    const char *dir;        /* the files' directory, or NULL (paths) */
    const char *const *names; /* n file names (or paths) */
    size_t n;
    const pprof_limits *lim; /* NULL: the engine's defaults */
    int cpu_only;            /* apply pprof_check_cpu to each input */
    mergeopts_totals_get get; /* optional totals cache */
    mergeopts_totals_put put;
    void *cache_ctx;
} mergeopts_input;

/*
 * Off the loop thread (blocking file reads): merges in->names that pass
 * o->since_ms (now_ms is "now"), weighted and reshaped as o says; the
 * result *out is owned by the caller (NULL when no file was selected: then
 * the return is 0 and *selected 0). *selected is the number of files
 * merged. On a file's failure returns its engine error code with "NAME:
 * reason" in why, and *bad is the index of that file.
 */
int mergeopts_merge(const mergeopts *o, const mergeopts_input *in, uint64_t now_ms,
                    pprof_merger **out, size_t *selected, size_t *bad, char *why,
                    size_t whylen);

/*
 * Blocking: decodes fd into *p, in spare's memory (may be NULL; consumed
 * whatever the result, see pprof_decode_fd_reuse), then applies
 * pprof_check_cpu when cpu_only. On failure *p is NULL.
 */
int mergeopts_decode_fd(int fd, const pprof_limits *lim, int cpu_only, pprof_profile *spare,
                        pprof_profile **p, pprof_error *perr);

/* mergeopts_decode_fd of len bytes in memory. */
int mergeopts_decode_mem(const void *data, size_t len, const pprof_limits *lim, int cpu_only,
                         pprof_profile *spare, pprof_profile **p, pprof_error *perr);

/*
 * mergeopts_decode_fd of dir/name (or of the path name when dir is NULL). A
 * file that cannot be opened is PPROF_EIO ("cannot open: ...").
 */
int mergeopts_decode_file(const char *dir, const char *name, const pprof_limits *lim,
                          int cpu_only, pprof_profile *spare, pprof_profile **p,
                          pprof_error *perr);

/* Applies o's shape and strip_labels to m: returns m itself (nothing to
 * do) or a new merger, freeing m. On failure m is freed too. */
int mergeopts_reshape(const mergeopts *o, pprof_merger *m, pprof_merger **out,
                      pprof_error *err);

#endif /* COMMON_MERGEOPTS_H */
