/*
 * fuzz_pprof.c: libFuzzer target over the whole pprof engine.
 *
 * DESIGN
 * Each input is decoded (gzip or raw, as the collector would receive it)
 * with small limits so that hostile sizes are reached quickly, validated,
 * checked against the CPU rule, then merged into a merger that already holds
 * a crafted valid profile of the same types (so the compatible path and the
 * incompatible refusal are both exercised), merged a second time (the
 * hash-consed "already seen" paths), encoded, and the encoding decoded again:
 * our own output must always be a valid profile with the same sample count.
 * One pprof_encoder lives across inputs, so it meets each new aggregate
 * holding the pieces of the last one; its output must equal the one-shot
 * encoding every time.
 * The aggregate is then reshaped (shape=pgo, strip_labels) and the input
 * weighted (weight=equal), whose outputs must be valid too (issue 10).
 * Each input is also decoded from a descriptor, fresh and in the memory of
 * the last input's profile (pprof_decode_fd_reuse): both must give the same
 * answer and, on success, the same profile.
 * A gzip input is decoded a second time through zlib's streaming path only:
 * the one-shot libdeflate path must give the same answer, the same message
 * on a refusal and the same merged bytes on success. A raw input is gzipped
 * first for that check, so valid gzip streams of every shape meet it too.
 * Any crash, leak, sanitizer report or broken round trip is a finding.
 * Seed corpus: test/fuzz/corpus/pprof (the real fixtures, raw and gzip, and
 * the inputs of past findings: tiny-encode-twice.pb, empty-packed-run-first-*).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zlib.h>

#include "pprof/internal.h"
#include "pprof/pprof.h"

/* Encodes m with the long-lived encoder; aborts unless the bytes are want. */
static void check_encoder(const pprof_merger *m, const uint8_t *want, size_t want_len)
{
    static pprof_encoder *x;
    uint8_t *got = NULL, *fresh = NULL;
    size_t got_len = 0, fresh_len = 0;
    pprof_error err;

    if (!x && !(x = pprof_encoder_new()))
        abort();
    if (!want) {
        if (pprof_merger_encode(m, &fresh, &fresh_len, &err) != 0)
            abort();
        want = fresh;
        want_len = fresh_len;
    }
    if (pprof_encoder_encode(x, m, &got, &got_len, &err) != 0 || got_len != want_len ||
        memcmp(got, want, want_len) != 0)
        abort();
    free(got);
    free(fresh);
}

/* The encoding of a merger holding only p (owned by the caller). */
static uint8_t *encode_alone(const pprof_profile *p, size_t *len)
{
    pprof_merger *m = pprof_merger_new();
    uint8_t *out = NULL;
    pprof_error err;

    if (!m || pprof_merger_add(m, p, &err) != 0 ||
        pprof_merger_encode(m, &out, len, &err) != 0)
        abort();
    pprof_merger_free(m);
    return out;
}

/*
 * Decodes a gzip input through both inflaters, under the run's limits and
 * under tight ones (where the one-shot window's charge must match the
 * streaming window's growth): same code, same message on a refusal, same
 * merged bytes on success.
 */
static void check_inflaters(const uint8_t *data, size_t size)
{
    static const pprof_limits lims[2] = {{4u << 20, 64u << 20}, {1u << 20, 256u << 10}};

    if (size < 2 || data[0] != 0x1f || data[1] != 0x8b)
        return;
    for (int i = 0; i < 2; i++) {
        pprof_profile *p = NULL, *q = NULL;
        pprof_error perr, qerr;
        int rc = pprof_decode_mem(data, size, &lims[i], &p, &perr);
        pprof__oneshot_off = true;
        if (pprof_decode_mem(data, size, &lims[i], &q, &qerr) != rc)
            abort();
        pprof__oneshot_off = false;
        if (rc != 0 && strcmp(qerr.msg, perr.msg) != 0)
            abort();
        if (rc == 0) {
            size_t alen = 0, blen = 0;
            /* Charged alike: the one-shot window as the streaming one grew. */
            if (p->budget.used != q->budget.used)
                abort();
            uint8_t *a = encode_alone(p, &alen), *b = encode_alone(q, &blen);
            if (alen != blen || memcmp(a, b, alen) != 0)
                abort();
            free(a);
            free(b);
        }
        pprof_profile_free(p);
        pprof_profile_free(q);
    }
}

/* A raw input gzipped (level 1, as Go's profile writer), then checked. */
static void check_inflaters_gzipped(const uint8_t *data, size_t size)
{
    uLongf zlen = compressBound((uLong)size) + 32;
    uint8_t *z = malloc(zlen);
    z_stream zs;

    memset(&zs, 0, sizeof(zs));
    if (!z || deflateInit2(&zs, 1, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)size;
    zs.next_out = z;
    zs.avail_out = (uInt)zlen;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    check_inflaters(z, zs.total_out);
    deflateEnd(&zs);
    free(z);
}

static int on_discard(void *ctx, const void *data, size_t len)
{
    (void)data;
    *(size_t *)ctx += len;
    return 0;
}

/* A fresh decode from a descriptor and one in the memory of the last
 * input's profile agree on the answer and, on success, on the profile. */
static void check_reuse(const uint8_t *data, size_t size, const pprof_limits *lim)
{
    static pprof_profile *spare; /* reachable between inputs: not a leak */
    pprof_profile *fresh = NULL, *reused = NULL;
    pprof_error ferr, rerr;
    int fd = memfd_create("fuzz_pprof", MFD_CLOEXEC), frc, rrc;

    if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t)size))
        abort();
    memset(&ferr, 0, sizeof(ferr));
    memset(&rerr, 0, sizeof(rerr));
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    frc = pprof_decode_fd(fd, lim, &fresh, &ferr);
    if (lseek(fd, 0, SEEK_SET) != 0)
        abort();
    rrc = pprof_decode_fd_reuse(fd, lim, spare, &reused, &rerr);
    spare = NULL;
    close(fd);
    if (frc != rrc || strcmp(ferr.msg, rerr.msg) != 0)
        abort();
    if (frc == 0) {
        size_t flen = 0, rlen = 0;
        uint8_t *f = encode_alone(fresh, &flen), *r = encode_alone(reused, &rlen);
        if (flen != rlen || memcmp(f, r, flen) != 0)
            abort();
        free(f);
        free(r);
    }
    pprof_profile_free(fresh);
    spare = reused;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pprof_limits lim = {4u << 20, 64u << 20};
    pprof_profile *p = NULL, *again = NULL;
    pprof_merger *m = NULL;
    pprof_error err;
    uint8_t *out = NULL;
    size_t out_len = 0, written = 0;
    int rc;

    check_reuse(data, size, &lim);
    check_inflaters(data, size);
    if (size > 0 && data[0] != 0x1f)
        check_inflaters_gzipped(data, size);
    rc = pprof_decode_mem(data, size, &lim, &p, &err);
    if (rc) {
        /* Every failure carries a code and a sentence. */
        if (err.code != rc || err.msg[0] == '\0')
            abort();
        return 0;
    }
    (void)pprof_check_cpu(p, &err);
    m = pprof_merger_new();
    if (!m)
        abort();
    if (pprof_merger_add(m, p, &err) != 0)
        abort(); /* a valid profile always merges into an empty merger */
    if (pprof_merger_add(m, p, &err) != 0)
        abort();
    if (pprof_merger_write(m, on_discard, &written, &err) != 0)
        abort();
    if (pprof_merger_encode(m, &out, &out_len, &err) != 0 || out_len != written)
        abort();
    check_encoder(m, out, out_len);
    if (pprof_decode_mem(out, out_len, NULL, &again, &err) != 0)
        abort(); /* our own output must always decode */
    if (pprof_merger_add(m, again, &err) != 0)
        abort();
    if (pprof_merger_samples(m) > (uint64_t)1 << 32)
        abort();
    check_encoder(m, NULL, 0);
    for (unsigned flags = PPROF_RESHAPE_STRIP_LABELS; flags <= PPROF_RESHAPE_PGO; flags++) {
        pprof_merger *r = NULL;
        pprof_profile *rp = NULL;
        uint8_t *rout = NULL;
        size_t rlen = 0;
        if (pprof_merger_reshape(m, flags, &r, &err) != 0 ||
            pprof_merger_encode(r, &rout, &rlen, &err) != 0 ||
            pprof_decode_mem(rout, rlen, NULL, &rp, &err) != 0)
            abort(); /* a valid aggregate always reshapes into a valid profile */
        pprof_profile_free(rp);
        free(rout);
        pprof_merger_free(r);
    }
    {
        int64_t total = 0;
        /* Refused (negative values, overflow) or scaled to exactly 2x. */
        if (pprof_profile_total(again, &total, &err) == 0 && total > 0 &&
            total < INT64_MAX / 4 && pprof_profile_scale(again, 2 * total, &err) == 0) {
            int64_t after = 0;
            if (pprof_profile_total(again, &after, &err) != 0 || after != 2 * total)
                abort();
        }
    }
    pprof_profile_free(again);
    free(out);
    pprof_merger_free(m);
    pprof_profile_free(p);
    return 0;
}
