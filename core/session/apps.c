#include "session/apps.h"

#include "lua/target_fn.h"
#include "net/app.h"
#include "net/target.h"
#include "session/route.h"

static const sp_session_hooks session_hooks = {
    .begin = sp_session_begin,
    .sniffed = sp_session_sniffed,
    .handshake_done = sp_session_handshake_done,
    .route_stream = sp_session_route_stream,
};

static const sp_target_fns target_fns = {
    .host = sp_lua_target_host,
    .port = sp_lua_target_port,
};

void sp_session_install(void)
{
    sp_conn_install_session(&session_hooks);
    sp_target_install_fns(&target_fns);
}
