/* The log rate limiter (core/util/log.c): however many threads log at once, no more
 * than SP_LOG_BURST lines plus SP_LOG_RATE a second get through, and every dropped line
 * is counted in a "N log lines suppressed" report. */
#include "util/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "unit.h"

#define FLOOD_THREADS 4
#define FLOOD_MS 400                  /* how long the threads log */
#define FLOOD_MAX_CALLS 5000000       /* per thread: the loop is bounded in count too */

static atomic_bool flood_stop;
static atomic_ulong flood_calls;

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void *flood(void *arg)
{
    long id = (long)arg;
    unsigned long n = 0;
    while (!atomic_load(&flood_stop) && n < FLOOD_MAX_CALLS) {
        sp_warn("flood thread=%ld n=%lu", id, n);
        n++;
    }
    atomic_fetch_add(&flood_calls, n);
    return NULL;
}

typedef struct {
    unsigned long flood_lines, last_lines, reports;
    unsigned long long suppressed;    /* the sum of the reported counts */
} log_tally;

static void tally(FILE *f, log_tally *t)
{
    memset(t, 0, sizeof *t);
    char line[512];
    rewind(f);
    while (fgets(line, sizeof line, f)) {
        unsigned long long n;
        if (strstr(line, " flood thread="))
            t->flood_lines++;
        else if (strstr(line, " the last line"))
            t->last_lines++;
        else if (sscanf(line, "%*s %*s %llu log lines suppressed (rate limit)", &n) == 1) {
            t->reports++;
            t->suppressed += n;
        }
    }
}

TEST(threads_logging_at_once_stay_within_the_rate)
{
    FILE *out = tmpfile();
    REQUIRE(out != NULL);
    fflush(stderr);
    int saved_stderr = dup(STDERR_FILENO);
    REQUIRE(saved_stderr >= 0);
    REQUIRE(dup2(fileno(out), STDERR_FILENO) == STDERR_FILENO);

    pthread_t threads[FLOOD_THREADS];
    int started = 0;
    double t0 = now_seconds();
    for (long i = 0; i < FLOOD_THREADS; i++)
        started += pthread_create(&threads[i], NULL, flood, (void *)i) == 0;
    sleep_ms(FLOOD_MS);
    atomic_store(&flood_stop, true);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    /* 2 / SP_LOG_RATE seconds without logging earn a token: this line passes and reports
     * what was dropped since the last line that passed */
    sleep_ms(2 * 1000 / SP_LOG_RATE + 1);
    sp_warn("the last line");
    double elapsed = now_seconds() - t0; /* every line was taken within it */

    dup2(saved_stderr, STDERR_FILENO); /* the checks below may print */
    close(saved_stderr);
    REQUIRE(started == FLOOD_THREADS);
    log_tally t;
    tally(out, &t);
    fclose(out);

    unsigned long calls = atomic_load(&flood_calls);
    double allowed = SP_LOG_BURST + SP_LOG_RATE * elapsed + 2; /* 2: rounding */
    fprintf(stderr, "    %lu calls in %.3f s: %lu lines written (at most %.0f), %lu reports of "
                    "%llu suppressed\n", calls, elapsed, t.flood_lines + t.last_lines, allowed,
            t.reports, t.suppressed);
    CHECK(calls > (unsigned long)allowed);     /* else the limit was never tested */
    CHECK((double)(t.flood_lines + t.last_lines) <= allowed);
    CHECK(t.reports >= 1);
    CHECK_EQ_INT(t.last_lines, 1);
    /* every call is either written or counted in a report */
    CHECK_EQ_INT(t.flood_lines + t.suppressed, calls);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(threads_logging_at_once_stay_within_the_rate),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
