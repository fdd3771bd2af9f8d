/*
 * keys.h: bearer keys, loaded from key files and checked in constant time.
 *
 * DESIGN
 * A key file holds one key per line; surrounding white space is trimmed and
 * blank lines and lines starting with '#' are ignored. A keyset is immutable
 * once loaded. Each key is stored zero-padded to KEYS_MAX_LEN bytes and a
 * presented key is compared against every stored key over all KEYS_MAX_LEN
 * bytes, so the time taken does not depend on where, or whether, the keys
 * differ. Keys never leave this module except as "matched" or "not matched";
 * nothing here logs.
 *
 * Threads: keys_load_file() does blocking reads and runs at start-up or on
 * the threadpool (SIGHUP reload). keys_match() runs on the loop thread.
 */
#ifndef COLLECTOR_KEYS_H
#define COLLECTOR_KEYS_H

#include <stddef.h>

/* Longest key accepted in a key file, in bytes. */
#define KEYS_MAX_LEN 512

typedef struct keyset keyset;

/*
 * Reads path into a new keyset (returns owned in *out). Fails with a negative
 * uv-style code and one line in err when the file is missing or unreadable,
 * holds no key, or has a key longer than KEYS_MAX_LEN.
 */
int keys_load_file(const char *path, keyset **out, char *err, size_t errlen);

/* Builds a keyset from a buffer with the file's format (for tests too). */
int keys_parse(const char *data, size_t len, keyset **out, char *err,
               size_t errlen);

void keys_free(keyset *ks);
size_t keys_count(const keyset *ks);

/* Returns 1 when key (len bytes) is in ks, else 0, in constant time. */
int keys_match(const keyset *ks, const char *key, size_t len);

/*
 * Parses an Authorization header value "Bearer <key>" (scheme without regard
 * to case, one or more spaces, key without white space). On success points
 * *key into value and returns 0; returns UV_EINVAL when malformed.
 */
int keys_parse_bearer(const char *value, size_t len, const char **key,
                      size_t *keylen);

#endif /* COLLECTOR_KEYS_H */
