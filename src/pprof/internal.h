/*
 * internal.h: what the pprof engine's files share and nothing outside
 * src/pprof (and its unit tests) may use.
 *
 * DESIGN
 * A decoded profile is a handful of flat tables, one growable array per
 * protobuf repeated field, with variable-length parts (a sample's location
 * ids, values and labels, a location's lines, the strings' bytes) appended to
 * shared "pool" arrays and referenced by (offset, count). That keeps the
 * number of allocations independent of the number of samples and makes the
 * memory of a profile proportional to its tables.
 *
 * Every array grows through pprof__vec_grow, which charges the bytes to a
 * pprof__budget; the decoder's budget is its hard memory limit, so hostile
 * input cannot make us allocate without bound. All heap memory of the engine
 * goes through pprof__malloc/realloc/free, which the unit tests can point at
 * a failing allocator (pprof__set_allocator) to walk the error paths.
 *
 * After pprof__validate succeeds the id references inside a profile are
 * replaced by table indices ("resolved"): a sample's location entries hold
 * location indices, a location's mapping field holds a mapping index or
 * PPROF__NONE, a line's function field holds a function index. The merger,
 * encoder and accessors rely on that and never look ids up again.
 */
#ifndef PPROF_INTERNAL_H
#define PPROF_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pprof/pprof.h"

#define PPROF__NONE UINT32_MAX

#if defined(__GNUC__)
#define PPROF__WUR __attribute__((warn_unused_result))
#define PPROF__PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define PPROF__WUR
#define PPROF__PRINTF(a, b)
#endif

/* ---- allocation --------------------------------------------------------- */

/* The allocator seam: NULL functions restore the C library's. Test-only; not
 * thread-safe, set it before any engine call runs. */
typedef struct pprof__allocator {
    void *(*malloc_fn)(size_t);
    void *(*realloc_fn)(void *, size_t);
    void (*free_fn)(void *);
} pprof__allocator;
void pprof__set_allocator(const pprof__allocator *a);

void *pprof__malloc(size_t n) PPROF__WUR;
void *pprof__calloc(size_t n, size_t size) PPROF__WUR;
void *pprof__realloc(void *p, size_t n) PPROF__WUR;
void pprof__free(void *p);

/* zlib's zalloc/zfree through the seam (opaque unused). */
void *pprof__zalloc(void *opaque, unsigned items, unsigned size);
void pprof__zfree(void *opaque, void *p);

/* Test seam: true sends every gzip input through zlib's streaming path,
 * never the one-shot libdeflate path (decode.c). Set before decoding. */
extern bool pprof__oneshot_off;
/* How many inputs the one-shot path decoded (atomic; for tests). */
extern unsigned long pprof__oneshot_used;
/* The size a whole gzip input of len bytes says it inflates to, when the
 * one-shot path may take it (at most 4 MiB in and out, no header CRC);
 * else 0. decode.c's rule, shared with pprof-dump's inflate floor. */
uint32_t pprof__oneshot_isize(const uint8_t *in, size_t len);

/* Bytes charged so far against a limit (limit 0 = unlimited). */
typedef struct pprof__budget {
    uint64_t used;
    uint64_t limit;
} pprof__budget;

/* Whether n more bytes stay within the budget (NULL or limit 0: always). */
static inline bool pprof__budget_fits(const pprof__budget *b, uint64_t n)
{
    return !b || !b->limit || (b->used <= b->limit && n <= b->limit - b->used);
}

/*
 * A growable array of fixed-size elements. cap is what the budget has been
 * charged for; room is what is allocated, the same except after
 * pprof__vec_clear, which keeps the memory but forgets the charge. Growth
 * and its charges then follow cap exactly as for a fresh array, so whether
 * an input fits its budget never depends on what the memory held before.
 */
typedef struct pprof__vec {
    void *p;
    size_t n;    /* elements in use */
    size_t cap;  /* elements charged to the budget; n <= cap <= room */
    size_t room; /* elements allocated */
} pprof__vec;

/*
 * Makes room for `more` further elements of `size` bytes. Returns 0,
 * PPROF_ENOMEM, or PPROF_ELIMIT when the budget would be passed (nothing is
 * changed on failure). Growth is geometric so appends are amortised O(1).
 */
int pprof__vec_grow(pprof__vec *v, size_t size, size_t more,
                    pprof__budget *b) PPROF__WUR;
void pprof__vec_free(pprof__vec *v);
/* Empties v for reuse: its memory stays allocated, its charge is dropped. */
void pprof__vec_clear(pprof__vec *v);

#define PPROF__AT(vec, type, i) (((type *)(vec).p)[i])

/* A pointer to element off of vec, NULL-safe: an empty vec may have no
 * storage, and NULL + 0 is undefined behaviour in C. */
static inline void *pprof__slice(const pprof__vec *v, size_t size, size_t off)
{
    return v->p ? (char *)v->p + size * off : NULL;
}
#define PPROF__SLICE(vec, type, off) ((type *)pprof__slice(&(vec), sizeof(type), (off)))

/* ---- errors ------------------------------------------------------------- */

/* Fills err (if not NULL) with code and the formatted sentence; returns code. */
int pprof__fail(pprof_error *err, int code, const char *fmt, ...)
    PPROF__PRINTF(3, 4);


/* ---- hashing ------------------------------------------------------------ */

uint64_t pprof__hash_bytes(const void *p, size_t n, uint64_t seed);
static inline uint64_t pprof__hash_mix(uint64_t h, uint64_t v)
{
    /* One round of a multiply-xorshift mixer; good avalanche, cheap. */
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    return h;
}

/* ---- the decoded profile ------------------------------------------------- */

typedef struct pprof__strref {
    uint32_t off; /* into strbytes */
    uint32_t len;
} pprof__strref;

typedef struct pprof__valuetype {
    int64_t type, unit; /* string indices */
} pprof__valuetype;

typedef struct pprof__mapping {
    uint64_t id, start, limit, offset;
    int64_t filename, build_id;
    uint8_t flags; /* PPROF__MAP_* */
} pprof__mapping;

enum {
    PPROF__MAP_FUNCTIONS = 1,
    PPROF__MAP_FILENAMES = 2,
    PPROF__MAP_LINES = 4,
    PPROF__MAP_INLINE = 8,
};

typedef struct pprof__function {
    uint64_t id;
    int64_t name, system_name, filename, start_line;
} pprof__function;

typedef struct pprof__location {
    uint64_t id;
    uint64_t mapping_id; /* as decoded; 0 = none */
    uint64_t address;
    uint32_t mapping; /* resolved mapping index or PPROF__NONE */
    uint32_t line_off, nline;
    bool is_folded;
} pprof__location;

typedef struct pprof__line {
    uint64_t function_id; /* as decoded */
    int64_t line;
    uint32_t function; /* resolved function index */
} pprof__line;

typedef struct pprof__label {
    int64_t key, str, num, num_unit;
} pprof__label;

typedef struct pprof__sample {
    uint32_t loc_off, nloc;     /* into locids */
    uint32_t val_off, nval;     /* into values */
    uint32_t label_off, nlabel; /* into labels */
} pprof__sample;

struct pprof_profile {
    /* Tables, in decode order, then pools: every pprof__vec comes first and
     * is listed in decode.c's tables[] (a static assertion checks the
     * count), which frees and reuses them. */
    pprof__vec sample_types; /* pprof__valuetype */
    pprof__vec samples;      /* pprof__sample */
    pprof__vec mappings;     /* pprof__mapping */
    pprof__vec locations;    /* pprof__location */
    pprof__vec functions;    /* pprof__function */
    pprof__vec strings;      /* pprof__strref */
    pprof__vec comments;     /* int64_t string indices */
    /* Pools. */
    pprof__vec locids;   /* uint64_t: ids, then location indices once resolved */
    pprof__vec values;   /* int64_t */
    pprof__vec labels;   /* pprof__label */
    pprof__vec lines;    /* pprof__line */
    pprof__vec strbytes; /* char */
    /* Scalars. */
    int64_t drop_frames, keep_frames, time_nanos, duration_nanos, period;
    int64_t default_sample_type;
    pprof__valuetype period_type;
    bool has_period_type;
    bool resolved;
    uint64_t inflated; /* protobuf bytes decoded */
    pprof__budget budget;
};

/* Returns a pointer to string i (not NUL-terminated) and its length; i must
 * be in range (the validator has checked every index the engine uses). */
static inline const char *pprof__str(const pprof_profile *p, int64_t i,
                                     uint32_t *len)
{
    const pprof__strref *r = &PPROF__AT(p->strings, pprof__strref, i);
    *len = r->len;
    return p->strbytes.p ? (const char *)p->strbytes.p + r->off : "";
}

/* Whether string i equals the NUL-terminated s. */
bool pprof__str_eq(const pprof_profile *p, int64_t i, const char *s);

/*
 * Checks every structural rule (see validate.c) and resolves ids to indices.
 * Runs once, at the end of decoding. Returns 0 or PPROF_EINVALID /
 * PPROF_ENOMEM / PPROF_ELIMIT with err filled.
 */
int pprof__validate(pprof_profile *p, pprof_error *err);

/* ---- the merger --------------------------------------------------------- */

/*
 * An open-addressing hash table of entry indices (linear probing, load at
 * most 1/2). A slot holds (hash32 << 32) | (index + 1); 0 is empty. Each
 * table's entries start with their uint32_t hash so the table can be rebuilt
 * from the entries alone (growth and rollback).
 */
typedef struct pprof__htab {
    uint64_t *slots;
    size_t cap; /* power of two, or 0 */
    size_t n;
} pprof__htab;

typedef struct pprof__mstr { /* an interned string */
    uint32_t hash;
    uint32_t len;
    uint64_t off; /* into str_bytes */
} pprof__mstr;

typedef struct pprof__mfunc {
    uint32_t hash;
    uint32_t name, system_name, filename; /* string ids */
    int64_t start_line;
} pprof__mfunc;

typedef struct pprof__mmap {
    uint32_t hash;
    uint32_t filename, build_id; /* string ids */
    uint32_t key_str;            /* build id, else file name, else "" */
    uint64_t key_size;           /* limit - start rounded up to 4 KiB */
    uint64_t start, limit, offset;
    uint8_t flags;
} pprof__mmap;

typedef struct pprof__mloc {
    uint32_t hash;
    uint32_t mapping; /* merged mapping index or PPROF__NONE */
    uint64_t address, key_addr;
    uint32_t line_off, nline; /* into mlines */
    bool is_folded;
} pprof__mloc;

typedef struct pprof__mline {
    uint32_t function; /* merged function index */
    uint32_t _pad;
    int64_t line;
} pprof__mline;

enum { PPROF__LABEL_STR = 1, PPROF__LABEL_NUM = 2 };

typedef struct pprof__mlabel { /* no padding: compared with memcmp */
    uint32_t kind, key, str, unit; /* kind PPROF__LABEL_*, string ids */
    int64_t num;
} pprof__mlabel;

typedef struct pprof__msample {
    uint32_t hash;
    uint32_t stack_off, nloc;    /* into stacks (merged location indices) */
    uint32_t label_off, nlabel;  /* into mlabels */
} pprof__msample;

struct pprof_merger {
    /* Header, fixed by the first profile (string ids). */
    bool has_header;
    pprof__vec sample_types; /* uint32_t pairs: type, unit */
    uint32_t period_type, period_unit;
    uint32_t drop_frames, keep_frames, default_sample_type;
    int64_t time_nanos, duration_nanos, period;
    pprof__vec comments; /* uint32_t string ids, first appearance order */
    uint64_t nprofiles;

    /* Interned tables; index 0 of strings is "". */
    pprof__vec strings;   /* pprof__mstr */
    pprof__vec str_bytes; /* char */
    pprof__vec str_flags; /* uint8_t per string: 1 = already a comment */
    pprof__htab str_ht;
    pprof__vec functions; /* pprof__mfunc */
    pprof__htab func_ht;
    pprof__vec mappings;  /* pprof__mmap */
    pprof__htab map_ht;
    pprof__vec locations; /* pprof__mloc */
    pprof__vec mlines;    /* pprof__mline */
    pprof__htab loc_ht;
    pprof__vec samples;   /* pprof__msample */
    pprof__vec stacks;    /* uint32_t */
    pprof__vec mlabels;   /* pprof__mlabel */
    pprof__vec values;    /* int64_t, sample_types.n / 2 per sample */
    pprof__htab smp_ht;

    /*
     * Change stamps, for an encoder that re-encodes only what changed
     * (encode.c). version counts successful adds; group_version holds, per
     * PPROF__SAMPLE_GROUP samples, the last version whose add changed one of
     * them; shape_version is the last version that added a table entry or
     * turned a sample's values to or from all zero (what renumbering reads).
     * uid tells mergers apart, so that a stamp is never read against another.
     */
    uint64_t uid, version, shape_version;
    pprof__vec group_version; /* uint64_t per sample group */

    /* Per-add scratch, kept to avoid reallocating for every profile. */
    pprof__vec s_str, s_func, s_map, s_mapoff, s_loc, s_smp, s_stack, s_lab,
        s_lines;
    pprof__budget budget; /* usage only (no limit) */
};

/* Samples per change stamp, and per piece of the encoder's output. */
#define PPROF__SAMPLE_GROUP 1024u

static inline const char *pprof__mstr_at(const pprof_merger *m, uint32_t id,
                                         uint32_t *len)
{
    const pprof__mstr *s = &PPROF__AT(m->strings, pprof__mstr, id);
    *len = s->len;
    return m->str_bytes.p ? (const char *)m->str_bytes.p + s->off : "";
}

#endif /* PPROF_INTERNAL_H */
