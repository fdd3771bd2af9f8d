/*
 * keys.c: key files and constant-time key checks (see keys.h).
 */
#include "collector/keys.h"

#include "collector/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

/* A key file larger than this is surely not a key file. */
#define KEYS_FILE_MAX (1u << 20)

struct keyset {
    size_t n;
    /* n keys, each KEYS_MAX_LEN bytes, zero-padded; lens[i] is its length. */
    unsigned char *keys;
    size_t *lens;
};

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

int keys_parse(const char *data, size_t len, keyset **out, char *err, size_t errlen) {
    keyset *ks = xcalloc(1, sizeof *ks);
    size_t cap = 0;
    size_t pos = 0;
    size_t lineno = 0;
    int rc;
    while (pos < len) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        while (ll > 0 && is_space(line[0])) {
            line++;
            ll--;
        }
        while (ll > 0 && is_space(line[ll - 1]))
            ll--;
        if (ll == 0 || line[0] == '#')
            continue;
        if (memchr(line, '\0', ll) != NULL) {
            snprintf(err, errlen, "line %zu holds a NUL byte", lineno);
            rc = UV_EINVAL;
            goto fail;
        }
        for (size_t i = 0; i < ll; i++) {
            if (is_space(line[i])) {
                snprintf(err, errlen, "line %zu: a key may not contain white space", lineno);
                rc = UV_EINVAL;
                goto fail;
            }
        }
        if (ll > KEYS_MAX_LEN) {
            snprintf(err, errlen, "line %zu: key longer than %d bytes", lineno, KEYS_MAX_LEN);
            rc = UV_EINVAL;
            goto fail;
        }
        if (ks->n == cap) {
            cap = cap ? cap * 2 : 4;
            ks->keys = xrealloc(ks->keys, cap * KEYS_MAX_LEN);
            ks->lens = xrealloc(ks->lens, cap * sizeof *ks->lens);
        }
        memset(ks->keys + ks->n * KEYS_MAX_LEN, 0, KEYS_MAX_LEN);
        memcpy(ks->keys + ks->n * KEYS_MAX_LEN, line, ll);
        ks->lens[ks->n] = ll;
        ks->n++;
    }
    if (ks->n == 0) {
        snprintf(err, errlen, "no key in it (one key per line; # starts a comment)");
        rc = UV_EINVAL;
        goto fail;
    }
    *out = ks;
    return 0;
fail:
    keys_free(ks);
    return rc;
}

int keys_load_file(const char *path, keyset **out, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *buf = NULL;
    size_t len = 0;
    int rc;
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return rc;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = UV_EINVAL;
        snprintf(err, errlen, "%s is not a regular file", path);
        goto done;
    }
    buf = xmalloc(KEYS_FILE_MAX);
    for (;;) {
        ssize_t n = read(fd, buf + len, KEYS_FILE_MAX - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == KEYS_FILE_MAX) {
            rc = UV_EINVAL;
            snprintf(err, errlen, "%s is larger than %u bytes", path, KEYS_FILE_MAX);
            goto done;
        }
    }
    char why[200];
    rc = keys_parse(buf, len, out, why, sizeof why);
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, why);
done:
    if (buf != NULL) {
        /* The buffer held secrets: wipe it before it goes back to malloc. */
        explicit_bzero(buf, len);
        free(buf);
    }
    close(fd);
    return rc;
}

void keys_free(keyset *ks) {
    if (ks == NULL)
        return;
    if (ks->keys != NULL)
        explicit_bzero(ks->keys, ks->n * KEYS_MAX_LEN);
    free(ks->keys);
    free(ks->lens);
    free(ks);
}

size_t keys_count(const keyset *ks) {
    return ks ? ks->n : 0;
}

int keys_match(const keyset *ks, const char *key, size_t len) {
    unsigned char probe[KEYS_MAX_LEN];
    unsigned found = 0;
    /* A presented key longer than any stored key cannot match; it is still
     * compared (cut) so the time taken stays the same. */
    unsigned too_long = len > KEYS_MAX_LEN;
    size_t n = too_long ? KEYS_MAX_LEN : len;
    memset(probe, 0, sizeof probe);
    memcpy(probe, key, n);
    for (size_t k = 0; k < ks->n; k++) {
        const volatile unsigned char *stored = ks->keys + k * KEYS_MAX_LEN;
        unsigned diff = (unsigned)(ks->lens[k] ^ len);
        for (size_t i = 0; i < KEYS_MAX_LEN; i++)
            diff |= (unsigned)(stored[i] ^ probe[i]);
        diff |= too_long;
        /* found |= (diff == 0), without a branch. */
        found |= 1u & ((diff - 1u) >> (sizeof diff * 8 - 1));
    }
    explicit_bzero(probe, sizeof probe);
    return (int)found;
}

int keys_parse_bearer(const char *value, size_t len, const char **key, size_t *keylen) {
    static const char scheme[] = "bearer";
    size_t sl = sizeof scheme - 1;
    size_t i;
    if (len <= sl || strncasecmp(value, scheme, sl) != 0)
        return UV_EINVAL;
    if (value[sl] != ' ' && value[sl] != '\t')
        return UV_EINVAL;
    i = sl;
    while (i < len && (value[i] == ' ' || value[i] == '\t'))
        i++;
    size_t end = len;
    while (end > i && (value[end - 1] == ' ' || value[end - 1] == '\t'))
        end--;
    if (end == i)
        return UV_EINVAL;
    for (size_t j = i; j < end; j++)
        if (value[j] == ' ' || value[j] == '\t')
            return UV_EINVAL;
    *key = value + i;
    *keylen = end - i;
    return 0;
}
