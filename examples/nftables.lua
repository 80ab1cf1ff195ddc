-- Kernel forwarding: the kernel NATs these ports to their targets (nftables); no byte
-- passes through the proxy's process. The proxy installs the rules when it starts or
-- reloads (one atomic batch, in its own tables `ip smartproxy` / `ip6 smartproxy`),
-- and removes them when it stops.
--
-- Needs root or CAP_NET_ADMIN (and IP forwarding for targets on other hosts):
--   sysctl -w net.ipv4.ip_forward=1
--   smartproxy --check examples/nftables.lua    (asks the kernel for a dry run, prints the rules)
--   smartproxy examples/nftables.lua
--   nft list table ip smartproxy                (the rules, their counters)
--   curl -s http://127.0.0.1:9105/stats         ("nftables": packets and bytes by route)
--   smartproxy --nft-cleanup                    (after a crash: removes the tables)
--
-- The addresses are those of the namespaces tests/integration/test_nftables.py builds
-- (clients reach this host as 10.203.1.1, the backends are 10.203.2.2 and .3): change
-- them to yours.
local sp = require "smartproxy"

return {
  listen_addresses = { "127.0.0.1" },
  metrics = { listen = "127.0.0.1:9105" },
  routes = {
    -- TCP and UDP on 7000 to a backend; the backend sees the client's own address
    -- (it must route its answers back through this host)
    sp.nftables_route(nil, "10.203.2.2:9000", {
      name = "app", ports = 7000, protocol = "all", preserve_source_ip = true,
    }),
    -- a port range kept as is, for clients of 10.203.1.0/24 only, at most 100 Mbit/s
    -- (both directions together; the excess is dropped); the backend sees this host
    -- (masquerade), so it needs no route back
    {
      name = "range",
      match = { ports = { from = 7100, to = 7110 }, client_ip = "10.203.1.0/24" },
      action = {
        type = "forward",
        target = { host = "10.203.2.3", port = "preserve" },
        forwarding_engine = "nftables",
        nftables = { protocol = "tcp", max_rate = "100mbps" },
      },
      security = { ip_block_list = { "10.203.1.66" } },
    },
  },
}
