//! The Lua files swarm-lb ships for HAProxy (`haproxy/lua/`): [`LUA_FILES`], written beside
//! the config by [`crate::haproxy::render::Files`] (so that an HAProxy in another container
//! that shares the config directory loads them like the config and the maps), and loaded by
//! the lines the template's `{{lua}}` placeholder becomes ([`global_lines`]). A template
//! without the placeholder gets those lines right after its `global` line.
//!
//! Every HAProxy swarm-lb supports is built with Lua (`USE_LUA=1`: Lua 5.3 on Debian's 2.6,
//! 5.4 on 3.0, 3.2 and 3.4). A file that changes between two swarm-lb versions takes effect at
//! the next reload. One list, one placeholder: a new Lua file is one row of [`LUA_FILES`].

use super::command::{CertPath, MapPath};
use super::Feature;

/// A Lua file HAProxy loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LuaFile {
    /// Its file name in the config directory.
    pub name: &'static str,
    /// Its text, compiled into swarm-lb.
    pub text: &'static str,
}

/// Every Lua file swarm-lb ships, each loaded with `lua-load-per-thread` (one Lua state per
/// thread: the actions share nothing, so they take no lock).
pub const LUA_FILES: &[LuaFile] = &[
    LuaFile {
        name: HEADERS_LUA,
        text: include_str!("../../haproxy/lua/headers.lua"),
    },
    LuaFile {
        name: FORWARD_AUTH_LUA,
        text: include_str!("../../haproxy/lua/forward_auth.lua"),
    },
];

/// The header actions (`swarm_lb_response_headers`, `swarm_lb_request_headers`): names of
/// `com.docker.lb.response_header.<Name>` / `request_header.<Name>` outside the offered ones.
pub const HEADERS_LUA: &str = "headers.lua";

/// `com.docker.lb.auth_forward` (docs/access.md): registers the action
/// `lua.swarm_lb_forward_auth` that `{{auth}}`'s rules call.
pub const FORWARD_AUTH_LUA: &str = "forward_auth.lua";

/// The `global` lines that load [`LUA_FILES`] from beside the hosts map `map` (HAProxy's
/// path), without indentation, in order:
/// - `httpclient.retries 0` from 2.7 (2.6 does not know the keyword): HAProxy's HTTP client
///   otherwise tries a silent auth service four times, each for the whole timeout; 2.6 does,
///   which is why the forward-auth bound there is 4 x 5 s (docs/access.md);
/// - on 3.2+ `tune.lua.bool-sample-conversion`, which must come before any `lua-load` (else a
///   warning at every start); older versions do not know it, hence the conditional block;
/// - one `lua-load-per-thread` per file.
pub fn global_lines(map: &MapPath) -> Vec<String> {
    let mut out = vec![
        ".if version_atleast(2.7)".to_owned(),
        "httpclient.retries 0".to_owned(),
        ".endif".to_owned(),
        Feature::LuaBoolSampleConversion.config_if(),
        "tune.lua.bool-sample-conversion normal".to_owned(),
        ".endif".to_owned(),
    ];
    for file in LUA_FILES {
        out.push(format!(
            "lua-load-per-thread {}",
            CertPath::beside(map, file.name)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lua_files_load_from_beside_the_map_after_the_client_and_lua_tunables() {
        let map = MapPath::new("/run/swarm-lb/hosts.map").unwrap();
        assert_eq!(
            global_lines(&map),
            [
                ".if version_atleast(2.7)",
                "httpclient.retries 0",
                ".endif",
                ".if version_atleast(3.2)",
                "tune.lua.bool-sample-conversion normal",
                ".endif",
                "lua-load-per-thread /run/swarm-lb/headers.lua",
                "lua-load-per-thread /run/swarm-lb/forward_auth.lua",
            ]
        );
        for file in LUA_FILES {
            assert!(file.text.contains("core.register_action"), "{}", file.name);
        }
    }

    #[test]
    fn the_forward_auth_file_registers_the_action_the_rules_call_and_marks_success() {
        let file = LUA_FILES
            .iter()
            .find(|f| f.name == FORWARD_AUTH_LUA)
            .expect("shipped");
        assert!(file
            .text
            .contains(r#"core.register_action("swarm_lb_forward_auth""#));
        assert!(file.text.contains(r#"txn:set_var("txn.fwd_auth_ok", 1)"#));
    }
}
