/* Access log lines (core/util/access_log.c): text and JSON forms. */
#include "util/access_log.h"

#include <string.h>

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

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(text_line_has_every_field),
        UNIT(text_line_marks_absent_fields),
        UNIT(json_line_is_one_object_with_nulls_for_absent_fields),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
