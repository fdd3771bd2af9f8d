/*
 * quote.h: untrusted bytes made safe to put in one line of text.
 *
 * The engine's error sentences and the collector's log lines both quote
 * bytes that came from a client (a profile's strings, a request target), so
 * both use this one function: nothing a client sends can break a line,
 * forge a quote or make a message unbounded. No state; any thread.
 */
#ifndef COMMON_QUOTE_H
#define COMMON_QUOTE_H

#include <stddef.h>

/*
 * Copies at most max bytes of s (length len) into out (size outsz) as
 * printable ASCII, with quotes, backslashes, control and non-ASCII bytes
 * written as \xNN and a trailing "..." when s was cut. Always NUL-terminates
 * (when outsz > 0); returns out.
 */
char *quote_bytes(char *out, size_t outsz, const char *s, size_t len, size_t max);

#endif /* COMMON_QUOTE_H */
