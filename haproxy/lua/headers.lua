-- swarm-lb: headers of any name (com.docker.lb.response_header.<Name> and
-- request_header.<Name> for names the template has no fixed rule for; docs/shaping.md).
--
-- swarm-lb writes this file beside the config and the template's {{lua}} placeholder loads
-- it (lua-load-per-thread: no state is shared, so no lock between threads). The frontend
-- looks the service's list up in the hosts map (`$rl:<service>` / `$ql:<service>`) into
-- txn.rl / txn.ql, without its `=l:` prefix:
--     <name>:<value>[,<name>:<value>...]
-- each name and value percent-encoded by swarm-lb (model/shaping.rs, `encode`: every byte
-- but [A-Za-z0-9._~-] as %XX, so neither holds ':' or ','). An empty value removes the
-- header. swarm-lb checked the names (HTTP tokens, none that frames or routes a message)
-- and the values (no CR, LF or NUL) before writing the entry; this only decodes.

local function decode(s)
    return (s:gsub("%%(%x%x)", function(hex)
        return string.char(tonumber(hex, 16))
    end))
end

-- Applies the list in variable `var` to `http` with `set` / `del`.
local function apply(txn, var, set, del)
    local list = txn:get_var(var)
    if list == nil then
        return
    end
    local http = txn.http
    for name, value in string.gmatch(list, "([^,:]+):([^,]*)") do
        if value == "" then
            del(http, decode(name))
        else
            set(http, decode(name), decode(value))
        end
    end
end

local function responses(txn)
    apply(txn, "txn.rl", txn.http.res_set_header, txn.http.res_del_header)
end

local function requests(txn)
    apply(txn, "txn.ql", txn.http.req_set_header, txn.http.req_del_header)
end

-- HAProxy 3.0+ runs Lua actions in http-after-response (HAProxy's own 403, 429, 401 and 503
-- too); 2.6 knows only http-response there (responses from tasks). The refused environment
-- comes first, so that 2.6 registers nothing before refusing it.
if not pcall(core.register_action, "swarm_lb_response_headers", { "http-after-res", "http-res" }, responses, 0) then
    core.register_action("swarm_lb_response_headers", { "http-res" }, responses, 0)
end
core.register_action("swarm_lb_request_headers", { "http-req" }, requests, 0)
