//! The Lua files swarm-lb ships for HAProxy (`haproxy/lua/`): [`LUA_FILES`], written beside
//! the config by [`crate::haproxy::render::Files`] (so that an HAProxy in another container
//! that shares the config directory loads them like the config and the maps), and loaded by
//! the lines the template's `{{lua}}` placeholder becomes ([`global_lines`]). A template
//! without the placeholder gets those lines right after its `global` line.
//!
//! One list, one placeholder: a new Lua file is one row of [`LUA_FILES`].

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
pub const LUA_FILES: &[LuaFile] = &[LuaFile {
    name: HEADERS_LUA,
    text: include_str!("../../haproxy/lua/headers.lua"),
}];

/// The header actions (`swarm_lb_response_headers`, `swarm_lb_request_headers`): names of
/// `com.docker.lb.response_header.<Name>` / `request_header.<Name>` outside the offered ones.
pub const HEADERS_LUA: &str = "headers.lua";

/// The `global` lines that load [`LUA_FILES`] from beside the hosts map `map` (HAProxy's
/// path), without indentation. On 3.2+ `tune.lua.bool-sample-conversion` must come before
/// any `lua-load` (else a warning at every start); older versions do not know it, hence the
/// conditional block.
pub fn global_lines(map: &MapPath) -> Vec<String> {
    let mut out = vec![
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
    fn the_lua_files_load_from_beside_the_map_after_the_bool_conversion_tunable() {
        let map = MapPath::new("/run/swarm-lb/hosts.map").unwrap();
        assert_eq!(
            global_lines(&map),
            [
                ".if version_atleast(3.2)",
                "tune.lua.bool-sample-conversion normal",
                ".endif",
                "lua-load-per-thread /run/swarm-lb/headers.lua",
            ]
        );
        for file in LUA_FILES {
            assert!(file.text.contains("core.register_action"), "{}", file.name);
        }
    }
}
