/* Access log lines (core/util/access_log.c): text and JSON forms, and moving them to
 * another file in two steps (open, then switch or discard). */
#include "util/access_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

static const sp_access_entry full = {
    .id = 7, .route = "api", .client_ip = "10.0.0.2", .client_port = 40000, .via = "127.0.0.1",
    .port = 443, .sni = "a.example.com", .tls_version = "TLSv1.3", .target = "[::1]:8443",
    .bytes_in = 517, .bytes_out = 1200, .duration_ms = 12, .end = "client_closed",
};

TEST(text_line_has_every_field)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_access_format(&b, &full, "2026-11-29T10:00:00.000Z", false);
    CHECK_STR_EQ(b.data, "2026-11-29T10:00:00.000Z access conn=7 route=api client=10.0.0.2:40000 "
                         "via=127.0.0.1 port=443 sni=a.example.com tls=TLSv1.3 target=[::1]:8443 "
                         "in=517 out=1200 duration_ms=12 end=client_closed\n");
    sp_buf_free(&b);
}

TEST(text_line_marks_absent_fields)
{
    sp_access_entry e = {.id = 1, .client_ip = "::1", .client_port = 5, .port = 80, .end = "no_route"};
    sp_buf b;
    sp_buf_init(&b);
    sp_access_format(&b, &e, "T", false);
    CHECK_STR_EQ(b.data, "T access conn=1 route=- client=::1:5 port=80 sni=- tls=- target=- in=0 out=0 "
                         "duration_ms=0 end=no_route\n");
    sp_buf_free(&b);
}

TEST(json_line_is_one_object_with_nulls_for_absent_fields)
{
    sp_access_entry e = full;
    e.via = NULL;
    e.sni = "evil\"\n";
    sp_buf b;
    sp_buf_init(&b);
    sp_access_format(&b, &e, "T", true);
    CHECK_STR_EQ(b.data, "{\"time\":\"T\",\"type\":\"access\",\"conn\":7,\"route\":\"api\","
                         "\"client_ip\":\"10.0.0.2\",\"client_port\":40000,\"via\":null,\"port\":443,"
                         "\"sni\":\"evil\\\"\\n\",\"tls_version\":\"TLSv1.3\",\"target\":\"[::1]:8443\","
                         "\"bytes_in\":517,\"bytes_out\":1200,\"duration_ms\":12,\"end\":\"client_closed\"}\n");
    sp_buf_free(&b);
}

/* Sends one line through the access log. */
static void write_line(const char *text)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_buf_appendf(&b, "%s\n", text);
    sp_access_log_write(&b);
    sp_buf_free(&b);
}

static void read_file(const char *path, char *out, size_t outlen)
{
    out[0] = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(out, 1, outlen - 1, f);
    out[n] = 0;
    fclose(f);
}

/* A reload opens its access log before it knows whether it will be refused: until the
 * switch, lines keep going to the file in use, and a discarded file gets none. */
TEST(lines_go_to_the_new_file_only_after_the_switch)
{
    char dir[] = "/tmp/sp-access-log-test-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char old_path[128], new_path[128], text[256];
    snprintf(old_path, sizeof old_path, "%s/old.log", dir);
    snprintf(new_path, sizeof new_path, "%s/new.log", dir);
    char err[256];
    sp_access_log_file f;

    REQUIRE(sp_access_log_open(old_path, &f, err, sizeof err) == 0);
    sp_access_log_switch(&f);
    write_line("one");

    REQUIRE(sp_access_log_open(new_path, &f, err, sizeof err) == 0);
    write_line("two");            /* readied, not switched: still the old file */
    sp_access_log_discard(&f);    /* the reload was refused */
    write_line("three");
    read_file(old_path, text, sizeof text);
    CHECK_STR_EQ(text, "one\ntwo\nthree\n");
    read_file(new_path, text, sizeof text);
    CHECK_STR_EQ(text, "");

    REQUIRE(sp_access_log_open(old_path, &f, err, sizeof err) == 0);
    CHECK(!f.change);             /* the same path: nothing to reopen */
    sp_access_log_switch(&f);
    REQUIRE(sp_access_log_open(new_path, &f, err, sizeof err) == 0);
    sp_access_log_switch(&f);
    write_line("four");
    read_file(old_path, text, sizeof text);
    CHECK_STR_EQ(text, "one\ntwo\nthree\n");
    read_file(new_path, text, sizeof text);
    CHECK_STR_EQ(text, "four\n");

    CHECK(sp_access_log_open("/nonexistent-dir/x.log", &f, err, sizeof err) == -1);
    CHECK(strstr(err, "log.access: cannot open /nonexistent-dir/x.log") == err);

    REQUIRE(sp_access_log_open(NULL, &f, err, sizeof err) == 0);
    sp_access_log_switch(&f);     /* back to stderr: the files get nothing more */
    unlink(old_path);
    unlink(new_path);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(text_line_has_every_field),
        UNIT(text_line_marks_absent_fields),
        UNIT(json_line_is_one_object_with_nulls_for_absent_fields),
        UNIT(lines_go_to_the_new_file_only_after_the_switch),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
