/* glob: the glob patterns SmartProxy writes for domains and client addresses (minimatch
 * style, where '.' is an ordinary character), pure and bounded.
 *
 *   *        any run of characters, dots included, possibly empty ("192.168.*")
 *   ?        exactly one character other than '.' ("10.?.?.1")
 *   {a,b,c}  one of the alternatives, which hold no braces themselves
 *            ("{api,www}.example.com"); at most SP_GLOB_MAX_ALTERNATIVES spellings in all
 *
 * Matching is linear in the text for each spelling (the classic backtrack-to-last-star
 * walk, never exponential), ASCII case-insensitive. The callers check which characters
 * may appear (domain_pattern.c, ip_pattern.c). */
#ifndef SP_PATTERN_GLOB_H
#define SP_PATTERN_GLOB_H

#include <stdbool.h>
#include <stddef.h>

#define SP_GLOB_MAX_LEN 253
#define SP_GLOB_MAX_ALTERNATIVES 64

/* True when p[0..n) has '*', '?' or '{'. */
bool sp_glob_has_magic(const char *p, size_t n);

/* NULL when p[0..n) is a well-formed glob (balanced, unnested braces holding at least
 * one ',' and no empty alternative, no empty pattern, at most SP_GLOB_MAX_LEN characters and
 * SP_GLOB_MAX_ALTERNATIVES spellings), else a short static reason. */
const char *sp_glob_check(const char *p, size_t n);

/* Whether text t[0..tn) matches the checked glob p[0..pn). */
bool sp_glob_match(const char *p, size_t pn, const char *t, size_t tn);

/* The fewest literal characters of any spelling: how specific the glob is. */
size_t sp_glob_literal_len(const char *p, size_t n);

#endif
