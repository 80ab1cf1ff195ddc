/* The request body timeout rule (core/http/body_clock.h): total time and minimum rate
 * together, held time not counted, 0 disabling either. */
#include "http/body_clock.h"

#include "unit.h"

TEST(not_running_held_or_disabled_never_times_out)
{
    sp_body_clock k = {0};
    CHECK(sp_body_clock_due(&k, 0, 300, 1024) == UINT64_MAX);
    sp_body_clock_start(&k, 1000);
    CHECK(sp_body_clock_due(&k, 0, 0, 1024) == UINT64_MAX); /* timeouts.request_body = 0 */
    sp_body_clock_hold(&k, true, 1100);
    CHECK(sp_body_clock_due(&k, 0, 300, 1024) == UINT64_MAX);
    sp_body_clock_stop(&k);
    CHECK(sp_body_clock_due(&k, 0, 300, 1024) == UINT64_MAX);
}

TEST(slow_bodies_time_out_at_the_limit_fast_ones_once_below_the_rate)
{
    sp_body_clock k;
    sp_body_clock_start(&k, 1000);
    CHECK_EQ_INT(sp_body_clock_due(&k, 0, 300, 1024), 1300);      /* nothing came */
    CHECK_EQ_INT(sp_body_clock_due(&k, 100, 300, 1024), 1300);    /* 100 B: rate < 1024 by then */
    /* 10240 B: 1024 B/s until 10 s, below it after: due at 10.001 s */
    CHECK_EQ_INT(sp_body_clock_due(&k, 10240, 300, 1024), 1000 + 10001);
    CHECK_EQ_INT(sp_body_clock_due(&k, 10240, 60000, 1024), 1000 + 60000);
    CHECK_EQ_INT(sp_body_clock_due(&k, 1u << 30, 300, 0), 1300); /* no minimum rate: at the limit */
    CHECK(sp_body_clock_due(&k, UINT64_MAX / 100, 300, 1) == UINT64_MAX);
}

TEST(held_time_is_not_counted)
{
    sp_body_clock k;
    sp_body_clock_start(&k, 1000);
    sp_body_clock_hold(&k, true, 1100);
    sp_body_clock_hold(&k, true, 1150); /* no change */
    CHECK_EQ_INT(sp_body_clock_elapsed(&k, 1500), 100);
    sp_body_clock_hold(&k, false, 1600);
    CHECK_EQ_INT(sp_body_clock_due(&k, 0, 300, 1024), 1300 + 500);
    CHECK_EQ_INT(sp_body_clock_elapsed(&k, 1700), 200);
    sp_body_clock_hold(&k, false, 1800); /* no change */
    CHECK_EQ_INT(sp_body_clock_elapsed(&k, 1800), 300);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(not_running_held_or_disabled_never_times_out),
        UNIT(slow_bodies_time_out_at_the_limit_fast_ones_once_below_the_rate),
        UNIT(held_time_is_not_counted),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
