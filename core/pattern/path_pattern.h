// path_pattern: the `match.path` patterns of SPEC 4, and the path normalisation that
// routing matches them against.
//
//   "/users"          exactly that path
//   "/users/:id"      one non-empty segment, captured as the parameter `id`
//   "/static/*"       the prefix "/static" itself, "/static/" and everything below it
//   "*" or "/*"       any path
//   "/users/:id/*"    both: parameters, then any rest
//
// Paths and patterns are compared segment by segment ("/a/b/" is "a", "b", ""), so
// "/api/*" matches "/api", "/api/" and "/api/v1/x" but not "/apix"; "/users" does not
// match "/users/" (write "/users/*" for both, or the two routes). A parameter matches
// one whole non-empty segment: "/users/:id" matches "/users/7" but neither "/users/"
// nor "/users/7/x". Every path must start with '/' (also for "*").
//
// Patterns are strict, so that a route that can never match is a configuration error:
// besides the errors listed at sp_path_pattern_compile, "//" (an empty segment), "." or
// ".." segments (also as %2e), '*' inside a segment ("/static*"), a parameter named
// twice or with characters other than letters, digits and '_', bad escapes and '?' or
// '#' are refused. Literal segments are normalised like paths when compiled ("/%7euser"
// is "/~user", "/caf%c3%a9" is "/caf%C3%A9"), and bytes that are not path characters
// (space, non-ASCII, '[', ...) are percent-encoded. In a path such a byte sent raw (the
// HTTP parser lets UTF-8 through) equals its escape, so "/café" and "/caf%C3%A9" each
// match both "/caf%C3%A9" and a raw "/café" request.
//
// Specificity, for ordering routes of equal priority that match the same path
// (L = literal segments, capped at 255, the empty one of "/" or "/users/" counted;
// P = parameters; W = 1 for a trailing "*"):
//     no parameter and no "*" (an exact path):  16384 + L
//     otherwise:                                L * 64 + P * 2 + (1 - W)
// so exact > more literal segments > more parameters > wildcard: for "/users/7",
// "/users/7" (16386) > "/users/:id" (67) > "/users/:id/*" (66) > "/users/*" (64) >
// "/:a/:b" (5) > "/*" and "*" (0). The largest non-exact value is 16353.
//
// Matching is case-sensitive and works on the normalised path (sp_path_normalize): a
// request for "/static/../admin" is matched as "/admin", so a route cannot be escaped with
// dot segments or percent-encoded dots. The request is forwarded as the client sent it
// (unless rewrite_path changes it). Pure: no I/O, no allocation while matching.
#ifndef SP_PATTERN_PATH_PATTERN_H
#define SP_PATTERN_PATH_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#define SP_PATH_MAX_PARAMS 16

typedef struct sp_path_pattern {
    char *text;             /* the pattern as written (owned) */
    /* compiled form: private to path_pattern.c */
    struct sp_path_segment *segs;
    size_t nsegs;
    bool wildcard;          // ends in "/*" (or is "*")
    int specificity;        /* larger = more specific; for ordering equal-priority routes */
} sp_path_pattern;

typedef struct sp_path_param {
    const char *name, *value;   /* point into the pattern and the matched path */
    size_t name_len, value_len;
} sp_path_param;

/* Compiles `text`. Returns 0, or -1 with a message ("expected a path starting with /",
 * "empty parameter name", "'*' only as the last segment", "more than 16 parameters", and
 * the others above) in err (err may be NULL; the message is cut to errlen). On failure
 * *out is zeroed, and sp_path_pattern_free on it is harmless. */
int sp_path_pattern_compile(const char *text, sp_path_pattern *out, char *err, size_t errlen);
void sp_path_pattern_free(sp_path_pattern *p);

/* True when the normalised `path` (no query) matches; the captured parameters are written
 * to params (up to SP_PATH_MAX_PARAMS, in pattern order) and their number to *nparams
 * (either may be NULL; *nparams is 0 when there is no match, and params may then have
 * been written). The rest matched by "*" is not captured. */
bool sp_path_pattern_match(const sp_path_pattern *p, const char *path, size_t len,
                           sp_path_param *params, size_t *nparams);

/* Normalises a request path (origin-form, the part before '?') for matching: decodes
 * percent-encoded unreserved characters (ALPHA DIGIT - . _ ~), upper-cases the hex of the
 * other escapes, merges repeated slashes, and removes "." and ".." segments (RFC 3986
 * 5.2.4; encoded dots count: "/a/%2e%2E" is "/"). A trailing slash is kept ("/a/./" is
 * "/a/", "/a/b/.." is "/a/"). Writes at most `len` bytes to out (out may not alias in)
 * and returns the new length, or -1 when the path is unusable: not starting with '/', a
 * bad escape ("%zz", "%0"), an encoded NUL (or a raw one), or ".." above the root ("/..",
 * "/a/../.."). The result starts with '/', holds no "//", "." or ".." segment, and
 * normalising it again changes nothing. Other bytes (controls, non-ASCII, '\') are left
 * as they are: the HTTP parser has refused what a request may not carry. */
long sp_path_normalize(const char *in, size_t len, char *out);

#endif
