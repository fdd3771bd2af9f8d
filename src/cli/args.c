/*
 * args.c: small parsers and formatters the subcommands share.
 *
 * DESIGN
 * Everything here is a pure function of its arguments (cli_stderr_is_tty
 * aside), so the unit test drives it directly. Parsers reject rather than
 * guess: a build script that passes "--timeout 5x" gets a usage error, not
 * a five-second timeout. URLs are checked with libcurl's own URL parser so
 * that pgof and the transfer agree on what the URL means.
 */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#define DAY_MS (24L * 3600L * 1000L)

int cli_parse_duration_ms(const char *s, long *ms)
{
    char *end;
    double v, scale = 1000.0;

    if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
        return CLI_EINVAL;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0)
        return CLI_EINVAL;
    if (strcmp(end, "ms") == 0)
        scale = 1.0;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        scale = 1000.0;
    else if (strcmp(end, "m") == 0)
        scale = 60000.0;
    else
        return CLI_EINVAL;
    v *= scale;
    if (v > (double)DAY_MS)
        return CLI_EINVAL;
    *ms = (long)llround(v);
    return 0;
}

int cli_parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    unsigned long v;

    if (!s || *s < '0' || *s > '9')
        return CLI_EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v > max)
        return CLI_EINVAL;
    *out = v;
    return 0;
}

int cli_join_url(const char *base, const char *path, char **out, char *err)
{
    CURLU *u = NULL;
    char *scheme = NULL, *host = NULL, *query = NULL, *frag = NULL;
    size_t blen, plen;
    int rc = CLI_EINVAL;

    *out = NULL;
    if (!base || !*base) {
        snprintf(err, CLI_ERR_MAX, "the collector URL is empty");
        return CLI_EINVAL;
    }
    u = curl_url();
    if (!u) {
        rc = CLI_ENOMEM;
        snprintf(err, CLI_ERR_MAX, "out of memory");
        goto cleanup;
    }
    /* No scheme guessing: "collector:8080" must not quietly become http. */
    if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK) {
        snprintf(err, CLI_ERR_MAX, "'%s' is not a URL (expected http://HOST:PORT or "
                 "https://HOST)", base);
        goto cleanup;
    }
    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0);
    if (!scheme || (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
        snprintf(err, CLI_ERR_MAX, "'%s': only http:// and https:// URLs are supported", base);
        goto cleanup;
    }
    if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host) {
        snprintf(err, CLI_ERR_MAX, "'%s' has no host", base);
        goto cleanup;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
        snprintf(err, CLI_ERR_MAX, "'%s': give the collector's base URL, without '?' or '#'",
                 base);
        goto cleanup;
    }
    blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    plen = strlen(path);
    *out = malloc(blen + plen + 1);
    if (!*out) {
        rc = CLI_ENOMEM;
        snprintf(err, CLI_ERR_MAX, "out of memory");
        goto cleanup;
    }
    memcpy(*out, base, blen);
    memcpy(*out + blen, path, plen + 1);
    rc = 0;

cleanup:
    curl_free(frag);
    curl_free(query);
    curl_free(host);
    curl_free(scheme);
    curl_url_cleanup(u);
    return rc;
}

int cli_url_from_bind(const char *bind, char *out, size_t outlen)
{
    const char *port, *host;
    size_t hlen;
    unsigned long p;
    char hostbuf[64];

    if (!bind || !*bind) {
        snprintf(out, outlen, "http://127.0.0.1:8080");
        return 0;
    }
    port = strrchr(bind, ':');
    if (!port || cli_parse_uint(port + 1, 65535, &p) != 0 || p == 0)
        return CLI_EINVAL;
    host = bind;
    hlen = (size_t)(port - bind);
    if (hlen >= sizeof(hostbuf))
        return CLI_EINVAL;
    memcpy(hostbuf, host, hlen);
    hostbuf[hlen] = '\0';

    if (hlen == 0 || strcmp(hostbuf, "0.0.0.0") == 0)
        snprintf(out, outlen, "http://127.0.0.1:%lu", p);
    else if (strcmp(hostbuf, "[::]") == 0)
        snprintf(out, outlen, "http://[::1]:%lu", p);
    else if (hostbuf[0] == '[' ? hostbuf[hlen - 1] == ']' : strchr(hostbuf, ':') == NULL)
        snprintf(out, outlen, "http://%s:%lu", hostbuf, p);
    else
        return CLI_EINVAL;
    return 0;
}

const char *cli_fmt_bytes(uint64_t n, char *buf, size_t len)
{
    static const char *units[] = {"KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    int u = -1;

    if (n < 1024) {
        snprintf(buf, len, "%llu B", (unsigned long long)n);
        return buf;
    }
    while (v >= 1024.0 && u < 3) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, "%.1f %s", v, units[u]);
    return buf;
}

int cli_stderr_is_tty(void)
{
    return isatty(STDERR_FILENO) == 1;
}
