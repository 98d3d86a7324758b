//! The Lua scripts swarm-lb ships for HAProxy (`haproxy/lua/`), and the global-section lines
//! the template's `{{lua}}` line becomes. Pure: the files are written by
//! [`crate::haproxy::render::Files`].
//!
//! Every HAProxy swarm-lb supports is built with Lua (`USE_LUA=1`: Lua 5.3 on Debian's 2.6,
//! 5.4 on 3.0, 3.2 and 3.4). The scripts are written into `lua/` beside the hosts map, in the
//! config directory the HAProxy process reads (in the compose and stack setups it runs in
//! another container, on the same volume, under the same path), and `lua-load`ed at start and
//! on each reload. A script that changes between two swarm-lb versions takes effect at the
//! next reload.

use crate::haproxy::command::MapPath;

/// The scripts, by file name: each is loaded by one `lua-load` line.
pub const SCRIPTS: &[(&str, &str)] = &[(
    FORWARD_AUTH,
    include_str!("../../haproxy/lua/forward_auth.lua"),
)];

/// `com.docker.lb.auth_forward` (docs/access.md): registers the action
/// `lua.swarm_lb_forward_auth` that `{{auth}}`'s rules call.
pub const FORWARD_AUTH: &str = "forward_auth.lua";

/// The directory of the scripts, beside the hosts map.
pub const DIR: &str = "lua";

/// The path HAProxy loads script `name` from: `<dir of the hosts map>/lua/<name>`.
pub fn script_path(hosts_map: &MapPath, name: &str) -> String {
    let dir = hosts_map
        .as_str()
        .rsplit_once('/')
        .map_or("", |(dir, _)| dir);
    format!("{dir}/{DIR}/{name}")
}

/// The lines `{{lua}}` becomes (without indentation), in order:
/// - `httpclient.retries 0` from 2.7 (the keyword is unknown to 2.6): HAProxy's HTTP client
///   otherwise tries a silent auth service four times, each for the whole timeout; on 2.6 it
///   does, which is why the bound there is 4 x 5 s (docs/access.md);
/// - `tune.lua.bool-sample-conversion normal` from 3.1, which warns without it (the scripts
///   convert no boolean sample, so either value gives the same result);
/// - one `lua-load` per script.
///
/// The version conditions are HAProxy's own `.if version_atleast(...)` blocks (2.4+), so one
/// config loads on every version without a warning.
pub fn global_lines(hosts_map: &MapPath) -> Vec<String> {
    let mut out = vec![
        ".if version_atleast(2.7)".to_owned(),
        "httpclient.retries 0".to_owned(),
        ".endif".to_owned(),
        ".if version_atleast(3.1)".to_owned(),
        "tune.lua.bool-sample-conversion normal".to_owned(),
        ".endif".to_owned(),
    ];
    out.extend(
        SCRIPTS
            .iter()
            .map(|(name, _)| format!("lua-load {}", script_path(hosts_map, name))),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_are_loaded_from_lua_beside_the_hosts_map() {
        let map = MapPath::new("/run/swarm-lb/hosts.map").unwrap();
        assert_eq!(
            script_path(&map, FORWARD_AUTH),
            "/run/swarm-lb/lua/forward_auth.lua"
        );
        let lines = global_lines(&map);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("lua-load /run/swarm-lb/lua/forward_auth.lua")
        );
        // Each condition closed, so the lines can stand anywhere in `global`.
        let opened = lines.iter().filter(|l| l.starts_with(".if ")).count();
        let closed = lines.iter().filter(|l| *l == ".endif").count();
        assert_eq!(opened, closed);
    }

    #[test]
    fn the_forward_auth_script_registers_the_action_the_rules_call() {
        let (_, text) = SCRIPTS
            .iter()
            .find(|(n, _)| *n == FORWARD_AUTH)
            .expect("shipped");
        assert!(text.contains(r#"core.register_action("swarm_lb_forward_auth""#));
        assert!(text.contains("txn.fwd_auth_ok"));
    }
}
