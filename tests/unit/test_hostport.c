/* The destination formatter (core/util/hostport.c): names and IPv4 as they are, IPv6
 * literals in brackets, the port after a colon or left out. */
#include "util/hostport.h"

#include "unit.h"

TEST(ipv4_and_names_go_as_they_are)
{
    char out[64];
    CHECK_EQ_INT(sp_hostport_format(out, sizeof out, "10.0.0.5", "8080"), 13);
    CHECK_STR_EQ(out, "10.0.0.5:8080");
    sp_hostport_format(out, sizeof out, "backend.internal", "443");
    CHECK_STR_EQ(out, "backend.internal:443");
}

TEST(ipv6_literals_go_in_brackets)
{
    char out[64];
    sp_hostport_format(out, sizeof out, "::1", "8080");
    CHECK_STR_EQ(out, "[::1]:8080");
    sp_hostport_format(out, sizeof out, "2001:db8::7", "80");
    CHECK_STR_EQ(out, "[2001:db8::7]:80");
}

TEST(without_a_port)
{
    char out[64];
    sp_hostport_format(out, sizeof out, "example.com", NULL);
    CHECK_STR_EQ(out, "example.com");
    sp_hostport_format(out, sizeof out, "fe80::1", NULL);
    CHECK_STR_EQ(out, "[fe80::1]");
}

TEST(truncates_to_the_buffer)
{
    char out[8];
    CHECK_EQ_INT(sp_hostport_format(out, sizeof out, "example.com", "80"), 14);
    CHECK_STR_EQ(out, "example");
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(ipv4_and_names_go_as_they_are),
        UNIT(ipv6_literals_go_in_brackets),
        UNIT(without_a_port),
        UNIT(truncates_to_the_buffer),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
