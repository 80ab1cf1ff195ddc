#include "admin/dashboard.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* Generated at build time from dashboard.html (cmake/embed_file.cmake). */
extern const unsigned char sp_dashboard_html[];
extern const size_t sp_dashboard_html_len;

/* Appends " 'sha256-...'" for the content of each <open>...</close> element of the
 * page; returns the number found, or -1 when out of room. */
static int hash_elements(const char *page, const char *open, const char *close, char *out, size_t cap)
{
    int found = 0;
    const char *p = page;
    while ((p = strstr(p, open)) != NULL) {
        p += strlen(open);
        const char *end = strstr(p, close);
        if (!end)
            return -1;
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
        if (EVP_Digest(p, (size_t)(end - p), md, &mdlen, EVP_sha256(), NULL) != 1)
            return -1;
        EVP_EncodeBlock(b64, md, (int)mdlen);
        size_t used = strlen(out);
        int n = snprintf(out + used, cap - used, " 'sha256-%s'", b64);
        if (n < 0 || (size_t)n >= cap - used)
            return -1;
        found++;
        p = end + strlen(close);
    }
    return found;
}

int sp_dashboard_init(sp_dashboard *d, char *err, size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->body = (const char *)sp_dashboard_html;
    d->len = sp_dashboard_html_len;

    char scripts[256] = "", styles[256] = "";
    if (hash_elements(d->body, "<script>", "</script>", scripts, sizeof scripts) < 0 ||
        hash_elements(d->body, "<style>", "</style>", styles, sizeof styles) < 0) {
        snprintf(err, errlen, "dashboard page: cannot hash its inline elements");
        return -1;
    }
    /* Nothing but its own code, and requests back to where it came from. */
    snprintf(d->csp, sizeof d->csp,
             "default-src 'none'; script-src%s; style-src%s; connect-src 'self'; img-src data:; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             scripts, styles);

    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (EVP_Digest(d->body, d->len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "dashboard page: cannot hash it");
        return -1;
    }
    snprintf(d->etag, sizeof d->etag, "\"%02x%02x%02x%02x%02x%02x%02x%02x\"", md[0], md[1], md[2], md[3],
             md[4], md[5], md[6], md[7]);
    return 0;
}
