/* One parameter of a URL query string (core/util/query.c). */
#include "util/query.h"

#include "unit.h"

TEST(finds_the_first_named_parameter)
{
    char v[16];
    CHECK(sp_query_get("tag=edge", "tag", v, sizeof v));
    CHECK_STR_EQ(v, "edge");
    CHECK(sp_query_get("x=1&tag=api&tag=other", "tag", v, sizeof v));
    CHECK_STR_EQ(v, "api");
    CHECK(sp_query_get("tags=no&tag=", "tag", v, sizeof v)); /* "tags" is another name */
    CHECK_STR_EQ(v, "");
    CHECK(sp_query_get("a&tag", "tag", v, sizeof v));
    CHECK_STR_EQ(v, "");
    CHECK(!sp_query_get("tags=x", "tag", v, sizeof v));
    CHECK(!sp_query_get("", "tag", v, sizeof v));
    CHECK(!sp_query_get(NULL, "tag", v, sizeof v));
    CHECK(!sp_query_get("tag=0123456789abcdef", "tag", v, sizeof v)); /* too long for v */
    CHECK(sp_query_get("&&tag=x&&", "tag", v, sizeof v));
    CHECK_STR_EQ(v, "x");
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(finds_the_first_named_parameter),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
