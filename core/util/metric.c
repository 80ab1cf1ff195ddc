#include "util/metric.h"

#include <string.h>

static const uint64_t *uint_at(const void *figures, const sp_metric *m)
{
    return (const uint64_t *)((const char *)figures + m->offset);
}

static double real_at(const void *figures, const sp_metric *m)
{
    return *(const double *)((const char *)figures + m->offset);
}

/* The indices a descriptor has: a scalar has index 0 only. */
static int first_index(const sp_metric *m) { return m->label ? m->first : 0; }
static int end_index(const sp_metric *m) { return m->label ? m->count : 1; }

static bool same_group(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

void sp_metrics_walk(const sp_metric *table, size_t n, const void *figures, const sp_metric_visitor *v,
                     void *ud)
{
    const char *group = NULL;
    for (size_t k = 0; k < n; k++) {
        const sp_metric *m = &table[k];
        if (!same_group(m->group, group)) {
            if (group)
                v->close(ud, group);
            if (m->group)
                v->open(ud, m->group);
            group = m->group;
        }
        if (m->label) {
            v->open(ud, m->key);
            for (int i = m->first; i < m->count; i++)
                v->uint(ud, m->label_value(i), uint_at(figures, m)[i]);
            v->close(ud, m->key);
        } else if (m->real) {
            v->real(ud, m->key, real_at(figures, m));
        } else {
            v->uint(ud, m->key, *uint_at(figures, m));
        }
    }
    if (group)
        v->close(ud, group);
}

static void json_open(void *ud, const char *key)
{
    sp_json_key(ud, key);
    sp_json_obj_open(ud);
}

static void json_close(void *ud, const char *key)
{
    (void)key;
    sp_json_obj_close(ud);
}

static void json_uint(void *ud, const char *key, uint64_t v)
{
    sp_json_key(ud, key);
    sp_json_uint(ud, v);
}

static void json_real(void *ud, const char *key, double v)
{
    sp_json_key(ud, key);
    sp_json_double(ud, v);
}

void sp_metrics_json(const sp_metric *table, size_t n, const void *figures, sp_json *j)
{
    static const sp_metric_visitor json = {json_open, json_close, json_uint, json_real};
    sp_metrics_walk(table, n, figures, &json, j);
}

void sp_metric_head(sp_buf *b, const char *name, sp_metric_type type, const char *help)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    sp_buf_appendf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type_names[type]);
}

/* One sample: name{labels,label="value"} value. */
static void sample(sp_buf *b, const sp_metric *m, int i, const void *figures)
{
    sp_buf_appendf(b, "%s", m->name);
    if (m->labels || m->label)
        sp_buf_appendf(b, "{%s%s", m->labels ? m->labels : "", m->labels && m->label ? "," : "");
    if (m->label)
        sp_buf_appendf(b, "%s=\"%s\"", m->label, m->label_value(i));
    if (m->labels || m->label)
        sp_buf_append(b, "}", 1);
    if (m->real)
        sp_buf_appendf(b, " %.3f\n", real_at(figures, m));
    else
        sp_buf_appendf(b, " %llu\n", (unsigned long long)uint_at(figures, m)[i]);
}

void sp_metrics_text(const sp_metric *table, size_t n, const void *figures, sp_buf *b)
{
    for (size_t start = 0, end; start < n; start = end) {
        int most = end_index(&table[start]);
        for (end = start + 1; end < n && strcmp(table[end].name, table[start].name) == 0; end++)
            if (end_index(&table[end]) > most)
                most = end_index(&table[end]);
        sp_metric_head(b, table[start].name, table[start].type, table[start].help);
        /* index by index: a family of two arrays (client and upstream TLS failures)
         * writes both samples of one reason together */
        for (int i = 0; i < most; i++)
            for (size_t k = start; k < end; k++)
                if (i >= first_index(&table[k]) && i < end_index(&table[k]))
                    sample(b, &table[k], i, figures);
    }
}
