/* Metric descriptor tables (core/util/metric.h) and the one of the workers' counters
 * (sp_counts_metrics, core/net/registry.c). */
#include "util/metric.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "net/registry.h"
#include "unit.h"

typedef struct figures {
    uint64_t open, by_color[3], left, right, sides_a[2], sides_b[2];
    double uptime;
} figures;

static const char *color(int i)
{
    static const char *const names[3] = {"red", "green", "blue"};
    return names[i];
}

static const char *side(int i) { return i ? "two" : "one"; }

#define AT(field) .offset = offsetof(figures, field)

static const sp_metric table[] = {
    {.key = "open", .name = "t_open", .type = SP_METRIC_GAUGE, .help = "Open.", AT(open)},
    {.key = "colors", .name = "t_colors_total", .type = SP_METRIC_COUNTER, .help = "By color.",
     .label = "color", .label_value = color, .first = 1, .count = 3, AT(by_color)},
    {.group = "hands", .key = "left", .name = "t_hands_total", .type = SP_METRIC_COUNTER, .help = "Hands.",
     .labels = "hand=\"left\"", AT(left)},
    {.group = "hands", .key = "right", .name = "t_hands_total", .type = SP_METRIC_COUNTER,
     .labels = "hand=\"right\"", AT(right)},
    {.group = "sides", .key = "a", .name = "t_sides_total", .type = SP_METRIC_COUNTER, .help = "Sides.",
     .labels = "of=\"a\"", .label = "side", .label_value = side, .count = 2, AT(sides_a)},
    {.group = "sides", .key = "b", .name = "t_sides_total", .type = SP_METRIC_COUNTER,
     .labels = "of=\"b\"", .label = "side", .label_value = side, .count = 2, AT(sides_b)},
    {.key = "uptime", .name = "t_uptime_seconds", .type = SP_METRIC_GAUGE, .help = "Up.", AT(uptime),
     .real = true},
};

static const figures sample = {.open = 7, .by_color = {1, 2, 3}, .left = 4, .right = 5,
                               .sides_a = {10, 11}, .sides_b = {20, 21}, .uptime = 1.5};

TEST(json_nests_groups_and_families)
{
    sp_buf b;
    sp_json j;
    sp_buf_init(&b);
    sp_json_init(&j, &b);
    sp_json_obj_open(&j);
    sp_metrics_json(table, sizeof table / sizeof *table, &sample, &j);
    sp_json_obj_close(&j);
    CHECK_STR_EQ(b.data, "{\"open\":7,\"colors\":{\"green\":2,\"blue\":3},\"hands\":{\"left\":4,\"right\":5},"
                         "\"sides\":{\"a\":{\"one\":10,\"two\":11},\"b\":{\"one\":20,\"two\":21}},\"uptime\":1.5}");
    sp_buf_free(&b);
}

TEST(text_writes_one_head_per_family_and_index_by_index)
{
    sp_buf b;
    sp_buf_init(&b);
    sp_metrics_text(table, sizeof table / sizeof *table, &sample, &b);
    CHECK_STR_EQ(b.data, "# HELP t_open Open.\n# TYPE t_open gauge\nt_open 7\n"
                         "# HELP t_colors_total By color.\n# TYPE t_colors_total counter\n"
                         "t_colors_total{color=\"green\"} 2\nt_colors_total{color=\"blue\"} 3\n"
                         "# HELP t_hands_total Hands.\n# TYPE t_hands_total counter\n"
                         "t_hands_total{hand=\"left\"} 4\nt_hands_total{hand=\"right\"} 5\n"
                         "# HELP t_sides_total Sides.\n# TYPE t_sides_total counter\n"
                         "t_sides_total{of=\"a\",side=\"one\"} 10\nt_sides_total{of=\"b\",side=\"one\"} 20\n"
                         "t_sides_total{of=\"a\",side=\"two\"} 11\nt_sides_total{of=\"b\",side=\"two\"} 21\n"
                         "# HELP t_uptime_seconds Up.\n# TYPE t_uptime_seconds gauge\nt_uptime_seconds 1.500\n");
    sp_buf_free(&b);
}

/* Every descriptor of the workers' counters points inside sp_counts, and a family's
 * descriptors are next to each other: /metrics must not name a family twice. */
TEST(counts_table_is_well_formed)
{
    for (size_t i = 0; i < sp_counts_nmetrics; i++) {
        const sp_metric *m = &sp_counts_metrics[i];
        size_t width = m->label ? (size_t)m->count * sizeof(uint64_t) : sizeof(uint64_t);
        CHECK(m->offset + width <= sizeof(sp_counts));
        CHECK(m->key && m->name && strncmp(m->name, "smartproxy_", 11) == 0);
        bool continues = i > 0 && strcmp(sp_counts_metrics[i - 1].name, m->name) == 0;
        CHECK(continues || m->help);
        for (size_t k = 0; k + 1 < i && !continues; k++)
            CHECK(strcmp(sp_counts_metrics[k].name, m->name) != 0);
    }
}

TEST(counters_sum_adds_every_field)
{
    static sp_counters a, b;
    sp_counter_add(&a.total, 2);
    sp_counter_add(&b.total, 3);
    sp_counter_add(&a.by_state[SP_STATE_PIPING], 1);
    sp_counter_add(&b.by_state[SP_STATE_HTTP], 2);
    sp_counter_add(&b.http_upstream_retried, 9);
    sp_counter_add(&a.upstream_tls_failures[SP_TLSFAIL_OTHER], 4);
    sp_counters *const workers[2] = {&a, &b};
    sp_counts c;
    sp_counters_sum(workers, 2, &c);
    CHECK_EQ_INT(c.total, 5);
    CHECK_EQ_INT(c.active, 3);
    CHECK_EQ_INT(c.http_upstream_retried, 9);
    CHECK_EQ_INT(c.upstream_tls_failures[SP_TLSFAIL_OTHER], 4);
    CHECK_EQ_INT(c.tls_failures[SP_TLSFAIL_OTHER], 0);
}

int main(int argc, char **argv)
{
    static const unit_test tests[] = {
        UNIT(json_nests_groups_and_families),
        UNIT(text_writes_one_head_per_family_and_index_by_index),
        UNIT(counts_table_is_well_formed),
        UNIT(counters_sum_adds_every_field),
    };
    return unit_main(tests, UNIT_COUNT(tests), argc, argv);
}
