/*
 * keys.c: finding the API key for a request and remembering its source.
 *
 * DESIGN
 * Keys are secrets, so they should not sit in argv, where every user of the
 * machine can read them through /proc. pgof therefore takes a key from a
 * file (--key-file, or a *_FILE variable, as container secrets are mounted)
 * or from a variable, never from a plain flag. The key's source is kept in
 * cli_key.source so that a 401 can say "key from PGOF_MERGE_KEY_FILE
 * (/run/secrets/merge)" and the operator knows which secret to fix; the key
 * itself never reaches a message, and its buffer is wiped when cleared.
 *
 * Key files are read whole up to a small bound (a key is one short line; a
 * large file is a mistake, such as pointing at a profile), and parsed by the
 * collector's rule so one secret file can serve both.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY_FILE_MAX 4096

/* Accepts printable ASCII without spaces: it goes into an HTTP header. */
static int key_is_clean(const char *k)
{
    if (!*k)
        return 0;
    for (; *k; k++)
        if (*k <= 0x20 || *k >= 0x7f)
            return 0;
    return 1;
}

/*
 * Reads the first key of a key file into key->value (returns owned).
 * path "-" reads stdin.
 */
static int read_key_file(const char *path, cli_key *key, char *err)
{
    char buf[KEY_FILE_MAX + 1];
    size_t len = 0, start, end;
    int fd, rc = CLI_EIO;

    fd = strcmp(path, "-") == 0 ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, CLI_ERR_MAX, "cannot open the key file from %s: %s", key->source,
                 strerror(errno));
        return CLI_EIO;
    }
    while (len < sizeof(buf)) {
        ssize_t n = read(fd, buf + len, sizeof(buf) - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, CLI_ERR_MAX, "cannot read the key file from %s: %s", key->source,
                     strerror(errno));
            goto cleanup;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    if (len > KEY_FILE_MAX) {
        snprintf(err, CLI_ERR_MAX, "the key file from %s is larger than %d bytes; it should "
                 "hold one key on one line", key->source, KEY_FILE_MAX);
        rc = CLI_EINVAL;
        goto cleanup;
    }
    /* The collector's key-file rule: surrounding white space trimmed, blank
     * lines and lines starting with '#' skipped. So the collector's own
     * keys file works here unchanged; its first key is used. */
    start = end = 0;
    while (start < len) {
        size_t eol = start;
        while (eol < len && buf[eol] != '\n')
            eol++;
        end = eol;
        while (start < end && (buf[start] == ' ' || buf[start] == '\t' || buf[start] == '\r'))
            start++;
        while (end > start && (buf[end - 1] == ' ' || buf[end - 1] == '\t' || buf[end - 1] == '\r'))
            end--;
        if (end > start && buf[start] != '#')
            break;
        start = end = eol + 1;
    }
    if (start >= len) {
        snprintf(err, CLI_ERR_MAX, "the key file from %s holds no key (only blank or '#' lines)",
                 key->source);
        rc = CLI_EINVAL;
        goto cleanup;
    }
    key->value = strndup(buf + start, end - start);
    if (!key->value) {
        snprintf(err, CLI_ERR_MAX, "out of memory");
        rc = CLI_ENOMEM;
        goto cleanup;
    }
    rc = 0;

cleanup:
    explicit_bzero(buf, sizeof(buf));
    if (fd != STDIN_FILENO)
        close(fd);
    return rc;
}

int cli_key_resolve(const char *flag_file, const char *env_file,
                    const char *env_value, cli_key *key, char *err)
{
    const char *file = getenv(env_file), *value = getenv(env_value);
    int rc;

    key->value = NULL;
    key->source[0] = '\0';
    if (file && !*file)
        file = NULL;
    if (value && !*value)
        value = NULL;

    if (flag_file) {
        snprintf(key->source, sizeof(key->source), "--key-file %s",
                 strcmp(flag_file, "-") == 0 ? "- (standard input)" : flag_file);
        rc = read_key_file(flag_file, key, err);
    } else if (file && value) {
        snprintf(err, CLI_ERR_MAX, "both %s and %s are set; set only one", env_file, env_value);
        return CLI_EINVAL;
    } else if (file) {
        snprintf(key->source, sizeof(key->source), "%s (%s)", env_file, file);
        rc = read_key_file(file, key, err);
    } else if (value) {
        snprintf(key->source, sizeof(key->source), "%s", env_value);
        key->value = strdup(value);
        if (!key->value) {
            snprintf(err, CLI_ERR_MAX, "out of memory");
            return CLI_ENOMEM;
        }
        rc = 0;
    } else {
        snprintf(err, CLI_ERR_MAX, "no key: set %s (a file holding the key) or %s, or pass "
                 "--key-file FILE", env_file, env_value);
        return CLI_ENOENT;
    }
    if (rc == 0 && !key_is_clean(key->value)) {
        snprintf(err, CLI_ERR_MAX, "the key from %s contains spaces or control characters",
                 key->source);
        cli_key_clear(key);
        return CLI_EINVAL;
    }
    return rc;
}

void cli_key_clear(cli_key *key)
{
    if (key->value) {
        explicit_bzero(key->value, strlen(key->value));
        free(key->value);
        key->value = NULL;
    }
}
