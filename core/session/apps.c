#include "session/apps.h"

#include "http/proxy.h"
#include "lua/target_fn.h"
#include "lua/task.h"
#include "net/app.h"
#include "net/target.h"

static const sp_app_starters starters = {
    .http_sniffed = sp_http_sniffed,
    .http_after_handshake = sp_http_begin_tls,
    .socket_handler = sp_task_start,
};

static const sp_target_fns target_fns = {
    .host = sp_lua_target_host,
    .port = sp_lua_target_port,
};

void sp_session_install(void)
{
    sp_conn_install_apps(&starters);
    sp_target_install_fns(&target_fns);
}
