/* path_pattern: the `match.path` patterns of SPEC 4, and the path normalisation that
 * routing matches them against.
 *
 *   "/users"          exactly that path
 *   "/users/:id"      one non-empty segment, captured as the parameter `id`
 *   "/static/*"       the prefix "/static" itself, "/static/" and everything below it
 *   "*" or "/*"       any path
 *   "/users/:id/*"    both: parameters, then any rest
 *
 * Matching is case-sensitive and works on the normalised path (sp_path_normalize): a
 * request for "/static/../admin" is matched as "/admin", so a route cannot be escaped with
 * dot segments or percent-encoded dots. The request is forwarded as the client sent it
 * (unless rewrite_path changes it). Pure: no I/O, no allocation while matching. */
#ifndef SP_HTTP_PATH_PATTERN_H
#define SP_HTTP_PATH_PATTERN_H

#include <stdbool.h>
#include <stddef.h>

#define SP_PATH_MAX_PARAMS 16

typedef struct sp_path_pattern {
    char *text;             /* the pattern as written (owned) */
    /* compiled form: private to path_pattern.c */
    struct sp_path_segment *segs;
    size_t nsegs;
    bool wildcard;          /* ends in "/*" (or is "*") */
    int specificity;        /* larger = more specific; for ordering equal-priority routes */
} sp_path_pattern;

typedef struct sp_path_param {
    const char *name, *value;   /* point into the pattern and the matched path */
    size_t name_len, value_len;
} sp_path_param;

/* Compiles `text`. Returns 0, or -1 with a message ("expected a path starting with /",
 * "empty parameter name", "'*' only as the last segment", "more than 16 parameters") in err. */
int sp_path_pattern_compile(const char *text, sp_path_pattern *out, char *err, size_t errlen);
void sp_path_pattern_free(sp_path_pattern *p);

/* True when the normalised `path` (no query) matches; the captured parameters are written
 * to params (up to SP_PATH_MAX_PARAMS) and their number to *nparams (either may be NULL). */
bool sp_path_pattern_match(const sp_path_pattern *p, const char *path, size_t len,
                           sp_path_param *params, size_t *nparams);

/* Normalises a request path (origin-form, the part before '?') for matching: decodes
 * percent-encoded unreserved characters (ALPHA DIGIT - . _ ~), upper-cases the hex of the
 * other escapes, merges repeated slashes, and removes "." and ".." segments (RFC 3986
 * 5.2.4). Writes at most `len` bytes to out (out may not alias in) and returns the new
 * length, or -1 when the path is unusable: not starting with '/', a bad escape ("%zz",
 * "%0"), an encoded NUL, or ".." above the root. */
long sp_path_normalize(const char *in, size_t len, char *out);

#endif
