/* The dashboard page as the binary holds it (core/admin/dashboard.h): the bytes of
 * core/admin/dashboard.html, and a policy that allows its inline code by hash only. */
#include "admin/dashboard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

TEST(embeds_the_source_file_byte_for_byte)
{
    sp_dashboard d;
    char err[128];
    REQUIRE(sp_dashboard_init(&d, err, sizeof err) == 0);
    FILE *f = fopen(SP_DASHBOARD_SOURCE, "rb");
    REQUIRE(f != NULL);
    char *want = malloc(d.len + 2);
    size_t got = fread(want, 1, d.len + 1, f); /* one more: the file is not longer */
    fclose(f);
    CHECK_EQ_INT((long)got, (long)d.len);
    CHECK(memcmp(want, d.body, d.len) == 0);
    CHECK(d.body[d.len] == 0);
    free(want);
}

TEST(policy_allows_one_script_and_one_style_by_hash)
{
    sp_dashboard d;
    char err[128];
    REQUIRE(sp_dashboard_init(&d, err, sizeof err) == 0);
    CHECK(strncmp(d.csp, "default-src 'none'; ", 20) == 0);
    CHECK(strstr(d.csp, "script-src 'sha256-") != NULL);
    CHECK(strstr(d.csp, "style-src 'sha256-") != NULL);
    CHECK_EQ_INT((long)count(d.csp, "'sha256-"), 2);
    CHECK(strstr(d.csp, "unsafe") == NULL);
    CHECK(strstr(d.csp, "connect-src 'self'") != NULL);
    /* a quoted 64-bit hex digest */
    CHECK_EQ_INT((long)strlen(d.etag), 18);
    CHECK(d.etag[0] == '"' && d.etag[17] == '"');
    CHECK(strspn(d.etag + 1, "0123456789abcdef") == 16);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(embeds_the_source_file_byte_for_byte),
        UNIT(policy_allows_one_script_and_one_style_by_hash),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
