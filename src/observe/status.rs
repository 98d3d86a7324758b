//! `swarm-lb status`: what routes where, as an operator reads it. [`build`] joins HAProxy's
//! `show servers state` and hosts map with Swarm's task list; [`render`] prints the table.
//! Both pure; the daemon serves [`Status`] as JSON on `/status` and the CLI renders it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::changes::{admin_name, TaskIndex};
use crate::haproxy::codec::{admin_from_bits, check_result_name, MapEntry, ServerRow};
use crate::haproxy::state::PLACEHOLDER;
use crate::haproxy::Admin;
use crate::model::{MapKey, MapValue, ServerName, Snapshot};

/// Everything `swarm-lb status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// One per backend, by backend name.
    pub routes: Vec<Route>,
    /// Label problems, by service then label.
    pub problems: Vec<Problem>,
    /// Other nodes' hint agents this edge follows (`--hints`), by address; empty without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<HintSource>,
    /// The certificates served for `ssl_cert`/`ssl_key` labels, by service; empty without
    /// the HTTPS bind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<Certificate>,
    /// The reconciler's passes and reloads; `None` from a daemon too old to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passes: Option<Passes>,
    /// When the daemon built this view (unix seconds; 0: not said). Ages and expiries shown
    /// are counted from it, so rendering needs no clock.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub at: i64,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// A certificate HAProxy serves for a service (never the key).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Certificate {
    pub service: String,
    /// The Docker secret holding the certificate (`com.docker.lb.ssl_cert`).
    pub secret: String,
    /// The leaf's serial, hex.
    pub serial: String,
    /// The DNS names it covers.
    pub names: Vec<String>,
    /// Unix seconds.
    pub not_after: i64,
}

/// What the reconciler's passes and reloads came to since start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passes {
    pub ok: u64,
    pub failed: u64,
    /// The last pass, if one ran.
    pub last: Option<LastPass>,
    /// The last successful pass's end (unix seconds).
    pub last_ok_at: Option<i64>,
    pub reloads: u64,
    pub reload_failures: u64,
    /// The last reload, if one was made.
    pub last_reload: Option<LastReload>,
}

/// How the last pass ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastPass {
    /// Unix seconds.
    pub at: i64,
    /// Its error; `None`: it succeeded.
    pub error: Option<String>,
    /// How long it took (milliseconds), when it succeeded.
    pub took_ms: Option<u64>,
}

/// The last reload: when, why (a `swarm_lb_reloads_total` reason), and whether it worked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastReload {
    pub at: i64,
    pub reason: String,
    pub ok: bool,
}

/// One hint agent an edge follows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HintSource {
    /// `ip:port`.
    pub agent: String,
    /// Its Swarm node, once its stream said so.
    pub node: Option<String>,
    /// Its stream is live; false: that node's tasks change only with the task list.
    pub live: bool,
}

/// A backend and the hosts routed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Host names (lower case) routed here; `*` when it is the default backend.
    pub hosts: Vec<String>,
    /// The service (backends are named after their service, `<service>:<n>` for a later
    /// generation).
    pub service: String,
    /// `task` or `vip`.
    pub mode: String,
    pub backend: String,
    /// Used servers, in slot order.
    pub servers: Vec<ServerStatus>,
    /// Slots holding nothing (placeholder address, maint).
    pub free_slots: usize,
}

/// One used server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// `s1..sN`, or `vip`.
    pub slot: String,
    /// The task at this address as Docker names it (`<service>.<slot>.<task id>`); `None`
    /// for the VIP or an address no listed task holds.
    pub task: Option<String>,
    /// `ip:port`.
    pub address: String,
    /// swarm-lb's administrative state: `ready`, `drain` or `maint`.
    pub state: String,
    /// HAProxy's operational state: `up`, `down`, `starting` or `stopping`.
    pub health: String,
    /// The last health check's result: `passed`, `failed`, `unknown`, ...
    pub check: String,
}

/// A label problem on a service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub service: String,
    /// The label, or `-` for a problem of the service as a whole.
    pub label: String,
    /// `error` (label not applied) or `warning` (label ignored, routing works).
    pub severity: String,
    pub reason: String,
}

fn op_state_name(op: u8) -> &'static str {
    match op {
        0 => "down",
        1 => "starting",
        2 => "up",
        3 => "stopping",
        _ => "unknown",
    }
}

/// (backend, what an operator reads) for each route of the hosts map: `a.example`,
/// `a.example/app` (a context root), `a.example/app -> /` (rewritten), `a.example (20%)` (a
/// share of a route several services claim), `*` (the default backend). Redirects and
/// entries that are not swarm-lb's are left out.
fn routed_hosts(entries: &[MapEntry]) -> Vec<(String, String)> {
    let parsed: Vec<(MapKey, MapValue)> = entries
        .iter()
        .filter_map(|e| Some((MapKey::parse(&e.key).ok()?, MapValue::parse(&e.value).ok()?)))
        .collect();
    let shown = |key: &MapKey| -> String {
        if key.is_catch_all() {
            return "*".to_owned();
        }
        key.as_str().trim_end_matches('/').to_owned()
    };
    let rewritten = |value: &MapValue| value.as_str().contains('|');
    let mut out = Vec::new();
    for (key, value) in parsed.iter().filter(|(k, _)| !k.is_bucket()) {
        if let Some(backend) = value.target_backend() {
            let mut text = shown(key);
            if rewritten(value) {
                text.push_str(" -> /");
            }
            out.push((backend.to_string(), text));
        } else if value.as_str().starts_with('~') {
            let prefix = format!("~{key}=");
            let mut buckets: BTreeMap<String, (usize, bool)> = BTreeMap::new();
            for (_, v) in parsed
                .iter()
                .filter(|(k, _)| k.as_str().starts_with(&prefix))
            {
                if let Some(b) = v.target_backend() {
                    let e = buckets.entry(b.to_string()).or_default();
                    e.0 += 1;
                    e.1 |= rewritten(v);
                }
            }
            let total: usize = buckets.values().map(|(n, _)| n).sum::<usize>().max(1);
            for (backend, (n, rewrite)) in buckets {
                let mut text = shown(key);
                if rewrite {
                    text.push_str(" -> /");
                }
                text.push_str(&format!(" ({}%)", n * 100 / total));
                out.push((backend, text));
            }
        }
    }
    out
}

/// Joins what HAProxy holds (`rows` of `show servers state`, `hosts` of `show map`) with
/// Swarm's tasks (`snap`, for task names; `None` leaves them out) and the label `problems`.
pub fn build(
    snap: Option<&Snapshot>,
    rows: &[ServerRow],
    hosts: &[MapEntry],
    problems: &[Problem],
) -> Status {
    let index = snap.map(TaskIndex::new);
    let mut routes: BTreeMap<String, Route> = BTreeMap::new();
    for row in rows {
        let backend = row.backend.as_str();
        if backend.starts_with('_') {
            continue;
        }
        let service = row.backend.service();
        let route = routes.entry(backend.to_owned()).or_insert_with(|| Route {
            hosts: Vec::new(),
            service: service.to_owned(),
            mode: "task".to_owned(),
            backend: backend.to_owned(),
            servers: Vec::new(),
            free_slots: 0,
        });
        let admin = admin_from_bits(row.admin_state);
        let addr = std::net::SocketAddr::new(row.addr, row.port);
        if admin == Admin::Maint && addr == PLACEHOLDER {
            route.free_slots += 1;
            continue;
        }
        let vip = row.server.as_str() == ServerName::VIP;
        if vip {
            route.mode = "vip".to_owned();
        }
        route.servers.push(ServerStatus {
            slot: row.server.as_str().to_owned(),
            task: match (&index, vip) {
                (Some(i), false) => i.name(service, row.addr),
                _ => None,
            },
            address: addr.to_string(),
            state: admin_name(admin).to_owned(),
            health: op_state_name(row.op_state).to_owned(),
            check: check_result_name(row.check_result).to_owned(),
        });
    }
    for (backend, host) in routed_hosts(hosts) {
        if let Some(route) = routes.get_mut(&backend) {
            route.hosts.push(host);
        }
    }
    let mut routes: Vec<Route> = routes.into_values().collect();
    for r in &mut routes {
        r.hosts.sort();
        r.servers.sort_by_key(|s| slot_number(&s.slot));
    }
    let mut problems = problems.to_vec();
    problems.sort();
    Status {
        routes,
        problems,
        ..Status::default()
    }
}

/// `s12` -> 12, so slots sort as numbers; the vip server first.
fn slot_number(slot: &str) -> u64 {
    slot.strip_prefix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The table: one line per server (host, service, mode and backend on the first line of each
/// backend), free slots counted, then the label problems, the certificates, the passes and
/// reloads, and the node hints (each when there is any).
pub fn render(status: &Status) -> String {
    let mut rows: Vec<[String; 10]> = vec![[
        "HOST", "SERVICE", "MODE", "BACKEND", "SLOT", "TASK", "ADDRESS", "STATE", "HEALTH", "CHECK",
    ]
    .map(str::to_owned)];
    for r in &status.routes {
        let hosts = if r.hosts.is_empty() {
            "(no host)".to_owned()
        } else {
            r.hosts.join(",")
        };
        let head = [hosts, r.service.clone(), r.mode.clone(), r.backend.clone()];
        let mut first = true;
        let mut lead = || {
            let h = if first {
                head.clone()
            } else {
                Default::default()
            };
            first = false;
            h
        };
        for s in &r.servers {
            let [a, b, c, d] = lead();
            rows.push([
                a,
                b,
                c,
                d,
                s.slot.clone(),
                s.task.clone().unwrap_or_else(|| "-".to_owned()),
                s.address.clone(),
                s.state.clone(),
                s.health.clone(),
                s.check.clone(),
            ]);
        }
        if r.free_slots > 0 || r.servers.is_empty() {
            let [a, b, c, d] = lead();
            let free = format!("({} free)", r.free_slots);
            let dash = || "-".to_owned();
            rows.push([a, b, c, d, free, dash(), dash(), dash(), dash(), dash()]);
        }
    }
    let mut out = String::new();
    if status.routes.is_empty() {
        out.push_str("no service is routed\n");
    } else {
        table(&mut out, &rows);
    }
    if !status.problems.is_empty() {
        out.push_str("\nLABEL PROBLEMS\n");
        let mut rows = vec![["SERVICE", "LABEL", "SEVERITY", "REASON"].map(str::to_owned)];
        for p in &status.problems {
            rows.push([
                p.service.clone(),
                p.label.clone(),
                p.severity.clone(),
                p.reason.clone(),
            ]);
        }
        table(&mut out, &rows);
    }
    if !status.certificates.is_empty() {
        out.push_str("\nCERTIFICATES\n");
        let mut rows = vec![[
            "SERVICE",
            "SECRET",
            "NOT AFTER (UNIX)",
            "DAYS LEFT",
            "NAMES",
        ]
        .map(str::to_owned)];
        for c in &status.certificates {
            let left = if status.at == 0 {
                "-".to_owned()
            } else {
                (c.not_after.saturating_sub(status.at).div_euclid(86_400)).to_string()
            };
            rows.push([
                c.service.clone(),
                c.secret.clone(),
                c.not_after.to_string(),
                left,
                c.names.join(","),
            ]);
        }
        table(&mut out, &rows);
    }
    if let Some(p) = &status.passes {
        out.push_str("\nPASSES\n");
        let _ = writeln!(
            out,
            "{} succeeded, {} failed; reloads: {} done, {} failed",
            p.ok, p.failed, p.reloads, p.reload_failures
        );
        let ago = |at: i64| {
            if status.at == 0 {
                format!("at {at} (unix)")
            } else {
                format!("{} s ago", status.at.saturating_sub(at))
            }
        };
        if let Some(last) = &p.last {
            let _ = match &last.error {
                None => writeln!(out, "last pass: ok, {}", ago(last.at)),
                Some(e) => writeln!(out, "last pass: failed, {}: {e}", ago(last.at)),
            };
        }
        if let Some(r) = &p.last_reload {
            let outcome = if r.ok { "done" } else { "failed" };
            let _ = writeln!(out, "last reload: {outcome}, {} ({})", ago(r.at), r.reason);
        }
    }
    if !status.hints.is_empty() {
        out.push_str("\nNODE HINTS\n");
        let mut rows = vec![["NODE", "AGENT", "STREAM"].map(str::to_owned)];
        for h in &status.hints {
            rows.push([
                h.node.clone().unwrap_or_else(|| "-".to_owned()),
                h.agent.clone(),
                if h.live {
                    "live"
                } else {
                    "lost: task list only"
                }
                .to_owned(),
            ]);
        }
        table(&mut out, &rows);
    }
    out
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table<const N: usize>(out: &mut String, rows: &[[String; N]]) {
    let mut widths = [0; N];
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{fixtures, BackendName, DesiredTaskState};

    fn row(b: &str, s: &str, addr: &str, op: u8, admin: u8, check: u8) -> ServerRow {
        let a: std::net::SocketAddr = addr.parse().unwrap();
        ServerRow {
            backend: BackendName::parse(b).unwrap(),
            server: ServerName::parse(s).unwrap(),
            addr: a.ip(),
            port: a.port(),
            op_state: op,
            admin_state: admin,
            check_result: check,
            check_state: 0,
        }
    }

    fn snap() -> Snapshot {
        let task = |id, slot, ip| fixtures::task(id, slot, ip, DesiredTaskState::Running);
        fixtures::web(vec![task("abc", 1, "10.0.1.5"), task("def", 2, "10.0.1.6")])
    }

    fn sample() -> Status {
        let rows = [
            row("web", "s1", "10.0.1.5:8080", 2, 0, 3),
            row("web", "s2", "10.0.1.6:8080", 2, 8, 3),
            row("web", "s3", "127.0.0.1:1", 0, 1, 0),
            row("api", "vip", "10.0.2.2:80", 2, 0, 0),
            row("_default", "s1", "127.0.0.1:1", 0, 1, 0),
        ];
        let hosts = [
            MapEntry {
                key: "web.example/".into(),
                value: "web".into(),
            },
            MapEntry {
                key: "www.example/".into(),
                value: "web".into(),
            },
            MapEntry {
                key: crate::model::CATCH_ALL.into(),
                value: "api".into(),
            },
        ];
        let problems = [Problem {
            service: "bad".into(),
            label: "com.docker.lb.port".into(),
            severity: "error".into(),
            reason: "label com.docker.lb.port=\"0\": must be 1-65535".into(),
        }];
        build(Some(&snap()), &rows, &hosts, &problems)
    }

    #[test]
    fn routes_show_context_roots_rewrites_and_canary_shares() {
        let entry = |k: &str, v: &str| MapEntry {
            key: k.into(),
            value: v.into(),
        };
        let mut entries = vec![
            entry("shop.example/", "site"),
            entry("shop.example/api/", "api|1"),
            entry("demo.example/", "~demo.example/"),
            entry("old.example/", ">302|0|http://new.example"),
            entry("bad key", "web"),
        ];
        for n in 0..100 {
            let b = if n < 80 { "v1" } else { "v2" };
            entries.push(entry(&format!("~demo.example/={n}"), b));
        }
        let mut got = routed_hosts(&entries);
        got.sort();
        assert_eq!(
            got,
            [
                ("api".to_owned(), "shop.example/api -> /".to_owned()),
                ("site".to_owned(), "shop.example".to_owned()),
                ("v1".to_owned(), "demo.example (80%)".to_owned()),
                ("v2".to_owned(), "demo.example (20%)".to_owned()),
            ]
        );
    }

    #[test]
    fn status_joins_servers_with_their_tasks_hosts_and_counts_free_slots() {
        let s = sample();
        assert_eq!(s.routes.len(), 2, "internal backends are left out");
        let web = &s.routes[1];
        assert_eq!(web.hosts, ["web.example", "www.example"]);
        assert_eq!((web.mode.as_str(), web.free_slots), ("task", 1));
        assert_eq!(web.servers[0].task.as_deref(), Some("web.1.abc"));
        assert_eq!(
            (web.servers[1].state.as_str(), web.servers[1].check.as_str()),
            ("drain", "passed")
        );
        let api = &s.routes[0];
        assert_eq!(
            (api.mode.as_str(), api.hosts.clone()),
            ("vip", vec!["*".to_owned()])
        );
        assert_eq!(api.servers[0].task, None);
    }

    #[test]
    fn the_table_names_each_server_once_and_lists_label_problems() {
        let text = render(&sample());
        let expected = "\
HOST                     SERVICE  MODE  BACKEND  SLOT      TASK       ADDRESS        STATE  HEALTH  CHECK
*                        api      vip   api      vip       -          10.0.2.2:80    ready  up      unknown
web.example,www.example  web      task  web      s1        web.1.abc  10.0.1.5:8080  ready  up      passed
                                                 s2        web.2.def  10.0.1.6:8080  drain  up      passed
                                                 (1 free)  -          -              -      -       -

LABEL PROBLEMS
SERVICE  LABEL               SEVERITY  REASON
bad      com.docker.lb.port  error     label com.docker.lb.port=\"0\": must be 1-65535
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn status_round_trips_through_json() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
    }

    #[test]
    fn the_table_ends_with_certificates_and_the_last_pass_and_reload() {
        let status = Status {
            certificates: vec![Certificate {
                service: "web".into(),
                secret: "web-cert".into(),
                serial: "01".into(),
                names: vec!["web.example".into()],
                not_after: 1_000_000 + 20 * 86_400 + 5,
            }],
            passes: Some(Passes {
                ok: 3,
                failed: 1,
                last: Some(LastPass {
                    at: 1_000_000 - 2,
                    error: Some("admin socket: timeout".into()),
                    took_ms: None,
                }),
                last_ok_at: Some(1_000_000 - 9),
                reloads: 1,
                reload_failures: 0,
                last_reload: Some(LastReload {
                    at: 1_000_000 - 60,
                    reason: "backend_created".into(),
                    ok: true,
                }),
            }),
            at: 1_000_000,
            ..Status::default()
        };
        let text = render(&status);
        let expected = "\
no service is routed

CERTIFICATES
SERVICE  SECRET    NOT AFTER (UNIX)  DAYS LEFT  NAMES
web      web-cert  2728005           20         web.example

PASSES
3 succeeded, 1 failed; reloads: 1 done, 0 failed
last pass: failed, 2 s ago: admin socket: timeout
last reload: done, 60 s ago (backend_created)
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn an_empty_proxy_says_nothing_is_routed() {
        assert_eq!(render(&Status::default()), "no service is routed\n");
    }
}
