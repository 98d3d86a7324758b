-- swarm-lb: forward authentication (com.docker.lb.auth_forward; docs/access.md).
--
-- Written by swarm-lb beside the generated config and the hosts map, and loaded by the
-- template's `{{lua}}` line (`lua-load-per-thread`: one Lua state per thread, no lock). The frontend's `{{auth}}` rules put the service's hosts map entry
-- `+<service>` = `=f:<url, percent-encoded>:<Name,Name,...>` in `txn.fwd_auth` and call the
-- action `lua.swarm_lb_forward_auth` for it. The action:
--   1. removes the client's own copies of the named headers, in both spellings (`-` and `_`:
--      CGI, WSGI and PHP read `Remote_User` as `Remote-User`), always: a client cannot pass
--      off a header the auth service vouches for;
--   2. asks the URL (GET) with the client's request headers (as Traefik's forwardAuth does:
--      Accept, Cookie, Authorization, User-Agent, X-Requested-With... an auth service such as
--      Authelia answers a browser, `Accept: text/html`, with a redirect to its portal and an
--      API client with 401) except the hop-by-hop ones, Host and the body's framing, and the
--      original method, protocol, host, URI and client address in
--      X-Forwarded-Method/-Proto/-Host/-Uri/-For, waiting at most TIMEOUT_MS;
--   3. 2xx: copies the named headers of the answer onto the request and sets
--      `txn.fwd_auth_ok`; 3xx or 4xx: sends that answer to the client as it is (status,
--      headers such as Location and Set-Cookie, body) and ends the request.
-- Anything else (the service unreachable, a timeout, a 5xx, no status, an error in this script)
-- leaves `txn.fwd_auth_ok` unset, and the rule after the action answers 503: a failing auth
-- service closes the route, never opens it.

-- Each attempt's bound. From 2.7 the template's `{{lua}}` lines set `httpclient.retries 0`,
-- so this is the whole wait; 2.6 cannot turn its HTTP client's three retries off, so a
-- silent auth service costs up to four attempts there (20 s).
local TIMEOUT_MS = 5000

-- Hop-by-hop headers (RFC 9110 7.6.1) and the length, which HAProxy sets itself: never
-- copied from the auth service's answer to the client.
local HOP = {
    ["connection"] = true, ["keep-alive"] = true, ["proxy-connection"] = true,
    ["te"] = true, ["trailer"] = true, ["transfer-encoding"] = true, ["upgrade"] = true,
    ["content-length"] = true,
}

-- Request headers never sent to the auth service: the connection's, the body's framing, the
-- Host (the auth service's own), and those it is told in X-Forwarded-* by this script.
local NOT_SENT = {
    ["connection"] = true, ["keep-alive"] = true, ["proxy-connection"] = true,
    ["te"] = true, ["trailer"] = true, ["transfer-encoding"] = true, ["upgrade"] = true,
    ["content-length"] = true, ["expect"] = true, ["host"] = true,
    ["x-forwarded-method"] = true, ["x-forwarded-proto"] = true, ["x-forwarded-host"] = true,
    ["x-forwarded-uri"] = true, ["x-forwarded-for"] = true, ["forwarded"] = true,
}

local function unescape(text)
    return (text:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end))
end

-- The values of header `name` (lower case) in a table HAProxy built: indexed from 0 in
-- `req_get_headers`, from 0 or 1 in the HTTP client's answer, depending on the version.
local function values(headers, name)
    local out = {}
    local list = headers and headers[name]
    if type(list) == "string" then
        out[1] = list
    elseif type(list) == "table" then
        local i = 0
        if list[0] == nil then i = 1 end
        while list[i] ~= nil do
            out[#out + 1] = list[i]
            i = i + 1
        end
    end
    return out
end

local function first(headers, name)
    return values(headers, name)[1]
end

local function forward_auth(txn)
    local entry = txn:get_var("txn.fwd_auth")
    if entry == nil then return end
    local url, names = string.match(entry, "^=f:([^:]+):([%w,-]*)$")
    if url == nil then return end
    url = unescape(url)
    local http = txn.http
    local request = http:req_get_headers()
    local copy = {}
    local vouched = {}
    for name in string.gmatch(names, "[^,]+") do
        copy[#copy + 1] = name
        local underscored = (string.gsub(name, "-", "_"))
        http:req_del_header(name)
        http:req_del_header(underscored)
        vouched[string.lower(name)] = true
        vouched[string.lower(underscored)] = true
    end
    local ask = {}
    for name, _ in pairs(request) do
        local lower = string.lower(name)
        if not NOT_SENT[lower] and not vouched[lower] then
            ask[lower] = values(request, lower)
        end
    end
    -- One Cookie header (RFC 6265, 5.4), whatever HTTP/2 split it into.
    local cookies = values(request, "cookie")
    if #cookies > 0 then ask["cookie"] = { table.concat(cookies, "; ") } end
    ask["x-forwarded-method"] = { txn.sf:method() }
    ask["x-forwarded-proto"] = { first(request, "x-forwarded-proto") or "http" }
    ask["x-forwarded-host"] = { first(request, "host") or "" }
    ask["x-forwarded-uri"] = { txn.sf:pathq() or "/" }
    ask["x-forwarded-for"] = { txn.sf:src() or "" }

    local client = core.httpclient()
    local answer = client:get({ url = url, headers = ask, timeout = TIMEOUT_MS })
    local status = answer and tonumber(answer.status)
    -- 5xx too: HAProxy's HTTP client makes 502/503/504 of an auth service it could not
    -- reach or that did not answer in time, and an auth service failing is no verdict.
    if status == nil or status < 200 or status > 499 then
        return -- no verdict: the rule after the action answers 503
    end
    if status >= 200 and status < 300 then
        for _, name in ipairs(copy) do
            for _, value in ipairs(values(answer.headers, string.lower(name))) do
                http:req_add_header(name, value)
            end
        end
        txn:set_var("txn.fwd_auth_ok", 1)
        return
    end
    local reply = txn:reply()
    reply:set_status(status, answer.reason)
    if type(answer.headers) == "table" then
        for name, _ in pairs(answer.headers) do
            local lower = string.lower(name)
            if not HOP[lower] then
                for _, value in ipairs(values(answer.headers, name)) do
                    reply:add_header(lower, value)
                end
            end
        end
    end
    reply:set_body(answer.body or "")
    txn:done(reply)
end

core.register_action("swarm_lb_forward_auth", { "http-req" }, forward_auth, 0)
