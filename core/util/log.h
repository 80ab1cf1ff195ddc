/* log: leveled, thread-safe log lines on stderr, as text or JSON.
 *
 * Every line is formatted into one buffer and written with a single write(2), so lines
 * from several workers never interleave. Errors are logged once, where they are handled;
 * the caller passes the context (route, connection) in the message. */
#ifndef SP_UTIL_LOG_H
#define SP_UTIL_LOG_H

#include <stdbool.h>

/* The rate limit on log lines (not access lines), shared by every thread: a flood of bad
 * clients must not fill the disk. At most SP_LOG_BURST lines at once and SP_LOG_RATE a
 * second on average; what is dropped is counted and reported with the next line that
 * passes ("N log lines suppressed (rate limit)"). */
#define SP_LOG_BURST 1000
#define SP_LOG_RATE 200

typedef enum { SP_LOG_ERROR = 0, SP_LOG_WARN, SP_LOG_INFO, SP_LOG_DEBUG } sp_log_level;

void sp_log_set_level(sp_log_level level);
void sp_log_set_json(bool json);
bool sp_log_enabled(sp_log_level level);
/* Parses "error" | "warn" | "info" | "debug"; returns -1 for anything else. */
int sp_log_level_parse(const char *s);
const char *sp_log_level_name(sp_log_level level);

void sp_log(sp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool sp_log_json(void);
/* The current time as RFC 3339 UTC with milliseconds ("2026-11-29T10:00:00.123Z"). */
void sp_log_time(char out[32]);

#define sp_error(...) sp_log(SP_LOG_ERROR, __VA_ARGS__)
#define sp_warn(...)  sp_log(SP_LOG_WARN, __VA_ARGS__)
#define sp_info(...)  do { if (sp_log_enabled(SP_LOG_INFO)) sp_log(SP_LOG_INFO, __VA_ARGS__); } while (0)
#define sp_debug(...) do { if (sp_log_enabled(SP_LOG_DEBUG)) sp_log(SP_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
