/*
 * A minimal unit-test harness, header only; one test binary per test_*.c.
 *
 *     TEST(parses_v4) {
 *         sp_ip ip;
 *         REQUIRE(sp_ip_parse("1.2.3.4", &ip) == 0);   // stops this test on failure
 *         CHECK(sp_ip_is_v4(&ip));                     // records and carries on
 *     }
 *     int main(int argc, char **argv) {
 *         static const unit_test tests[] = { UNIT(parses_v4) };
 *         return unit_main(tests, UNIT_COUNT(tests), argc, argv);
 *     }
 *
 * Tests are listed by hand; a test left out of the list is an unused static function,
 * which -Wall -Werror turns into a build error. A failed check prints file:line and the
 * expression (with both values for the _EQ forms). The binary ends with exactly one
 * line, "N passed, N failed", counting test cases, and exits non-zero when a test
 * failed or none ran.
 * Arguments, when given, are names of the tests to run.
 */
#ifndef SP_TESTS_UNIT_H
#define SP_TESTS_UNIT_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct unit_test {
    const char *name;
    void (*fn)(void);
} unit_test;

/* The one piece of state: whether the running test has failed. A test binary is a
 * single translation unit, so a static in the header is that binary's own. */
static bool unit_failed_;

static inline void unit_fail_(const char *file, int line, const char *what)
{
    unit_failed_ = true;
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
}

#define TEST(name) static void name(void)
#define UNIT(name) { #name, name }
#define UNIT_COUNT(tests) (sizeof(tests) / sizeof((tests)[0]))

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond))                                                                    \
            unit_fail_(__FILE__, __LINE__, #cond);                                      \
    } while (0)

/* Like CHECK, but ends the test: for checks later code depends on. */
#define REQUIRE(cond)                                                                   \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            unit_fail_(__FILE__, __LINE__, #cond);                                      \
            return;                                                                     \
        }                                                                               \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                   \
        if (unit_a_ != unit_b_) {                                                       \
            unit_fail_(__FILE__, __LINE__, #a " == " #b);                               \
            fprintf(stderr, "    got %lld, expected %lld\n", unit_a_, unit_b_);         \
        }                                                                               \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                              \
    do {                                                                                \
        const char *unit_a_ = (a), *unit_b_ = (b);                                      \
        if (unit_a_ == NULL || unit_b_ == NULL ? unit_a_ != unit_b_                     \
                                               : strcmp(unit_a_, unit_b_) != 0) {       \
            unit_fail_(__FILE__, __LINE__, #a " == " #b);                               \
            fprintf(stderr, "    got      \"%s\"\n    expected \"%s\"\n",               \
                    unit_a_ ? unit_a_ : "(null)", unit_b_ ? unit_b_ : "(null)");        \
        }                                                                               \
    } while (0)

static inline bool unit_selected_(const char *name, int argc, char **argv)
{
    if (argc <= 1)
        return true;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static inline int unit_main(const unit_test *tests, size_t n, int argc, char **argv)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!unit_selected_(tests[i].name, argc, argv))
            continue;
        unit_failed_ = false;
        tests[i].fn();
        if (unit_failed_) {
            failed++;
            fprintf(stderr, "FAIL %s\n", tests[i].name);
        } else {
            passed++;
        }
    }
    fflush(stderr);
    printf("%d passed, %d failed\n", passed, failed);
    return failed != 0 || passed == 0;
}

#endif
