/* watch: --watch, noticing that a file the configuration loaded changed on disk.
 *
 * It watches the folders of every recorded source (editors replace files by renaming,
 * which a watch on the file itself would lose), counts an event only for a file the
 * configuration actually loaded (not an editor's swap file), and calls `changed` once
 * the events have been quiet for 150 ms, so that a save that writes several times
 * reloads once. Main thread only. */
#ifndef SP_CLI_WATCH_H
#define SP_CLI_WATCH_H

#include <uv.h>

#include "lua/config_load.h"

#define SP_WATCH_MAX_DIRS 64

typedef struct sp_watch {
    uv_loop_t *loop;
    uv_fs_event_t dirs[SP_WATCH_MAX_DIRS];
    int ndirs;
    uv_timer_t debounce;
    sp_source_set *sources;    /* the files that count (a reference), or NULL */
    void (*changed)(void *ud);
    void *ud;
} sp_watch;

/* Readies w, watching nothing yet. */
void sp_watch_init(sp_watch *w, uv_loop_t *loop, void (*changed)(void *ud), void *ud);
/* Watches the folders of sources in place of what w watched before. */
void sp_watch_sources(sp_watch *w, sp_source_set *sources);
/* Closes every handle of w and drops its sources. */
void sp_watch_close(sp_watch *w);

#endif
