/*
 * log.h: the collector's logging, one line per event on stderr.
 *
 * DESIGN
 * LOG() checks the level before it evaluates its arguments, so a suppressed
 * debug line costs one comparison (Redis serverLog does the same). Lines
 * look like
 *     2024-05-01T12:00:00.123Z info  <message>
 * and are written with one write(2) each, so lines from the loop thread and
 * from start-up code never interleave. Only the loop thread and start-up code
 * log; threadpool workers leave their message in their job instead.
 *
 * Client bytes quoted in a log line go through quote_bytes()
 * (common/quote.h), which truncates and escapes them. Keys are never passed to the logger.
 */
#ifndef COLLECTOR_LOG_H
#define COLLECTOR_LOG_H

#include <stddef.h>

enum {
    LOG_ERROR = 0,
    LOG_WARN = 1,
    LOG_INFO = 2,
    LOG_DEBUG = 3,
};

/* The current level; lines above it are dropped. Set once at start-up. */
extern int log_level;

/* Parses "error", "warn", "info" or "debug"; returns the level or -1. */
int log_parse_level(const char *s);
const char *log_level_name(int level);

/* Formats and writes one line. Use LOG() rather than calling this. */
void log__write(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define LOG(level, ...)                                                        \
    do {                                                                       \
        if ((level) <= log_level)                                              \
            log__write((level), __VA_ARGS__);                                  \
    } while (0)

#endif /* COLLECTOR_LOG_H */
