/* The per-client-address table (core/net/ip_table.c): live limits, rate windows, top N. */
#include "net/ip_table.h"

#include "unit.h"

static sp_ip ip(const char *s)
{
    sp_ip out;
    sp_ip_parse(s, &out);
    return out;
}

TEST(live_connection_limit_per_address)
{
    sp_ip_table *t = sp_ip_table_new();
    REQUIRE(t);
    sp_ip a = ip("10.0.0.1"), b = ip("::1");
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 2, 0, 0), 0);
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 2, 0, 0), 0);
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 2, 0, 0), 1); /* third is refused */
    CHECK_EQ_INT(sp_ip_table_admit(t, &b, 2, 0, 0), 0); /* other addresses are independent */
    sp_ip_table_release(t, &a, 10);
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 2, 0, 20), 0);
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 0, 20), 0); /* 0 = no limit */
    sp_ip_table_free(t);
}

TEST(rate_window_slides)
{
    sp_ip_table *t = sp_ip_table_new();
    REQUIRE(t);
    sp_ip a = ip("192.168.1.7");
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 3, 1000 + i), 0);
        sp_ip_table_release(t, &a, 1000 + i);
    }
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 3, 2000), 2);       /* 3 in the last minute */
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 3, 1000 + 60000), 2); /* previous window still weighs */
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 3, 1000 + 100000), 0); /* most of it has slid out */
    CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 3, 1000 + 300000), 0); /* long idle: a fresh window */
    sp_ip_table_free(t);
}

TEST(top_lists_the_busiest_and_sweep_forgets_idle)
{
    sp_ip_table *t = sp_ip_table_new();
    REQUIRE(t);
    const char *addrs[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k <= i; k++) {
            sp_ip a = ip(addrs[i]);
            CHECK_EQ_INT(sp_ip_table_admit(t, &a, 0, 0, 0), 0);
        }
    sp_ip_count top[3];
    REQUIRE(sp_ip_table_top(t, top, 3) == 3);
    char s[SP_IP_STRLEN];
    sp_ip_format(&top[0].ip, s, sizeof s);
    CHECK_STR_EQ(s, "10.0.0.4");
    CHECK_EQ_INT(top[0].active, 4);
    CHECK_EQ_INT(top[2].active, 2);
    for (int i = 0; i < 4; i++)
        for (int k = 0; k <= i; k++) {
            sp_ip a = ip(addrs[i]);
            sp_ip_table_release(t, &a, 0);
        }
    sp_ip_table_sweep(t, 200000);
    CHECK_EQ_INT(sp_ip_table_top(t, top, 3), 0);
    sp_ip_table_free(t);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(live_connection_limit_per_address),
        UNIT(rate_window_slides),
        UNIT(top_lists_the_busiest_and_sweep_forgets_idle),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
