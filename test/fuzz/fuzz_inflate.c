/*
 * fuzz_inflate.c: libFuzzer target: the vendored, patched libdeflate never
 * accepts what zlib refuses.
 *
 * DESIGN
 * decode.c's one-shot path takes libdeflate's output only when libdeflate
 * succeeds; anything it refuses goes to zlib. That is safe only if every
 * stream libdeflate inflates, zlib (and so Go's compress/flate, which refuses
 * the same streams) inflates to the same bytes. Each input is tried as raw
 * DEFLATE data and, when it starts with the gzip magic, as one gzip member
 * under the one-shot path's own rules (no header CRC, the member is the
 * whole input). Whenever libdeflate succeeds, zlib must succeed with the same
 * output, having consumed the same input; otherwise the target aborts.
 * Seed corpus: test/fuzz/corpus/inflate (raw DEFLATE from the fixtures and
 * the crafted streams of test/pprof/test_oneshot.c).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "libdeflate.h"

#define OUT_MAX (1u << 20)

static uint8_t out_a[OUT_MAX], out_b[OUT_MAX];

/* Inflates with zlib (windowBits as for inflateInit2); returns true on a
 * complete stream, with its output and input sizes. */
static bool zlib_inflate(const uint8_t *in, size_t len, int window_bits, size_t *out_len,
                         size_t *in_used)
{
    z_stream z;
    int rc;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, window_bits) != Z_OK)
        abort();
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = out_b;
    z.avail_out = OUT_MAX;
    rc = inflate(&z, Z_FINISH);
    *out_len = z.total_out;
    *in_used = z.total_in;
    inflateEnd(&z);
    return rc == Z_STREAM_END;
}

static void check(bool zlib_ok, size_t zlib_out, size_t zlib_in, size_t out, size_t in)
{
    if (!zlib_ok || zlib_out != out || zlib_in != in || memcmp(out_a, out_b, out) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct libdeflate_decompressor *d;
    size_t in_used = 0, out_used = 0, zout = 0, zin = 0;

    if (!d && !(d = libdeflate_alloc_decompressor()))
        abort();
    if (libdeflate_deflate_decompress_ex(d, data, size, out_a, OUT_MAX, &in_used, &out_used) ==
        LIBDEFLATE_SUCCESS) {
        bool ok = zlib_inflate(data, size, -15, &zout, &zin);
        check(ok, zout, zin, out_used, in_used);
    }
    /* As decode.c's oneshot() calls it: a whole single member, no FHCRC. */
    if (size >= 18 && data[0] == 0x1f && data[1] == 0x8b && !(data[3] & 0x02) &&
        libdeflate_gzip_decompress_ex(d, data, size, out_a, OUT_MAX, &in_used, &out_used) ==
            LIBDEFLATE_SUCCESS &&
        in_used == size) {
        bool ok = zlib_inflate(data, size, 16 + MAX_WBITS, &zout, &zin);
        check(ok, zout, zin, out_used, in_used);
    }
    return 0;
}
