/* metric: tables of metric descriptors, and the renderers that walk them.
 *
 * A descriptor says what one figure is called and where its value lives: its key in
 * /stats (and in sp.stats()), its Prometheus name, type, help and labels, and its offset
 * in a struct of figures (sp_counts, the admin report's process figures). /stats,
 * /metrics and sp.stats() all walk the same table, so a new figure is one descriptor.
 *
 * A descriptor is a scalar, or a family indexed by an enum: an array of uint64_t whose
 * indices become the keys of a nested /stats object and the values of one Prometheus
 * label. Consecutive descriptors with the same Prometheus name form one family (one
 * HELP and TYPE, the samples of each index together); consecutive descriptors with the
 * same group nest in one /stats object. Pure: no I/O, no allocation of its own. */
#ifndef SP_UTIL_METRIC_H
#define SP_UTIL_METRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/json.h"

/* A histogram is never a descriptor: its series are written by hand, after sp_metric_head. */
typedef enum { SP_METRIC_COUNTER, SP_METRIC_GAUGE, SP_METRIC_HISTOGRAM } sp_metric_type;

typedef struct sp_metric {
    const char *group;    /* the /stats object it nests in ("tls"), or NULL: the top level */
    const char *key;      /* its key in /stats and sp.stats() */
    const char *name;     /* Prometheus name: smartproxy_*, base units, _total for counters */
    sp_metric_type type;
    const char *help;     /* Prometheus HELP; the family's first descriptor gives it */
    const char *labels;   /* labels every sample carries, e.g. from="client", or NULL */
    const char *label;    /* a family indexed by an enum: the label naming the index, else NULL */
    const char *(*label_value)(int i); /* ... and the name of index i (its /stats key too) */
    int first, count;     /* a family's indices: first .. count-1 (a scalar: neither) */
    size_t offset;        /* of the uint64_t (the array, the double) in the figures */
    bool real;            /* a double (seconds), not a uint64_t */
} sp_metric;

/* How sp_metrics_walk hands the tree of /stats to a writer (JSON, a Lua table). */
typedef struct sp_metric_visitor {
    void (*open)(void *ud, const char *key);   /* a nested object begins */
    void (*close)(void *ud, const char *key);  /* ... and ends */
    void (*uint)(void *ud, const char *key, uint64_t v);
    void (*real)(void *ud, const char *key, double v);
} sp_metric_visitor;

/* Visits table[0..n) over figures in table order, opening groups and families. */
void sp_metrics_walk(const sp_metric *table, size_t n, const void *figures, const sp_metric_visitor *v,
                     void *ud);
/* Writes the keys and values of the table into the JSON object open in j. */
void sp_metrics_json(const sp_metric *table, size_t n, const void *figures, sp_json *j);
/* Writes the table as Prometheus text: HELP and TYPE per family, then its samples. */
void sp_metrics_text(const sp_metric *table, size_t n, const void *figures, sp_buf *b);
/* The HELP and TYPE lines of a family, for figures written by hand (histograms, per route). */
void sp_metric_head(sp_buf *b, const char *name, sp_metric_type type, const char *help);

#endif
