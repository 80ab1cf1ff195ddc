/* security.rate_limit's shared sliding windows (core/http/rate_limit.h). */
#include "http/rate_limit.h"

#include <stdio.h>
#include <string.h>

#include "unit.h"

static int admit(sp_rate_table *t, const char *key, uint64_t limit, uint64_t now, uint64_t *retry)
{
    return sp_rate_admit(t, key, strlen(key), limit, 60000, now, retry);
}

TEST(allows_the_limit_then_refuses_with_retry_after)
{
    sp_rate_table *t = sp_rate_table_new();
    uint64_t retry = 0, now = 1000000;
    for (int i = 0; i < 5; i++)
        CHECK(admit(t, "r\nip\n1.2.3.4", 5, now + (uint64_t)i, &retry) == 0);
    CHECK(admit(t, "r\nip\n1.2.3.4", 5, now + 10, &retry) == 1);
    CHECK(retry > 0 && retry <= 60000);
    /* other keys have their own window */
    CHECK(admit(t, "r\nip\n1.2.3.5", 5, now + 10, &retry) == 0);
    sp_rate_table_free(t);
}

TEST(the_window_slides)
{
    sp_rate_table *t = sp_rate_table_new();
    uint64_t retry = 0, start = 6000000; /* a window boundary (multiple of 60000) */
    for (int i = 0; i < 10; i++)
        CHECK(admit(t, "k", 10, start + 59000, &retry) == 0);
    CHECK(admit(t, "k", 10, start + 59500, &retry) == 1);
    /* just after the boundary almost all of the previous window still counts */
    CHECK(admit(t, "k", 10, start + 60000 + 1000, &retry) == 1);
    /* half a window later, half of it does: 5 more fit */
    int ok = 0;
    for (int i = 0; i < 10; i++)
        ok += admit(t, "k", 10, start + 60000 + 30000, &retry) == 0;
    CHECK_EQ_INT(ok, 5);
    /* two windows later, everything is forgotten */
    ok = 0;
    for (int i = 0; i < 12; i++)
        ok += admit(t, "k", 10, start + 180000, &retry) == 0;
    CHECK_EQ_INT(ok, 10);
    sp_rate_table_free(t);
}

TEST(many_keys_are_swept_not_kept)
{
    sp_rate_table *t = sp_rate_table_new();
    char key[32];
    uint64_t retry;
    for (int i = 0; i < 120000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK(admit(t, key, 1, (uint64_t)i * 10, &retry) == 0);
    }
    sp_rate_table_free(t); /* ASan: nothing leaked or double-freed by the sweeps */
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(allows_the_limit_then_refuses_with_retry_after), UNIT(the_window_slides),
        UNIT(many_keys_are_swept_not_kept),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
