#include "util/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "util/json.h"

static _Atomic int log_level = SP_LOG_INFO;
static _Atomic bool log_json = false;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER;
static double tokens = SP_LOG_BURST;
static uint64_t last_refill_ns;
static uint64_t suppressed;

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* True when a line may be written now; *dropped gets the count to report. The clock is
 * read under the lock, so no call sees a time before the last refill; one that is not
 * later adds nothing (an unsigned difference must never underflow into a full bucket). */
static bool take_token(uint64_t *dropped)
{
    pthread_mutex_lock(&limit_lock);
    uint64_t now = monotonic_ns();
    if (!last_refill_ns) {
        last_refill_ns = now;
    } else if (now > last_refill_ns) {
        tokens += (double)(now - last_refill_ns) * SP_LOG_RATE / 1e9;
        if (tokens > SP_LOG_BURST)
            tokens = SP_LOG_BURST;
        last_refill_ns = now;
    }
    bool ok = tokens >= 1;
    if (ok) {
        tokens -= 1;
        *dropped = suppressed;
        suppressed = 0;
    } else {
        suppressed++;
    }
    pthread_mutex_unlock(&limit_lock);
    return ok;
}

void sp_log_set_level(sp_log_level level) { atomic_store(&log_level, (int)level); }
void sp_log_set_json(bool json) { atomic_store(&log_json, json); }
bool sp_log_enabled(sp_log_level level) { return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed); }
const char *sp_log_level_name(sp_log_level level) { return level_names[level]; }

int sp_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

bool sp_log_json(void) { return atomic_load_explicit(&log_json, memory_order_relaxed); }

void sp_log_time(char out[32])
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    size_t tl = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + tl, 32 - tl, ".%03dZ", (int)(tv.tv_usec / 1000));
}

void sp_log(sp_log_level level, const char *fmt, ...)
{
    if (!sp_log_enabled(level))
        return;
    uint64_t dropped = 0;
    if (!take_token(&dropped))
        return;
    /* long enough for a Lua traceback; longer messages are cut, marked with "..." */
    char msg[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof msg)
        memcpy(msg + sizeof msg - 4, "...", 4);

    char ts[32];
    sp_log_time(ts);

    sp_buf b;
    sp_buf_init(&b);
    if (dropped)
        sp_buf_appendf(&b, atomic_load_explicit(&log_json, memory_order_relaxed)
                               ? "{\"time\":\"%s\",\"level\":\"warn\",\"msg\":\"%llu log lines suppressed (rate limit)\"}\n"
                               : "%s warn  %llu log lines suppressed (rate limit)\n",
                       ts, (unsigned long long)dropped);
    if (atomic_load_explicit(&log_json, memory_order_relaxed)) {
        sp_json j;
        sp_json_init(&j, &b);
        sp_json_obj_open(&j);
        sp_json_key(&j, "time");
        sp_json_str(&j, ts);
        sp_json_key(&j, "level");
        sp_json_str(&j, level_names[level]);
        sp_json_key(&j, "msg");
        sp_json_str(&j, msg);
        sp_json_obj_close(&j);
        sp_buf_append(&b, "\n", 1);
    } else {
        sp_buf_appendf(&b, "%s %-5s %s\n", ts, level_names[level], msg);
    }
    if (!b.oom) {
        ssize_t w = write(STDERR_FILENO, b.data, b.len);
        (void)w; /* nowhere left to report a failed log write */
    }
    sp_buf_free(&b);
}
