/*
 * mergeopts.c: parsing and checking the merge options (see mergeopts.h).
 *
 * The accepted values, and the reasons given for everything else, are the
 * contract documented in docs/api.md and docs/cli.md; the unit tests in
 * test/collector/test_query.c pin them.
 */
#include "common/mergeopts.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define MS_PER_S UINT64_C(1000)
#define MAX_DURATION_MS (UINT64_C(100) * 365 * 86400 * 1000)

void mergeopts_init(mergeopts *o)
{
    memset(o, 0, sizeof(*o));
}

int mergeopts_parse_duration(const char *s, size_t len, uint64_t *ms)
{
    uint64_t total = 0;
    size_t i = 0;

    if (len == 0)
        return MERGEOPTS_EINVAL;
    while (i < len) {
        uint64_t n = 0, unit;
        size_t digits = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            if (n > MAX_DURATION_MS)
                return MERGEOPTS_EINVAL;
            n = n * 10 + (uint64_t)(s[i] - '0');
            i++;
            digits++;
        }
        if (digits == 0 || i == len)
            return MERGEOPTS_EINVAL; /* a unit is required */
        switch (s[i]) {
        case 's': unit = MS_PER_S; break;
        case 'm': unit = 60 * MS_PER_S; break;
        case 'h': unit = 3600 * MS_PER_S; break;
        case 'd': unit = 86400 * MS_PER_S; break;
        case 'w': unit = 7 * 86400 * MS_PER_S; break;
        default: return MERGEOPTS_EINVAL;
        }
        i++;
        if (n > MAX_DURATION_MS / unit)
            return MERGEOPTS_EINVAL;
        total += n * unit;
        if (total > MAX_DURATION_MS)
            return MERGEOPTS_EINVAL;
    }
    if (total == 0)
        return MERGEOPTS_EINVAL;
    *ms = total;
    return 0;
}

void mergeopts_format_duration(uint64_t ms, char *out, size_t outsz)
{
    static const struct {
        uint64_t ms;
        char unit;
    } units[] = {{86400 * MS_PER_S, 'd'}, {3600 * MS_PER_S, 'h'}, {60 * MS_PER_S, 'm'},
                 {MS_PER_S, 's'}};
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms % units[i].ms == 0) {
            snprintf(out, outsz, "%llu%c", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(out, outsz, "%llums", (unsigned long long)ms);
}

static int is(const char *val, size_t vlen, const char *lit)
{
    return vlen == strlen(lit) && memcmp(val, lit, vlen) == 0;
}

/* Quotes at most 40 bytes of a client's value, escaping the unprintable. */
static void quote(char *out, size_t outsz, const char *val, size_t vlen)
{
    size_t o = 0, i;

    for (i = 0; i < vlen && i < 40 && o + 5 < outsz; i++) {
        unsigned char c = (unsigned char)val[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outsz - o, "\\x%02x", c);
    }
    if (i < vlen && o + 4 < outsz) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int mergeopts_set(mergeopts *o, const char *key, const char *val, size_t vlen, char *why,
                  size_t whylen)
{
    char q[200];

    if (strcmp(key, "and_combine") == 0) {
        /* The Go collector's rule: exactly "true" combines. */
        o->combine = is(val, vlen, "true");
        return 1;
    }
    quote(q, sizeof(q), val, vlen);
    if (strcmp(key, "strip_labels") == 0) {
        if (is(val, vlen, "true") || is(val, vlen, "false")) {
            o->strip_labels = is(val, vlen, "true");
            return 1;
        }
        snprintf(why, whylen, "strip_labels=\"%s\": must be true or false", q);
        return MERGEOPTS_EINVAL;
    }
    if (strcmp(key, "shape") == 0) {
        if (is(val, vlen, "pgo") || is(val, vlen, "full")) {
            o->shape = is(val, vlen, "pgo") ? MERGEOPTS_SHAPE_PGO : MERGEOPTS_SHAPE_FULL;
            return 1;
        }
        snprintf(why, whylen, "shape=\"%s\": must be pgo or full", q);
        return MERGEOPTS_EINVAL;
    }
    if (strcmp(key, "weight") == 0) {
        if (is(val, vlen, "equal") || is(val, vlen, "none")) {
            o->weight = is(val, vlen, "equal") ? MERGEOPTS_WEIGHT_EQUAL : MERGEOPTS_WEIGHT_NONE;
            return 1;
        }
        snprintf(why, whylen, "weight=\"%s\": must be equal or none", q);
        return MERGEOPTS_EINVAL;
    }
    if (strcmp(key, "since") == 0) {
        if (mergeopts_parse_duration(val, vlen, &o->since_ms) == 0)
            return 1;
        snprintf(why, whylen,
                 "since=\"%s\": not a duration (a number and a unit s, m, h, d or w, e.g. 7d)",
                 q);
        return MERGEOPTS_EINVAL;
    }
    return 0;
}

int mergeopts_check(const mergeopts *o, char *why, size_t whylen)
{
    if (!o->combine)
        return 0;
    if (o->shape == MERGEOPTS_SHAPE_PGO) {
        snprintf(why, whylen, "and_combine=true cannot be used with shape=pgo: the combine "
                              "would replace the stored profiles by a reduced one");
        return MERGEOPTS_ECOMBINE;
    }
    if (o->strip_labels) {
        snprintf(why, whylen, "and_combine=true cannot be used with strip_labels=true: the "
                              "combine would replace the stored profiles by ones without labels");
        return MERGEOPTS_ECOMBINE;
    }
    if (o->weight == MERGEOPTS_WEIGHT_EQUAL) {
        snprintf(why, whylen, "and_combine=true cannot be used with weight=equal: the combine "
                              "would store scaled values and lose where each profile ends");
        return MERGEOPTS_ECOMBINE;
    }
    if (o->since_ms) {
        snprintf(why, whylen, "and_combine=true cannot be used with since: the combine "
                              "replaces every stored profile, not only those in the window");
        return MERGEOPTS_ECOMBINE;
    }
    return 0;
}

int mergeopts_needs_files(const mergeopts *o)
{
    return o->since_ms != 0 || o->weight == MERGEOPTS_WEIGHT_EQUAL;
}

int mergeopts_any(const mergeopts *o)
{
    return o->strip_labels || o->shape != MERGEOPTS_SHAPE_FULL || mergeopts_needs_files(o);
}

void mergeopts_query(const mergeopts *o, char *out, size_t outsz)
{
    char d[32];
    size_t n = 0;

    out[0] = '\0';
#define ADD(...)                                                                          \
    do {                                                                                  \
        if (n < outsz) {                                                                  \
            int w_ = snprintf(out + n, outsz - n, "%s", n ? "&" : "");                    \
            if (w_ > 0)                                                                   \
                n += (size_t)w_;                                                          \
            if (n < outsz && (w_ = snprintf(out + n, outsz - n, __VA_ARGS__)) > 0)        \
                n += (size_t)w_;                                                          \
        }                                                                                 \
    } while (0)
    if (o->combine)
        ADD("and_combine=true");
    if (o->strip_labels)
        ADD("strip_labels=true");
    if (o->shape == MERGEOPTS_SHAPE_PGO)
        ADD("shape=pgo");
    if (o->weight == MERGEOPTS_WEIGHT_EQUAL)
        ADD("weight=equal");
    if (o->since_ms) {
        mergeopts_format_duration(o->since_ms, d, sizeof(d));
        ADD("since=%s", d);
    }
#undef ADD
}

/* Parses "<digits>_<digits>.pgo" at s; 1 and the first number on success. */
static int parse_stamp(const char *s, uint64_t *ms)
{
    uint64_t v = 0;
    size_t i = 0, j;

    while (s[i] >= '0' && s[i] <= '9') {
        if (v > UINT64_MAX / 10 - 10)
            return 0;
        v = v * 10 + (uint64_t)(s[i] - '0');
        i++;
    }
    if (i == 0 || s[i] != '_')
        return 0;
    for (j = ++i; s[j] >= '0' && s[j] <= '9'; j++)
        ;
    if (j == i || strcmp(s + j, ".pgo") != 0)
        return 0;
    *ms = v;
    return 1;
}

int mergeopts_name_time_ms(const char *name, uint64_t *ms)
{
    const char *base = strrchr(name, '/');

    base = base ? base + 1 : name;
    if (strncmp(base, "merged_", 7) == 0)
        base += 7;
    return parse_stamp(base, ms);
}

int mergeopts_file_time_ms(const char *dir, const char *name, uint64_t *ms)
{
    char path[4096];
    struct stat st;

    if (mergeopts_name_time_ms(name, ms))
        return 0;
    if (dir)
        snprintf(path, sizeof(path), "%s/%s", dir, name);
    else
        snprintf(path, sizeof(path), "%s", name);
    if (stat(path, &st) != 0)
        return -errno;
    *ms = (uint64_t)st.st_mtim.tv_sec * 1000 + (uint64_t)st.st_mtim.tv_nsec / 1000000;
    return 0;
}
