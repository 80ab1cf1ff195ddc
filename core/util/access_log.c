#include "util/access_log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/json.h"

static int log_fd = STDERR_FILENO;
static char *log_path;
static pthread_mutex_t reopen_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *dash(const char *s) { return s && *s ? s : "-"; }

void sp_access_format_request(sp_buf *out, const sp_access_request *e, const char *time, bool json)
{
    if (!json) {
        sp_buf_appendf(out,
                       "%s request conn=%llu route=%s client=%s:%u method=%s host=%s url=%s status=%d target=%s "
                       "out=%llu duration_ms=%llu\n",
                       time, (unsigned long long)e->conn, dash(e->route), e->client_ip, e->client_port, e->method,
                       dash(e->host), e->url, e->status, dash(e->target), (unsigned long long)e->bytes_out,
                       (unsigned long long)e->duration_ms);
        return;
    }
    sp_json j;
    sp_json_init(&j, out);
    sp_json_obj_open(&j);
    sp_json_key(&j, "time");
    sp_json_str(&j, time);
    sp_json_key(&j, "type");
    sp_json_str(&j, "request");
    sp_json_key(&j, "conn");
    sp_json_uint(&j, e->conn);
    sp_json_key(&j, "route");
    sp_json_str(&j, e->route);
    sp_json_key(&j, "client_ip");
    sp_json_str(&j, e->client_ip);
    sp_json_key(&j, "client_port");
    sp_json_uint(&j, e->client_port);
    sp_json_key(&j, "method");
    sp_json_str(&j, e->method);
    sp_json_key(&j, "host");
    sp_json_str(&j, e->host);
    sp_json_key(&j, "url");
    sp_json_str(&j, e->url);
    sp_json_key(&j, "status");
    sp_json_uint(&j, (unsigned long long)e->status);
    sp_json_key(&j, "target");
    sp_json_str(&j, e->target);
    sp_json_key(&j, "bytes_out");
    sp_json_uint(&j, e->bytes_out);
    sp_json_key(&j, "duration_ms");
    sp_json_uint(&j, e->duration_ms);
    sp_json_obj_close(&j);
    sp_buf_append(out, "\n", 1);
}

void sp_access_format(sp_buf *out, const sp_access_entry *e, const char *time, bool json)
{
    if (!json) {
        sp_buf_appendf(out,
                       "%s access conn=%llu route=%s client=%s:%u%s%s port=%u sni=%s tls=%s target=%s "
                       "in=%llu out=%llu duration_ms=%llu end=%s\n",
                       time, (unsigned long long)e->id, dash(e->route), e->client_ip, e->client_port,
                       e->via ? " via=" : "", e->via ? e->via : "", e->port, dash(e->sni),
                       dash(e->tls_version), dash(e->target), (unsigned long long)e->bytes_in,
                       (unsigned long long)e->bytes_out, (unsigned long long)e->duration_ms, e->end);
        return;
    }
    sp_json j;
    sp_json_init(&j, out);
    sp_json_obj_open(&j);
    sp_json_key(&j, "time");
    sp_json_str(&j, time);
    sp_json_key(&j, "type");
    sp_json_str(&j, "access");
    sp_json_key(&j, "conn");
    sp_json_uint(&j, e->id);
    sp_json_key(&j, "route");
    sp_json_str(&j, e->route); /* null when no route matched */
    sp_json_key(&j, "client_ip");
    sp_json_str(&j, e->client_ip);
    sp_json_key(&j, "client_port");
    sp_json_uint(&j, e->client_port);
    sp_json_key(&j, "via");
    sp_json_str(&j, e->via);
    sp_json_key(&j, "port");
    sp_json_uint(&j, e->port);
    sp_json_key(&j, "sni");
    sp_json_str(&j, e->sni && *e->sni ? e->sni : NULL);
    sp_json_key(&j, "tls_version");
    sp_json_str(&j, e->tls_version);
    sp_json_key(&j, "target");
    sp_json_str(&j, e->target);
    sp_json_key(&j, "bytes_in");
    sp_json_uint(&j, e->bytes_in);
    sp_json_key(&j, "bytes_out");
    sp_json_uint(&j, e->bytes_out);
    sp_json_key(&j, "duration_ms");
    sp_json_uint(&j, e->duration_ms);
    sp_json_key(&j, "end");
    sp_json_str(&j, e->end);
    sp_json_obj_close(&j);
    sp_buf_append(out, "\n", 1);
}

static int open_append(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0)
        snprintf(err, errlen, "log.access: cannot open %s: %s", path, strerror(errno));
    return fd;
}

int sp_access_log_open(const char *path, sp_access_log_file *out, char *err, size_t errlen)
{
    *out = (sp_access_log_file){.fd = -1};
    pthread_mutex_lock(&reopen_lock);
    out->change = path ? !log_path || strcmp(path, log_path) != 0 : log_path != NULL;
    pthread_mutex_unlock(&reopen_lock);
    if (!path || !out->change)
        return 0;
    if (!(out->path = strdup(path))) {
        snprintf(err, errlen, "log.access: out of memory");
        return -1;
    }
    if ((out->fd = open_append(path, err, errlen)) < 0) {
        sp_access_log_discard(out);
        return -1;
    }
    return 0;
}

void sp_access_log_switch(sp_access_log_file *f)
{
    if (!f->change)
        return;
    pthread_mutex_lock(&reopen_lock);
    if (f->fd < 0) {
        if (log_fd != STDERR_FILENO)
            dup2(STDERR_FILENO, log_fd);
    } else if (log_fd == STDERR_FILENO) {
        log_fd = f->fd; /* from now on this descriptor number is ours for good */
    } else {
        dup2(f->fd, log_fd);
        close(f->fd);
    }
    free(log_path);
    log_path = f->path;
    pthread_mutex_unlock(&reopen_lock);
    *f = (sp_access_log_file){.fd = -1};
}

void sp_access_log_discard(sp_access_log_file *f)
{
    if (f->change && f->fd >= 0)
        close(f->fd);
    free(f->path);
    *f = (sp_access_log_file){.fd = -1};
}

int sp_access_log_reopen(char *err, size_t errlen)
{
    pthread_mutex_lock(&reopen_lock);
    int rc = 0;
    if (log_path) {
        int fd = open_append(log_path, err, errlen);
        if (fd < 0) {
            rc = -1;
        } else {
            dup2(fd, log_fd);
            close(fd);
        }
    }
    pthread_mutex_unlock(&reopen_lock);
    return rc;
}

void sp_access_log_write(const sp_buf *line)
{
    if (line->oom || !line->len)
        return;
    ssize_t w = write(log_fd, line->data, line->len);
    (void)w; /* nowhere left to report a failed log write */
}
