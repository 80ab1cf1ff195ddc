/* {variable} templates (core/pattern/template.h). */
#include "pattern/template.h"

#include <stdlib.h>
#include <string.h>

#include "unit.h"

/* ---- helpers ---------------------------------------------------------------------- */

static const char *const NAMES[SP_TV_COUNT] = {
    "client_ip", "client_port", "domain", "host", "port", "path", "query", "url", "proto",
    "route_name", "connection_id",
};

/* A request's values: every variable set. */
static sp_template_values sample(void)
{
    static const char *const v[SP_TV_COUNT] = {
        [SP_TV_CLIENT_IP] = "192.0.2.7",  [SP_TV_CLIENT_PORT] = "51234",
        [SP_TV_DOMAIN] = "example.com",   [SP_TV_HOST] = "Example.COM:8443",
        [SP_TV_PORT] = "8443",            [SP_TV_PATH] = "/a/b",
        [SP_TV_QUERY] = "x=1&y=2",        [SP_TV_URL] = "/a/b?x=1&y=2",
        [SP_TV_PROTO] = "https",          [SP_TV_ROUTE_NAME] = "api",
        [SP_TV_CONNECTION_ID] = "17",
    };
    sp_template_values vals;
    for (int i = 0; i < SP_TV_COUNT; i++) {
        vals.v[i] = v[i];
        vals.len[i] = strlen(v[i]);
    }
    return vals;
}

/* The expansion of text with vals, or "(error: message)". */
static const char *expand(const char *text, const sp_template_values *vals)
{
    static char out[4096];
    sp_template t;
    char err[200];
    if (sp_template_compile(text, &t, err, sizeof err) != 0) {
        snprintf(out, sizeof out, "(error: %s)", err);
        return out;
    }
    sp_buf b;
    sp_buf_init(&b);
    sp_template_expand(&t, vals, &b);
    if (b.oom || b.data == NULL || strlen(b.data) != b.len)
        snprintf(out, sizeof out, "(bad buffer)");
    else
        snprintf(out, sizeof out, "%s", b.data);
    sp_buf_free(&b);
    sp_template_free(&t);
    return out;
}

static unsigned uses_of(const char *text)
{
    sp_template t;
    if (sp_template_compile(text, &t, NULL, 0) != 0)
        return 0xdead;
    unsigned u = t.uses;
    sp_template_free(&t);
    return u;
}

/* ---- variables ------------------------------------------------------------------------ */

TEST(variable_names)
{
    CHECK_EQ_INT(SP_TV_COUNT, 11);
    for (int v = 0; v < SP_TV_COUNT; v++) {
        CHECK_STR_EQ(sp_template_var_name((sp_template_var)v), NAMES[v]);
        CHECK_EQ_INT(sp_template_var_lookup(NAMES[v], strlen(NAMES[v])), v);
    }
    CHECK(sp_template_var_name(SP_TV_COUNT) == NULL);
    CHECK(sp_template_var_name((sp_template_var)-1) == NULL);

    static const char *const unknown[] = {
        "", "x", "Domain", "DOMAIN", "domain ", " domain", "domai", "domainx", "client",
        "client-ip", "clientip", "path_", "url2", "{path}", "scheme", "method", "server_port",
    };
    for (size_t i = 0; i < UNIT_COUNT(unknown); i++)
        CHECK_EQ_INT(sp_template_var_lookup(unknown[i], strlen(unknown[i])), -1);
    /* len is honoured. */
    CHECK_EQ_INT(sp_template_var_lookup("pathname", 4), SP_TV_PATH);
    CHECK_EQ_INT(sp_template_var_lookup("port", 3), -1);
    CHECK_EQ_INT(sp_template_var_lookup(NULL, 0), -1);
}

/* ---- expansion ------------------------------------------------------------------------ */

TEST(expand_every_variable)
{
    sp_template_values vals = sample();
    static const struct { const char *in, *out; } t[] = {
        { "{client_ip}", "192.0.2.7" },
        { "{client_port}", "51234" },
        { "{domain}", "example.com" },
        { "{host}", "Example.COM:8443" },
        { "{port}", "8443" },
        { "{path}", "/a/b" },
        { "{query}", "x=1&y=2" },
        { "{url}", "/a/b?x=1&y=2" },
        { "{proto}", "https" },
        { "{route_name}", "api" },
        { "{connection_id}", "17" },
    };
    for (size_t i = 0; i < UNIT_COUNT(t); i++) {
        CHECK_STR_EQ(expand(t[i].in, &vals), t[i].out);
        CHECK_EQ_INT(uses_of(t[i].in), 1u << i);
    }
}

TEST(expand_mixed)
{
    sp_template_values vals = sample();
    static const struct { const char *in, *out; } t[] = {
        { "", "" },
        { "plain", "plain" },
        { "max-age=31536000; includeSubDomains", "max-age=31536000; includeSubDomains" },
        { "https://{domain}{url}", "https://example.com/a/b?x=1&y=2" },
        { "https://{domain}:{port}{path}?{query}#x", "https://example.com:8443/a/b?x=1&y=2#x" },
        { "/v2{path}", "/v2/a/b" },
        { "{proto}://{host}{url}", "https://Example.COM:8443/a/b?x=1&y=2" },
        { "{client_ip}:{client_port}", "192.0.2.7:51234" },
        { "{domain}{domain}", "example.comexample.com" },
        { "/{domain}/{domain}/", "/example.com/example.com/" },
        { "for={client_ip};proto={proto};by={route_name}#{connection_id}",
          "for=192.0.2.7;proto=https;by=api#17" },
        { "a:b@c%7B%7D", "a:b@c%7B%7D" }, /* escapes are not looked at */
        { "caf\xc3\xa9 {route_name}", "caf\xc3\xa9 api" },
    };
    for (size_t i = 0; i < UNIT_COUNT(t); i++)
        CHECK_STR_EQ(expand(t[i].in, &vals), t[i].out);

    CHECK_EQ_INT(uses_of("plain"), 0);
    CHECK_EQ_INT(uses_of(""), 0);
    CHECK_EQ_INT(uses_of("https://{domain}:{port}{path}?{query}"),
                 1u << SP_TV_DOMAIN | 1u << SP_TV_PORT | 1u << SP_TV_PATH | 1u << SP_TV_QUERY);
    CHECK_EQ_INT(uses_of("{path}{path}"), 1u << SP_TV_PATH);
    CHECK_EQ_INT(uses_of("{client_ip}{client_port}{domain}{host}{port}{path}{query}{url}"
                         "{proto}{route_name}{connection_id}"),
                 (1u << SP_TV_COUNT) - 1);
}

TEST(expand_missing_values)
{
    /* A NULL value is empty, whatever its len; so is every value with vals == NULL. */
    sp_template_values vals;
    memset(&vals, 0, sizeof vals);
    vals.len[SP_TV_DOMAIN] = 99;
    CHECK_STR_EQ(expand("https://{domain}:{port}{url}#x", &vals), "https://:#x");
    CHECK_STR_EQ(expand("https://{domain}:{port}{url}#x", NULL), "https://:#x");
    CHECK_STR_EQ(expand("{path}", NULL), "");

    /* Empty values, and values with bytes a C string would cut. */
    vals = sample();
    vals.v[SP_TV_QUERY] = "";
    vals.len[SP_TV_QUERY] = 0;
    CHECK_STR_EQ(expand("{path}?{query}", &vals), "/a/b?");
    vals.len[SP_TV_PATH] = 2; /* only "/a" */
    CHECK_STR_EQ(expand("[{path}]", &vals), "[/a]");

    sp_template t;
    REQUIRE(sp_template_compile("<{route_name}>", &t, NULL, 0) == 0);
    vals.v[SP_TV_ROUTE_NAME] = "a\0b";
    vals.len[SP_TV_ROUTE_NAME] = 3;
    sp_buf b;
    sp_buf_init(&b);
    sp_template_expand(&t, &vals, &b);
    CHECK_EQ_INT(b.len, 5);
    CHECK(b.data != NULL && memcmp(b.data, "<a\0b>", 5) == 0);

    /* Appends to what the buffer holds. */
    sp_buf_reset(&b);
    sp_buf_append(&b, "X-Route: ", 9);
    sp_template_expand(&t, &vals, &b);
    sp_template_expand(&t, &vals, &b);
    CHECK_EQ_INT(b.len, 19);
    CHECK(memcmp(b.data, "X-Route: <a\0b><a\0b>", 19) == 0);
    sp_buf_free(&b);

    /* An empty expansion still leaves a string. */
    sp_template_free(&t);
    REQUIRE(sp_template_compile("{query}", &t, NULL, 0) == 0);
    sp_buf_init(&b);
    sp_template_expand(&t, NULL, &b);
    CHECK(b.data != NULL && b.len == 0 && b.data[0] == '\0');
    sp_buf_free(&b);
    sp_template_free(&t);
}

TEST(expand_long)
{
    /* 500 variables and 500 literals. */
    static char text[8000], expect[16000];
    size_t o = 0, e = 0;
    for (int i = 0; i < 500; i++) {
        o += (size_t)snprintf(text + o, sizeof text - o, "-{port}");
        e += (size_t)snprintf(expect + e, sizeof expect - e, "-8443");
    }
    sp_template_values vals = sample();
    CHECK_STR_EQ(expand(text, &vals), expect);

    /* A long value. */
    static char big[3000];
    memset(big, 'v', sizeof big - 1);
    vals.v[SP_TV_URL] = big;
    vals.len[SP_TV_URL] = strlen(big);
    const char *got = expand("<{url}>", &vals);
    CHECK_EQ_INT(strlen(got), strlen(big) + 2);
    CHECK(got[0] == '<' && got[strlen(got) - 1] == '>');
}

TEST(oom_is_sticky)
{
    sp_template t;
    REQUIRE(sp_template_compile("a{path}b", &t, NULL, 0) == 0);
    sp_template_values vals = sample();
    sp_buf b;
    sp_buf_init(&b);
    b.oom = true;
    sp_template_expand(&t, &vals, &b);
    CHECK(b.oom);
    CHECK_EQ_INT(b.len, 0);
    sp_buf_free(&b);
    sp_template_free(&t);
}

/* ---- errors --------------------------------------------------------------------------- */

TEST(compile_errors)
{
    static const struct { const char *in, *err; } t[] = {
        { "{nope}", "unknown template variable {nope}" },
        { "/{nope}", "unknown template variable {nope}" },
        { "{}", "unknown template variable {}" },
        { "{ domain }", "unknown template variable { domain }" },
        { "{Domain}", "unknown template variable {Domain}" },
        { "{hostname}", "unknown template variable {hostname}" },
        { "{domain}{x}", "unknown template variable {x}" },
        { "{x}{y}", "unknown template variable {x}" },
        { "{\"a\":1}", "unknown template variable {\"a\":1}" },
        { "{", "unclosed '{' at offset 0" },
        { "{not closed", "unclosed '{' at offset 0" },
        { "abc{domain", "unclosed '{' at offset 3" },
        { "{{domain}}", "unclosed '{' at offset 0" },
        { "{a{domain}", "unclosed '{' at offset 0" },
        { "{domain}{", "unclosed '{' at offset 8" },
        { "}", "'}' without its '{' at offset 0" },
        { "a}b", "'}' without its '{' at offset 1" },
        { "{domain}}", "'}' without its '{' at offset 8" },
        { "x{path}y}", "'}' without its '{' at offset 8" },
    };
    for (size_t i = 0; i < UNIT_COUNT(t); i++) {
        sp_template tpl;
        char err[200] = "";
        memset(&tpl, 0xee, sizeof tpl);
        int rc = sp_template_compile(t[i].in, &tpl, err, sizeof err);
        if (rc != -1 || strcmp(err, t[i].err) != 0) {
            unit_fail_(__FILE__, __LINE__, "compile error");
            fprintf(stderr, "    \"%s\": got %d \"%s\", expected \"%s\"\n", t[i].in, rc, err,
                    t[i].err);
        }
        CHECK(tpl.text == NULL && tpl.parts == NULL && tpl.nparts == 0 && tpl.uses == 0);
        sp_template_free(&tpl); /* harmless */
    }

    sp_template tpl;
    char err[16];
    CHECK_EQ_INT(sp_template_compile(NULL, &tpl, err, sizeof err), -1);
    CHECK(err[0] != '\0');
    CHECK_EQ_INT(sp_template_compile("{x}", &tpl, NULL, 0), -1);
    /* Cut to the buffer. */
    CHECK_EQ_INT(sp_template_compile("{nope}", &tpl, err, 8), -1);
    CHECK_STR_EQ(err, "unknown");
    /* A very long unknown name is cut in the message, not overflowed. */
    static char longname[1000];
    memset(longname, 'z', sizeof longname - 1);
    longname[0] = '{';
    longname[sizeof longname - 2] = '}';
    char big[300];
    CHECK_EQ_INT(sp_template_compile(longname, &tpl, big, sizeof big), -1);
    CHECK(strncmp(big, "unknown template variable {zzz", 30) == 0);
    /* Success clears err. */
    strcpy(err, "junk");
    CHECK_EQ_INT(sp_template_compile("{path}", &tpl, err, sizeof err), 0);
    CHECK_STR_EQ(err, "");
    CHECK_STR_EQ(tpl.text, "{path}");
    CHECK_EQ_INT(tpl.nparts, 1);
    sp_template_free(&tpl);
    CHECK(tpl.text == NULL && tpl.parts == NULL);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(variable_names),
        UNIT(expand_every_variable),
        UNIT(expand_mixed),
        UNIT(expand_missing_values),
        UNIT(expand_long),
        UNIT(oom_is_sticky),
        UNIT(compile_errors),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
