/* smartproxy: command line, signals, workers and reloads.
 *
 * The main thread owns the configuration: it loads and validates every generation,
 * hands the recorded sources to the workers, serves the admin endpoint and turns
 * signals into reloads and graceful stops. It never touches a proxied connection. */
#include <getopt.h>
#include <llhttp.h>
#include <luajit.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "admin/admin.h"
#include "admin/report.h"
#include "tls/cert_live.h"
#include "cert/manager.h"
#include "cli/check.h"
#include "cli/explain.h"
#include "cli/reload.h"
#include "cli/watch.h"
#include "config/describe.h"
#include "lua/config_load.h"
#include "lua/budget.h"
#include "lua/memory.h"
#include "lua/shared.h"
#include "http/challenges.h"
#include "http/rate_limit.h"
#include "net/ip_table.h"
#include "net/route_limits.h"
#include "nft/nft.h"
#include "session/apps.h"
#include "tls/context.h"
#include "util/access_log.h"
#include "util/log.h"
#include "util/query.h"
#include "worker/worker.h"

#define SHARED_CAPACITY 100000   /* entries of sp.shared */

typedef struct app {
    const char *file;
    int cli_workers;              /* 0: not given */
    int cli_log_level;            /* -1: not given */
    int cli_log_json;             /* -1: not given */
    bool watch;

    uv_loop_t *loop;
    sp_gen *gen;                  /* main's copy of the current generation */
    sp_source_set *sources;
    uint64_t generation, reloads, reloads_failed;
    uint64_t started_ms;

    sp_process process;
    sp_worker *workers;
    sp_counters **counters;
    int nworkers, workers_exited;
    uv_async_t worker_exited;

    uv_signal_t sighup, sigterm, sigint, sigusr1;
    sp_admin *admin;
    sp_nft *nft;                  /* kernel forwarding (nftables routes) */
    sp_certmgr *certs;            /* certificate = "auto" (core/cert/) */
    sp_watch watcher;             /* --watch */
    uv_timer_t sweep;             /* forgets idle per-IP entries */
    uv_timer_t sampler;           /* samples totals once a second for the rates */
    sp_rate_window rates;
    bool stopping;
    uv_timer_t stop_deadline;     /* a worker that never stops does not hold the exit */
    bool *stalled;                /* per worker: its heartbeat is late (reported once) */
    uint64_t worker_stalls;       /* times a worker was found stalled */
} app;

static void usage(FILE *out)
{
    fputs("usage: smartproxy [options] [CONFIG]       CONFIG defaults to ./proxy.lua\n"
          "  -t, --check              load and validate CONFIG, print its ports, routes and warnings, exit\n"
          "      --format FORMAT      with --check: text | json (default text)\n"
          "  -w, --workers N          worker threads (default: config `workers`, else CPUs)\n"
          "      --watch              reload when CONFIG or a Lua file it requires changes\n"
          "  -l, --log-level LEVEL    error | warn | info | debug (default info)\n"
          "      --log-format FORMAT  text | json (default text)\n"
          "      --explain            with --port N [--client-ip IP] [--sni NAME] [--host H] [--path P]\n"
          "                           [--header Name:value]...: print the route that\n"
          "                           would match and why each other route does not\n"
          "      --nft-cleanup        remove the nftables tables (ip/ip6 smartproxy) a crashed\n"
          "                           process left behind, exit\n"
          "  -V, --version            print version and linked library versions\n"
          "  -h, --help\n"
          "signals: SIGHUP reloads; SIGTERM/SIGINT stop gracefully\n"
          "exit status: 0 clean stop or valid config, 1 configuration error, 2 runtime error\n",
          out);
}

static void print_version(void)
{
    printf("smartproxy %s\n", SP_VERSION);
    printf("  %s\n", LUAJIT_VERSION);
    printf("  libuv %s\n", uv_version_string());
    printf("  %s\n", OpenSSL_version(OPENSSL_VERSION));
    printf("  llhttp %d.%d.%d\n", LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
    printf("  libnftnl %s, libmnl %s\n", SP_LIBNFTNL_VERSION, SP_LIBMNL_VERSION);
}

/* Settings from the command line win over the file's. */
static void apply_log_settings(app *a, const sp_gen *g)
{
    int level = a->cli_log_level >= 0 ? a->cli_log_level
              : g->settings.log_level >= 0 ? g->settings.log_level : SP_LOG_INFO;
    int json = a->cli_log_json >= 0 ? a->cli_log_json : g->settings.log_json == 1;
    sp_log_set_level((sp_log_level)level);
    sp_log_set_json(json);
}

/* ---- admin hooks ---- */

/* A worker whose loop has not run for this long is reported: Lua code the budget could
 * not stop (a loop LuaJIT compiled, with limits.lua_jit) or a call that blocks. */
static uint64_t stall_threshold_ms(const sp_gen *g)
{
    uint64_t budget = g->settings.timeouts.lua_budget;
    return (budget ? budget : 8000) + 2000;
}

static int stalled_workers(const app *a)
{
    int n = 0;
    for (int i = 0; i < a->nworkers; i++)
        n += a->stalled[i];
    return n;
}

static void check_heartbeats(app *a)
{
    uint64_t threshold = stall_threshold_ms(a->gen);
    for (int i = 0; i < a->nworkers; i++) {
        sp_worker *w = &a->workers[i];
        if (atomic_load(&w->exited))
            continue;
        uint64_t silent = sp_worker_silence_ms(w);
        if (silent >= threshold && !a->stalled[i]) {
            a->stalled[i] = true;
            a->worker_stalls++;
            sp_error("%s has not run its event loop for %llu ms: its connections wait (Lua code that "
                     "timeouts.lua_budget cannot stop, such as a compiled loop with limits.lua_jit, or a "
                     "blocking call)", w->name, (unsigned long long)silent);
        } else if (silent < threshold && a->stalled[i]) {
            a->stalled[i] = false;
            sp_warn("%s runs again", w->name);
        }
    }
}

static void on_sample(uv_timer_t *t)
{
    app *a = t->data;
    sp_counts c;
    sp_counters_sum(a->counters, a->nworkers, &c);
    sp_rate_window_sample(&a->rates, uv_now(a->loop), &c);
    check_heartbeats(a);
}

/* What the admin report reads, as it is now. */
static sp_report report_now(app *a)
{
    return (sp_report){
        .counters = a->counters, .nworkers = a->nworkers, .rates = &a->rates, .ips = a->process.ips,
        .routes = a->process.routes, .gen = a->gen, .nft = a->nft, .certs = a->certs,
        .process = {.generation = a->generation, .reloads = a->reloads, .reloads_failed = a->reloads_failed,
                    .workers = (uint64_t)a->nworkers, .workers_stalled = (uint64_t)stalled_workers(a),
                    .worker_stalls = a->worker_stalls, .lua_budget_exceeded = sp_lua_budget_exceeded(),
                    .lua_memory_errors = sp_lua_memory_errors(),
                    .uptime_seconds = (double)(uv_now(a->loop) - a->started_ms) / 1000.0},
    };
}

static void stats_json(void *ud, const char *query, sp_json *j)
{
    (void)query; /* no parameters yet */
    sp_report r = report_now(ud);
    sp_report_stats_json(&r, j);
}

static void metrics_text(void *ud, sp_buf *b)
{
    sp_report r = report_now(ud);
    sp_report_metrics_text(&r, b);
}

static void admin_access(void *ud, sp_admin_access *out)
{
    const sp_settings *s = &((app *)ud)->gen->settings;
    *out = (sp_admin_access){.token = s->metrics_token, .hosts = s->metrics_hosts, .nhosts = s->nmetrics_hosts};
}

static void routes_json(void *ud, const char *query, sp_json *j)
{
    char tag[128];
    bool by_tag = sp_query_get(query, "tag", tag, sizeof tag);
    app *a = ud;
    const sp_gen *g = a->gen;
    sp_json_obj_open(j);
    sp_json_key(j, "config_generation");
    sp_json_uint(j, a->generation);
    sp_json_key(j, "routes");
    sp_json_arr_open(j);
    for (size_t i = 0; i < g->nroutes; i++)
        if (!by_tag || sp_route_has_tag(&g->routes[i], tag))
            sp_route_json(&g->routes[i], j);
    sp_json_arr_close(j);
    sp_json_obj_close(j);
}

/* ---- reload ---- */

/* Loads a new generation, from the file (routes_text NULL) or from the current sources
 * with the routes sp.update_routes sent; on success every worker gets it. */
static int load_and_install(app *a, const char *routes_text, char *err, size_t errlen)
{
    if (a->stopping) {
        snprintf(err, errlen, "shutting down");
        return -1;
    }
    sp_serving now = {.file = a->file, .gen = a->gen, .sources = a->sources, .nft = a->nft,
                      .workers = a->workers, .nworkers = a->nworkers, .certs = a->certs};
    sp_reload r;
    if (sp_reload_prepare(&r, &now, routes_text, err, errlen) != 0) {
        a->reloads_failed++;
        sp_error("reload rejected, generation %llu keeps serving: %s",
                 (unsigned long long)a->generation, err);
        return -1;
    }
    a->generation++;
    a->reloads++;
    apply_log_settings(a, r.gen); /* first, so that what the commit logs has the new form */
    sp_reload_commit(&r, &now, a->generation);
    sp_gen_unref(a->gen);
    a->gen = r.gen;
    sp_source_set_unref(a->sources);
    a->sources = r.sources;
    if (a->watch)
        sp_watch_sources(&a->watcher, a->sources);
    sp_info("%s: generation %llu, %zu route(s) on %zu port(s)",
            routes_text ? "routes updated from Lua" : "configuration reloaded",
            (unsigned long long)a->generation, a->gen->nroutes, a->gen->nports);
    return 0;
}

static int do_reload(void *ud, char *err, size_t errlen)
{
    return load_and_install(ud, NULL, err, errlen);
}

static void on_routes_update(uv_async_t *h)
{
    app *a = h->data;
    sp_routes_mailbox *mb = a->process.updates;
    uv_mutex_lock(&mb->lock);
    char *text = mb->pending;
    mb->pending = NULL;
    uv_mutex_unlock(&mb->lock);
    /* every worker may send the same set (a timer runs in each): apply it once */
    if (text && !(a->sources->routes_override && strcmp(a->sources->routes_override, text) == 0)) {
        char err[1024];
        load_and_install(a, text, err, sizeof err);
    }
    free(text);
}

static void on_sigusr1(uv_signal_t *s, int signum)
{
    char err[512];
    if (sp_access_log_reopen(err, sizeof err) != 0)
        sp_error("SIGUSR1: %s", err);
    else
        sp_info("SIGUSR1: access log reopened");
}

static void on_sighup(uv_signal_t *s, int signum)
{
    char err[1024];
    sp_info("SIGHUP: reloading %s", ((app *)s->data)->file);
    do_reload(s->data, err, sizeof err);
}

/* --watch: a file the configuration loaded changed on disk */
static void on_sources_changed(void *ud)
{
    char err[1024];
    app *a = ud;
    sp_info("configuration changed on disk: reloading %s", a->file);
    do_reload(a, err, sizeof err);
}

/* ---- stop ---- */

static void close_main_handles(app *a)
{
    uv_close((uv_handle_t *)&a->sighup, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigusr1, NULL);
    uv_close((uv_handle_t *)&a->worker_exited, NULL);
    uv_close((uv_handle_t *)&a->sweep, NULL);
    uv_close((uv_handle_t *)&a->sampler, NULL);
    uv_close((uv_handle_t *)&a->stop_deadline, NULL);
    sp_watch_close(&a->watcher);
    sp_admin_stop(a->admin);
    a->admin = NULL;
    sp_certmgr_stop(a->certs);
    uv_close((uv_handle_t *)&a->process.updates->wake, NULL);
}

static void on_worker_exited(uv_async_t *h)
{
    app *a = h->data;
    int exited = 0;
    for (int i = 0; i < a->nworkers; i++)
        exited += atomic_load(&a->workers[i].exited);
    if (exited == a->nworkers && a->stopping)
        close_main_handles(a);
}

/* graceful_shutdown is over and a worker has still not stopped: its thread is stuck
 * (see check_heartbeats) and cannot be joined, so the process ends without it. */
static void on_stop_deadline(uv_timer_t *t)
{
    app *a = t->data;
    for (int i = 0; i < a->nworkers; i++)
        if (!atomic_load(&a->workers[i].exited))
            sp_error("%s did not stop within timeouts.graceful_shutdown (silent for %llu ms); exiting "
                     "without it", a->workers[i].name, (unsigned long long)sp_worker_silence_ms(&a->workers[i]));
    sp_nft_uninstall(a->nft);
    _exit(2);
}

/* Workers end their own drain at graceful_shutdown; this is their margin to close. */
#define STOP_MARGIN_MS 2000

static void begin_stop(app *a, const char *why)
{
    if (a->stopping)
        return;
    a->stopping = true;
    uint64_t drain = a->gen->settings.timeouts.graceful_shutdown;
    sp_info("%s: stopping, draining connections for up to %llu ms", why, (unsigned long long)drain);
    sp_nft_uninstall(a->nft);
    for (int i = 0; i < a->nworkers; i++)
        sp_worker_post_stop(&a->workers[i], drain);
    uv_timer_start(&a->stop_deadline, on_stop_deadline, drain + STOP_MARGIN_MS, 0);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    begin_stop(s->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

static void on_sweep(uv_timer_t *t)
{
    app *a = t->data;
    sp_ip_table_sweep(a->process.ips, uv_now(a->loop));
}

static void worker_exit_hook(void *ud)
{
    uv_async_send(ud);
}

/* ---- main ---- */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"check", no_argument, NULL, 't'},       {"workers", required_argument, NULL, 'w'},
        {"watch", no_argument, NULL, 'W'},       {"log-level", required_argument, NULL, 'l'},
        {"log-format", required_argument, NULL, 'F'}, {"explain", no_argument, NULL, 'E'},
        {"port", required_argument, NULL, 'P'},  {"client-ip", required_argument, NULL, 'C'},
        {"sni", required_argument, NULL, 'S'},   {"host", required_argument, NULL, 'H'},
        {"path", required_argument, NULL, 'Q'},  {"header", required_argument, NULL, 'R'},
        {"nft-cleanup", no_argument, NULL, 'N'}, {"format", required_argument, NULL, 'O'},
        {"version", no_argument, NULL, 'V'},     {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    app a = {.file = "proxy.lua", .cli_log_level = -1, .cli_log_json = -1};
    bool check = false, do_explain = false, nft_cleanup = false, check_json = false;
    sp_explain_args ex = {.client_ip = "127.0.0.1", .sni = ""};
    int opt;
    while ((opt = getopt_long(argc, argv, "tw:l:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 't': check = true; break;
        case 'w': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > 256) {
                fprintf(stderr, "smartproxy: --workers: expected 1 to 256, got \"%s\"\n", optarg);
                return 1;
            }
            a.cli_workers = (int)n;
            break;
        }
        case 'W': a.watch = true; break;
        case 'l':
            if ((a.cli_log_level = sp_log_level_parse(optarg)) < 0) {
                fprintf(stderr, "smartproxy: --log-level: expected error, warn, info or debug, got \"%s\"\n", optarg);
                return 1;
            }
            break;
        case 'F':
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "smartproxy: --log-format: expected text or json, got \"%s\"\n", optarg);
                return 1;
            }
            a.cli_log_json = strcmp(optarg, "json") == 0;
            break;
        case 'E': do_explain = true; break;
        case 'P': ex.port = atoi(optarg); break;
        case 'C': ex.client_ip = optarg; break;
        case 'S': ex.sni = optarg; break;
        case 'H': ex.host = optarg; break;
        case 'Q': ex.path = optarg; break;
        case 'R':
            if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n")) {
                fprintf(stderr, "smartproxy: --header: expected Name:value, got \"%s\"\n", optarg);
                return 1;
            }
            sp_buf_appendf(&ex.headers, "%s\r\n", optarg);
            break;
        case 'N': nft_cleanup = true; break;
        case 'O':
            if (strcmp(optarg, "text") != 0 && strcmp(optarg, "json") != 0) {
                fprintf(stderr, "smartproxy: --format: expected text or json, got \"%s\"\n", optarg);
                return 1;
            }
            check_json = strcmp(optarg, "json") == 0;
            break;
        case 'V': print_version(); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (optind < argc)
        a.file = argv[optind++];
    if (optind < argc) {
        usage(stderr);
        return 1;
    }
    if (a.cli_log_level >= 0)
        sp_log_set_level((sp_log_level)a.cli_log_level);
    if (a.cli_log_json >= 0)
        sp_log_set_json(a.cli_log_json);

    char err[2048];
    if (nft_cleanup) {
        if (sp_nft_cleanup(err, sizeof err) != 0) {
            fprintf(stderr, "smartproxy: --nft-cleanup: %s\n", err);
            return 2;
        }
        printf("smartproxy: nftables tables ip %s and ip6 %s removed (if there were any)\n", SP_NFT_TABLE, SP_NFT_TABLE);
        return 0;
    }
    /* static: the watchdog thread may look at it until the process has exited */
    static sp_lua_budget main_budget;
    if (sp_lua_budget_register(&main_budget, "main") != 0)
        sp_warn("no Lua budget watchdog: timeouts.config_load and timeouts.lua_budget are not enforced");
    a.gen = sp_config_load(a.file, NULL, &a.sources, err, sizeof err);
    if (a.gen)
        sp_config_load_bounds(a.gen->settings.timeouts.config_load, a.gen->settings.lua_memory);
    sp_nft_ruleset *kernel = NULL;
    if (a.gen && sp_nft_prepare(a.gen, &kernel, err, sizeof err) != 0) {
        sp_gen_unref(a.gen);
        sp_source_set_unref(a.sources);
        a.gen = NULL;
    }
    if (!a.gen) {
        sp_check_print_error(err, check && check_json, stdout);
        return 1;
    }
    if (check || do_explain) {
        int rc = 0;
        if (check)
            sp_check_print(a.gen, kernel, check_json, stdout);
        else if (ex.port < 1 || ex.port > 65535) {
            fprintf(stderr, "smartproxy: --explain needs --port N\n");
            rc = 1;
        } else
            rc = sp_explain(a.gen, &ex);
        sp_nft_ruleset_destroy(kernel);
        sp_gen_unref(a.gen);
        sp_source_set_unref(a.sources);
        return rc;
    }
    apply_log_settings(&a, a.gen);
    signal(SIGPIPE, SIG_IGN);
    sp_access_log_file access_log;
    if (sp_access_log_open(a.gen->settings.access_log, &access_log, err, sizeof err) != 0 ||
        (!(a.nft = sp_nft_new()) && snprintf(err, sizeof err, "smartproxy: out of memory") > 0)) {
        fprintf(stderr, "%s\n", err);
        sp_access_log_discard(&access_log);
        sp_nft_ruleset_destroy(kernel);
        return 2;
    }
    sp_access_log_switch(&access_log);

    a.loop = uv_default_loop();
    a.started_ms = uv_now(a.loop);
    a.generation = 1;
    a.gen->number = 1;
    a.nworkers = a.cli_workers ? a.cli_workers
               : a.gen->settings.workers ? a.gen->settings.workers : (int)uv_available_parallelism();
    a.workers = calloc((size_t)a.nworkers, sizeof *a.workers);
    a.counters = calloc((size_t)a.nworkers, sizeof *a.counters);
    a.stalled = calloc((size_t)a.nworkers, sizeof *a.stalled);
    if (!a.workers || !a.counters || !a.stalled) {
        fprintf(stderr, "smartproxy: out of memory\n");
        return 2;
    }
    a.process.ips = sp_ip_table_new();
    a.process.routes = sp_route_limits_new();
    a.process.rates = sp_rate_table_new();
    a.process.challenges = sp_challenges_new();
    a.certs = sp_certmgr_new(a.loop, a.process.challenges);
    sp_certmgr_sync(a.certs, a.gen); /* before any worker accepts: stored certificates serve at once */
    a.process.shared = sp_shared_new(SHARED_CAPACITY);
    a.process.lua_tls[0] = sp_tls_lua_client_ctx(false);
    a.process.lua_tls[1] = sp_tls_lua_client_ctx(true);
    if (!a.process.ips || !a.process.routes || !a.process.shared || !a.process.lua_tls[0] || !a.process.lua_tls[1]) {
        fprintf(stderr, "smartproxy: out of memory\n");
        return 2;
    }
    static sp_routes_mailbox updates;
    uv_mutex_init(&updates.lock);
    uv_async_init(a.loop, &updates.wake, on_routes_update);
    updates.wake.data = &a;
    a.process.updates = &updates;
    uv_async_init(a.loop, &a.worker_exited, on_worker_exited);
    uv_timer_init(a.loop, &a.sweep);
    a.sweep.data = &a;
    uv_timer_start(&a.sweep, on_sweep, 60000, 60000);
    uv_unref((uv_handle_t *)&a.sweep); /* housekeeping never keeps the loop alive */
    uv_timer_init(a.loop, &a.sampler);
    a.sampler.data = &a;
    uv_timer_init(a.loop, &a.stop_deadline);
    a.stop_deadline.data = &a;
    uv_unref((uv_handle_t *)&a.stop_deadline);
    uv_timer_start(&a.sampler, on_sample, 0, 1000);
    uv_unref((uv_handle_t *)&a.sampler);
    a.worker_exited.data = &a;

    a.process.counters = a.counters;
    a.process.nworkers = a.nworkers;
    int status = 0;
    int started = 0;
    sp_session_install(); /* net/ starts HTTP and Lua through it */
    for (int i = 0; i < a.nworkers; i++) {
        a.counters[i] = &a.workers[i].counters;
        a.workers[i].exit_hook = worker_exit_hook;
        a.workers[i].exit_hook_arg = &a.worker_exited;
        if (sp_worker_start(&a.workers[i], i, a.file, &a.process, a.sources) != 0) {
            fprintf(stderr, "smartproxy: cannot start worker thread %d\n", i);
            status = 2;
            break;
        }
        started++;
    }
    for (int i = 0; i < started; i++) {
        uv_sem_wait(&a.workers[i].ready);
        if (a.workers[i].start_status > status)
            status = a.workers[i].start_status;
    }
    if (status == 0 && sp_nft_install(a.nft, kernel, err, sizeof err) != 0) {
        sp_error("%s", err);
        status = 2;
    } else if (status == 0) {
        kernel = NULL; /* installed: a.nft owns it */
    }
    sp_nft_ruleset_destroy(kernel);
    if (status == 0 && a.gen->settings.metrics_listen) {
        sp_admin_hooks hooks = {.ud = &a, .stats_json = stats_json, .routes_json = routes_json,
                                .metrics_text = metrics_text, .access = admin_access,
                                .reload = do_reload};
        a.admin = sp_admin_start(a.loop, a.gen->settings.metrics_listen, &hooks, err, sizeof err);
        if (!a.admin) {
            sp_error("%s", err);
            status = 2;
        }
    }

    uv_signal_init(a.loop, &a.sighup);
    uv_signal_init(a.loop, &a.sigterm);
    uv_signal_init(a.loop, &a.sigint);
    uv_signal_init(a.loop, &a.sigusr1);
    a.sighup.data = a.sigterm.data = a.sigint.data = a.sigusr1.data = &a;
    sp_watch_init(&a.watcher, a.loop, on_sources_changed, &a);
    a.nworkers = started;
    if (status == 0) {
        uv_signal_start(&a.sighup, on_sighup, SIGHUP);
        uv_signal_start(&a.sigterm, on_stop_signal, SIGTERM);
        uv_signal_start(&a.sigint, on_stop_signal, SIGINT);
        uv_signal_start(&a.sigusr1, on_sigusr1, SIGUSR1);
        if (a.watch)
            sp_watch_sources(&a.watcher, a.sources);
        sp_info("smartproxy %s: %d worker(s), %zu route(s) on %zu port(s), generation 1", SP_VERSION,
                a.nworkers, a.gen->nroutes, a.gen->nports);
    } else {
        a.gen->settings.timeouts.graceful_shutdown = 0;
        begin_stop(&a, "startup failed");
    }
    on_worker_exited(&a.worker_exited); /* covers workers that already exited */
    uv_run(a.loop, UV_RUN_DEFAULT);

    for (int i = 0; i < started; i++)
        sp_worker_join(&a.workers[i]);
    uv_loop_close(a.loop);
    sp_nft_uninstall(a.nft);
    sp_nft_free(a.nft);
    sp_gen_unref(a.gen);
    sp_source_set_unref(a.sources);
    sp_ip_table_free(a.process.ips);
    sp_route_limits_free(a.process.routes);
    sp_rate_table_free(a.process.rates);
    sp_certmgr_free(a.certs);
    sp_cert_live_clear();
    sp_challenges_free(a.process.challenges);
    free(updates.pending);
    uv_mutex_destroy(&updates.lock);
    sp_shared_free(a.process.shared);
    SSL_CTX_free(a.process.lua_tls[0]);
    SSL_CTX_free(a.process.lua_tls[1]);
    free(a.workers);
    free(a.counters);
    free(a.stalled);
    if (status == 0)
        sp_info("stopped");
    return status;
}
