/*
 * pprof_dump.c: a small command-line driver of the pprof engine for the
 * cross-check tests (test/pprof/test_crosscheck.py) and the benchmark
 * (test/bench/merge_engine.sh). Not installed; built as build/pprof-dump.
 *
 *   pprof-dump check [--cpu] FILE...   decode and validate each file
 *   pprof-dump merge -o OUT FILE...    merge the files into OUT (gzip pprof)
 *   pprof-dump samples FILE            one line per distinct stack: values,
 *                                      then frames leaf first as
 *                                      function:line, then labels; sorted
 *   pprof-dump inflate FILE...         only gunzip each file into a scratch
 *                                      buffer, with the decoder's inflaters
 *                                      (the benchmark's floor), and print
 *                                      the byte count
 *   pprof-dump pgo-edges FILE          the weighted call graph Go's compiler
 *                                      builds from FILE (pgo_edges.h)
 *
 * DESIGN
 * The "samples" listing is keyed by symbolic frames only (no addresses or
 * ids), so two profiles holding the same stacks in different tables, as
 * ours and `go tool pprof -proto`'s merges do, print the same lines. It
 * reaches into the engine's internal tables (src/pprof/internal.h).
 * Exit status: 0 on success, 1 when any input failed, 2 on usage errors.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>

#include "libdeflate.h"
#include "pprof/internal.h"

#include "pgo_edges.h"

static int usage(void)
{
    fprintf(stderr, "usage: pprof-dump check [--cpu] FILE...\n"
                    "       pprof-dump merge -o OUT FILE...\n"
                    "       pprof-dump samples FILE\n"
                    "       pprof-dump inflate FILE...\n"
                    "       pprof-dump pgo-edges FILE\n");
    return 2;
}

/* Decodes path into *p, in spare's memory (consumed; may be NULL). */
static int load_reuse(const char *path, pprof_profile *spare, pprof_profile **p)
{
    pprof_error err = {0, ""};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc;

    if (fd < 0) {
        perror(path);
        pprof_profile_free(spare);
        return -1;
    }
    rc = pprof_decode_fd_reuse(fd, NULL, spare, p, &err);
    close(fd);
    if (rc)
        fprintf(stderr, "%s: %s: %s\n", path, pprof_strerror(rc), err.msg);
    return rc;
}

static int load(const char *path, pprof_profile **p)
{
    return load_reuse(path, NULL, p);
}

static int cmd_check(int argc, char **argv)
{
    int i, cpu = 0, bad = 0;

    for (i = 0; i < argc; i++) {
        pprof_profile *p;
        pprof_error err = {0, ""};
        if (strcmp(argv[i], "--cpu") == 0) {
            cpu = 1;
            continue;
        }
        if (load(argv[i], &p)) {
            bad = 1;
            continue;
        }
        if (cpu && pprof_check_cpu(p, &err)) {
            fprintf(stderr, "%s: %s\n", argv[i], err.msg);
            bad = 1;
        } else {
            printf("%s: ok, %zu samples\n", argv[i], p->samples.n);
        }
        pprof_profile_free(p);
    }
    return bad;
}

static int on_write(void *ctx, const void *data, size_t len)
{
    return fwrite(data, 1, len, ctx) == len ? 0 : -1;
}

static int cmd_merge(int argc, char **argv)
{
    pprof_profile *spare = NULL;
    pprof_merger *m = pprof_merger_new();
    pprof_error err = {0, ""};
    const char *out = NULL;
    FILE *f;
    int i, bad = 0;

    if (!m)
        return 1;
    for (i = 0; i < argc; i++) {
        pprof_profile *p = NULL;
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            out = argv[++i];
            continue;
        }
        /* Each profile is decoded in the memory of the one before, as
         * pgof merge does. */
        if (load_reuse(argv[i], spare, &p)) {
            spare = NULL;
            bad = 1;
            continue;
        }
        if (pprof_merger_add(m, p, &err)) {
            fprintf(stderr, "%s: %s\n", argv[i], err.msg);
            bad = 1;
        }
        spare = p;
    }
    pprof_profile_free(spare);
    if (!out) {
        pprof_merger_free(m);
        return usage();
    }
    f = fopen(out, "wb");
    if (!f) {
        perror(out);
        pprof_merger_free(m);
        return 1;
    }
    if (pprof_merger_write(m, on_write, f, &err)) {
        fprintf(stderr, "%s: %s\n", out, err.msg);
        bad = 1;
    }
    if (fclose(f) != 0)
        bad = 1;
    fprintf(stderr, "merged %llu profiles, %llu samples\n",
            (unsigned long long)pprof_merger_profiles(m),
            (unsigned long long)pprof_merger_samples(m));
    pprof_merger_free(m);
    return bad;
}

typedef struct line_buf {
    char *s;
    size_t n, cap;
} line_buf;

static void add(line_buf *b, const char *s, size_t len)
{
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->s = realloc(b->s, b->cap);
        if (!b->s)
            abort();
    }
    memcpy(b->s + b->n, s, len);
    b->n += len;
    b->s[b->n] = '\0';
}

static void add_str(line_buf *b, const pprof_profile *p, int64_t i)
{
    uint32_t len;
    const char *s = pprof__str(p, i, &len);
    add(b, s, len);
}

typedef struct row {
    char *key;
    int64_t *v;
} row;

static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const row *)a)->key, ((const row *)b)->key);
}

static int cmd_samples(const char *path)
{
    pprof_profile *p;
    const pprof__sample *s;
    size_t i, j, k, nst, nrows = 0;
    row *rows;

    if (load(path, &p))
        return 1;
    s = p->samples.p;
    nst = p->sample_types.n;
    rows = calloc(p->samples.n + 1, sizeof(*rows));
    for (i = 0; i < p->samples.n; i++) {
        line_buf b = {NULL, 0, 0};
        char num[64];
        add(&b, "", 0);
        for (j = 0; j < s[i].nloc; j++) {
            const pprof__location *l =
                &PPROF__AT(p->locations, pprof__location,
                           PPROF__AT(p->locids, uint64_t, s[i].loc_off + j));
            for (k = 0; k < l->nline; k++) {
                const pprof__line *ln = &PPROF__AT(p->lines, pprof__line, l->line_off + k);
                const pprof__function *f = &PPROF__AT(p->functions, pprof__function, ln->function);
                add_str(&b, p, f->name);
                snprintf(num, sizeof(num), ":%lld;", (long long)ln->line);
                add(&b, num, strlen(num));
            }
            if (l->nline == 0) {
                snprintf(num, sizeof(num), "0x%llx;", (unsigned long long)l->address);
                add(&b, num, strlen(num));
            }
        }
        /* Labels sorted as text, so table order does not matter. */
        {
            row *lr = calloc(s[i].nlabel + 1, sizeof(*lr));
            for (j = 0; j < s[i].nlabel; j++) {
                const pprof__label *lb = &PPROF__AT(p->labels, pprof__label, s[i].label_off + j);
                line_buf lbuf = {NULL, 0, 0};
                add(&lbuf, " ", 1);
                add_str(&lbuf, p, lb->key);
                add(&lbuf, "=", 1);
                if (lb->str) {
                    add_str(&lbuf, p, lb->str);
                } else {
                    snprintf(num, sizeof(num), "%lld", (long long)lb->num);
                    add(&lbuf, num, strlen(num));
                    add_str(&lbuf, p, lb->num_unit);
                }
                lr[j].key = lbuf.s;
            }
            qsort(lr, s[i].nlabel, sizeof(*lr), row_cmp);
            for (j = 0; j < s[i].nlabel; j++) {
                add(&b, lr[j].key, strlen(lr[j].key));
                free(lr[j].key);
            }
            free(lr);
        }
        rows[nrows].key = b.s;
        rows[nrows].v = PPROF__SLICE(p->values, int64_t, s[i].val_off);
        nrows++;
    }
    qsort(rows, nrows, sizeof(*rows), row_cmp);
    /* Sum rows with equal keys (different addresses, same symbols). */
    for (i = 0; i < nrows; i = j) {
        int64_t sum[16] = {0};
        int zero = 1;
        for (j = i; j < nrows && strcmp(rows[j].key, rows[i].key) == 0; j++)
            for (k = 0; k < nst && k < 16; k++)
                sum[k] += rows[j].v[k];
        for (k = 0; k < nst && k < 16; k++)
            zero &= sum[k] == 0;
        if (zero)
            continue;
        for (k = 0; k < nst && k < 16; k++)
            printf("%lld ", (long long)sum[k]);
        printf("| %s\n", rows[i].key);
    }
    for (i = 0; i < nrows; i++)
        free(rows[i].key);
    free(rows);
    pprof_profile_free(p);
    return 0;
}

/*
 * Inflates a whole gzip file of at most 4 MiB in one libdeflate call, as
 * the decoder's one-shot path does; returns the inflated size, or 0 when
 * the decoder would give the file to zlib.
 */
static size_t inflate_whole(int fd, struct libdeflate_decompressor *d)
{
    static unsigned char in[(4u << 20) + 1], out[4u << 20];
    size_t len = 0, in_used = 0, out_used = 0;
    ssize_t n;
    uint32_t isize;

    while (len < sizeof(in) && (n = read(fd, in + len, sizeof(in) - len)) > 0)
        len += (size_t)n;
    if (lseek(fd, 0, SEEK_SET) != 0)
        return 0;
    isize = pprof__oneshot_isize(in, len);
    if (isize == 0 || isize > sizeof(out) ||
        libdeflate_gzip_decompress_ex(d, in, len, out, isize, &in_used, &out_used) !=
            LIBDEFLATE_SUCCESS ||
        in_used != len || out_used != isize)
        return 0;
    return out_used;
}

/* Inflates each file as the decoder would (inflate_whole, else zlib in
 * 64 KiB pieces), discarding the bytes. */
static int cmd_inflate(int argc, char **argv)
{
    static unsigned char in[1 << 16], out[1 << 16];
    struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
    unsigned long long total = 0;
    int i;

    if (!d)
        return 1;
    for (i = 0; i < argc; i++) {
        z_stream z;
        int fd = open(argv[i], O_RDONLY | O_CLOEXEC), zr = Z_OK;
        ssize_t n;
        size_t whole;
        if (fd < 0) {
            perror(argv[i]);
            return 1;
        }
        if ((whole = inflate_whole(fd, d)) > 0) {
            total += whole;
            close(fd);
            continue;
        }
        memset(&z, 0, sizeof(z));
        if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
            return 1;
        while (zr != Z_STREAM_END && (n = read(fd, in, sizeof(in))) > 0) {
            z.next_in = in;
            z.avail_in = (uInt)n;
            do {
                z.next_out = out;
                z.avail_out = sizeof(out);
                zr = inflate(&z, Z_NO_FLUSH);
                if (zr != Z_OK && zr != Z_STREAM_END) {
                    fprintf(stderr, "%s: inflate failed\n", argv[i]);
                    return 1;
                }
            } while (z.avail_in > 0 && zr != Z_STREAM_END);
        }
        total += z.total_out;
        inflateEnd(&z);
        close(fd);
    }
    libdeflate_free_decompressor(d);
    printf("%llu bytes inflated from %d files\n", total, argc);
    return 0;
}

/* Prints the compiler's edge table of one file. */
static int cmd_pgo_edges(const char *path)
{
    pprof_profile *p = NULL;
    const char *why = NULL;
    char *text;

    if (load(path, &p) != 0)
        return 1;
    text = pgo_edges_text(p, &why);
    pprof_profile_free(p);
    if (!text) {
        fprintf(stderr, "%s: %s\n", path, why);
        return 1;
    }
    fputs(text, stdout);
    free(text);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    if (strcmp(argv[1], "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (strcmp(argv[1], "merge") == 0)
        return cmd_merge(argc - 2, argv + 2);
    if (strcmp(argv[1], "inflate") == 0)
        return cmd_inflate(argc - 2, argv + 2);
    if (strcmp(argv[1], "samples") == 0 && argc == 3)
        return cmd_samples(argv[2]);
    if (strcmp(argv[1], "pgo-edges") == 0 && argc == 3)
        return cmd_pgo_edges(argv[2]);
    return usage();
}
