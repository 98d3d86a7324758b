//! The basic-auth side of the rendered config (issue 23, `com.docker.lb.auth_basic`): one
//! `userlist auth.<secret>` section per htpasswd file in force, and the frontend rules
//! `{{auth}}` becomes. Pure: no I/O.
//!
//! Why the lists are in the config: HAProxy has no Runtime API command that creates or edits
//! a `userlist` (2.6's management.txt mentions none; what 3.4 added at runtime is backends,
//! created from named `defaults`, which cannot hold a userlist), and `http_auth(<userlist>)`
//! names its list literally (configuration.txt 7.3.6, "http_auth"). So a list HAProxy has not
//! loaded costs one reload on every version; which
//! service uses which loaded list, and its realm, is a hosts map entry (`model::access`),
//! edited at runtime.
//!
//! The rules (frontend `http`, step 7b): `*<service>` in the hosts map is
//! `=a:<secret>:<realm percent-encoded>`; one line per loaded list marks the request
//! authenticated when the entry names that list and `http_auth` accepts the `Authorization`
//! header; a request with an entry and no mark gets 401 with `WWW-Authenticate: Basic
//! realm="<realm>"` (RFC 7617 2). An entry naming a list the worker does not hold therefore
//! lets nobody in: fail closed.
//!
//! HAProxy checks a password with the system's crypt(3) on every request (configuration.txt,
//! 3.4 "Userlists"); nothing is cached, so a bcrypt hash costs its full cost per request.

use std::collections::BTreeMap;

use crate::model::htpasswd::{self, Entry};

/// The prefix of every user list section swarm-lb writes (`userlist auth.<secret>`). A Docker
/// secret name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`) is a valid HAProxy section name after it.
pub const USERLIST_PREFIX: &str = "auth.";

/// The user lists to render: Docker secret name -> the htpasswd entries it held. `Debug`
/// shows no hash ([`Entry`]'s own `Debug` leaves it out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Userlists(BTreeMap<String, Vec<Entry>>);

impl Userlists {
    pub fn new(lists: BTreeMap<String, Vec<Entry>>) -> Self {
        Self(lists)
    }

    /// The lists, by secret name.
    pub fn lists(&self) -> &BTreeMap<String, Vec<Entry>> {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every list here is in `loaded` (the sections of the config HAProxy loaded,
    /// [`loaded_sections`]) with the same users and hashes.
    pub fn loaded_in(&self, loaded: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .all(|(secret, entries)| loaded.get(secret) == Some(&section(secret, entries)))
    }

    /// The secrets whose lists are not in `loaded` as here (names only).
    pub fn missing_from(&self, loaded: &BTreeMap<String, String>) -> Vec<String> {
        self.0
            .iter()
            .filter(|(secret, entries)| loaded.get(*secret) != Some(&section(secret, entries)))
            .map(|(secret, _)| secret.clone())
            .collect()
    }
}

/// The `userlist` section of `secret`: its header, then `user <name> password <hash>` per
/// entry, no blank line (so that [`without_auth`] can drop it line by line).
pub fn section(secret: &str, entries: &[Entry]) -> String {
    let mut out = format!("userlist {USERLIST_PREFIX}{secret}\n");
    for e in entries {
        out.push_str("    user ");
        out.push_str(&e.user);
        out.push_str(" password ");
        out.push_str(e.hash());
        out.push('\n');
    }
    out
}

/// Every section of `lists`, in secret name order.
pub fn sections(lists: &Userlists) -> String {
    lists
        .0
        .iter()
        .map(|(secret, entries)| section(secret, entries))
        .collect()
}

/// The rule lines `{{auth}}` becomes (without indentation), for the hosts map at `map`: the
/// basic-auth rules, then the forward-auth ones ([`forward_rules`]; `lua`: the template loads
/// the scripts).
pub fn frontend_rules(map: &str, lists: &Userlists, lua: bool) -> Vec<String> {
    let mut out = basic_rules(map, lists);
    out.extend(forward_rules(map, lua));
    out
}

/// The forward-auth rules (`com.docker.lb.auth_forward`, `model::access::forward_value`):
/// `+<service>` in the hosts map is `=f:<url>:<names>`; the Lua action
/// (`haproxy/lua/forward_auth.lua`) asks the URL and either marks the request
/// (`txn.fwd_auth_ok`) or answers it with the auth service's answer. A request for such a
/// service that is neither marked nor answered gets 503: the auth service was unreachable,
/// silent or broken, or the action is not loaded (`lua` false: a template without `{{lua}}`,
/// where the label is refused too). Fail closed.
pub fn forward_rules(map: &str, lua: bool) -> Vec<String> {
    let mut out = vec![format!(
        "http-request set-var(txn.fwd_auth) str(+),concat(,txn.service,),map({map}) if {{ var(txn.service) -m found }}"
    )];
    if lua {
        out.push(
            "http-request lua.swarm_lb_forward_auth if { var(txn.fwd_auth) -m found }".to_owned(),
        );
    }
    out.push(
        "http-request return status 503 content-type text/plain string \"swarm-lb: the authentication service did not answer\\n\" if { var(txn.fwd_auth) -m found } !{ var(txn.fwd_auth_ok) -m int 1 }"
            .to_owned(),
    );
    out
}

/// The basic-auth rules.
fn basic_rules(map: &str, lists: &Userlists) -> Vec<String> {
    let mut out = vec![
        format!(
            "http-request set-var(txn.auth) str(*),concat(,txn.service,),map({map}) if {{ var(txn.service) -m found }}"
        ),
        "http-request set-var(txn.auth_list) var(txn.auth),field(2,:) if { var(txn.auth) -m found }"
            .to_owned(),
    ];
    for secret in lists.0.keys() {
        out.push(format!(
            "http-request set-var(txn.auth_ok) bool(true) if {{ var(txn.auth_list) -m str {secret} }} {{ http_auth({USERLIST_PREFIX}{secret}) }}"
        ));
    }
    out.push(
        "http-request return status 401 hdr WWW-Authenticate \"Basic realm=\\\"%[var(txn.auth),field(3,:),url_dec]\\\"\" if { var(txn.auth) -m found } !{ var(txn.auth_ok) -m found }"
            .to_owned(),
    );
    out
}

/// What a config line says about sections.
enum Header<'a> {
    /// `userlist auth.<secret>`: one of ours starts.
    Ours(&'a str),
    /// Another section starts, or a blank line (ours never holds one): ours ends.
    Other,
    /// An indented line: the section goes on.
    None,
}

fn section_header(line: &str) -> Header<'_> {
    if line.trim().is_empty() {
        return Header::Other;
    }
    if line.starts_with(char::is_whitespace) {
        return Header::None;
    }
    match line
        .strip_prefix("userlist ")
        .and_then(|n| n.trim().strip_prefix(USERLIST_PREFIX))
    {
        Some(secret) => Header::Ours(secret),
        None => Header::Other,
    }
}

/// Whether `line` is one of the per-list rules of [`frontend_rules`].
fn is_list_rule(line: &str) -> bool {
    line.contains(" http_auth(auth.")
}

/// The lines of `config` that are not swarm-lb's user lists (their sections and per-list
/// rules): what stays the same when only the lists change.
pub fn without_auth(config: &str) -> impl Iterator<Item = &str> {
    let mut inside = false;
    config.lines().filter(move |line| {
        inside = match section_header(line) {
            Header::Ours(_) => true,
            Header::Other => false,
            Header::None => inside,
        };
        !inside && !is_list_rule(line)
    })
}

/// Whether `config` starts with `prefix` once both are read [`without_auth`].
pub fn starts_with_ignoring_auth(config: &str, prefix: &str) -> bool {
    let mut want = without_auth(prefix);
    let mut have = without_auth(config);
    loop {
        match (want.next(), have.next()) {
            (None, _) => return true,
            (Some(w), Some(h)) if w == h => {}
            _ => return false,
        }
    }
}

/// The user list sections of a config [`sections`] wrote: secret -> the section's text.
pub fn loaded_sections(config: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in config.lines() {
        match section_header(line) {
            Header::Ours(secret) => current = Some(secret.to_owned()),
            Header::Other => current = None,
            Header::None => {}
        }
        if let Some(secret) = &current {
            let text = out.entry(secret.clone()).or_default();
            text.push_str(line);
            text.push('\n');
        }
    }
    out
}

/// The entries of each loaded section, read back through the htpasswd reader (a section
/// [`section`] wrote always reads; one that does not is left out).
pub fn loaded_lists(config: &str) -> BTreeMap<String, Vec<Entry>> {
    section_lists(&loaded_sections(config))
}

/// [`loaded_lists`] from the sections [`loaded_sections`] gave (secret -> section text).
pub fn section_lists(sections: &BTreeMap<String, String>) -> BTreeMap<String, Vec<Entry>> {
    sections
        .iter()
        .filter_map(|(secret, text)| {
            let as_file: String = text
                .lines()
                .skip(1)
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    match (words.next(), words.next(), words.next(), words.next()) {
                        (Some("user"), Some(user), Some("password"), Some(hash)) => {
                            Some(format!("{user}:{hash}\n"))
                        }
                        _ => None,
                    }
                })
                .collect();
            htpasswd::parse(&as_file).ok().map(|e| (secret.clone(), e))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const BCRYPT: &str = "$2y$05$abcdefghijklmnopqrstuuJjX9o5m3wE3Vr2mN0m4mJ9gqH0lR1W6";

    fn lists() -> Userlists {
        let entries = htpasswd::parse(&format!("alice:{BCRYPT}\nbob:$6$salt$hash")).unwrap();
        Userlists::new(BTreeMap::from([("staff.v1".to_owned(), entries)]))
    }

    #[test]
    fn forward_auth_calls_the_lua_action_only_when_loaded_and_answers_503_without_its_mark() {
        let with = forward_rules("/m/hosts.map", true);
        assert_eq!(with.len(), 3);
        assert!(with[0].contains("str(+),concat(,txn.service,),map(/m/hosts.map)"));
        assert!(with[1].starts_with("http-request lua.swarm_lb_forward_auth if"));
        assert!(with[2].starts_with("http-request return status 503 "));
        assert!(with[2].ends_with("!{ var(txn.fwd_auth_ok) -m int 1 }"));
        // Without the scripts: no action HAProxy would refuse, and every request is a 503.
        let without = forward_rules("/m/hosts.map", false);
        assert_eq!(without, [with[0].clone(), with[2].clone()]);
    }

    #[test]
    fn a_list_is_a_userlist_section_and_one_rule_and_reads_back() {
        let text = sections(&lists());
        assert_eq!(
            text,
            format!(
                "userlist auth.staff.v1\n    user alice password {BCRYPT}\n    user bob password $6$salt$hash\n"
            )
        );
        let rules = frontend_rules("/m/hosts.map", &lists(), true);
        // Four basic-auth rules, then the three of forward auth.
        assert_eq!(rules.len(), 7);
        assert_eq!(rules[4..], forward_rules("/m/hosts.map", true)[..]);
        assert!(
            rules[2].ends_with("{ http_auth(auth.staff.v1) }"),
            "{}",
            rules[2]
        );
        assert!(rules[3].contains("realm=\\\"%[var(txn.auth),field(3,:),url_dec]\\\""));
        // A blank line after a section, as in a rendered config, ends it.
        let config = format!("global\n    x\n{text}\nfrontend f\n    {}\n", rules[2]);
        assert!(lists().loaded_in(&loaded_sections(&config)));
        assert_eq!(loaded_lists(&config), lists().lists().clone());
        assert_eq!(
            without_auth(&config).collect::<Vec<_>>(),
            ["global", "    x", "", "frontend f"]
        );
        assert!(starts_with_ignoring_auth(
            &config,
            "global\n    x\n\nfrontend f\n"
        ));
        assert!(!starts_with_ignoring_auth(&config, "global\n    y\n"));
        assert!(!Userlists::default()
            .missing_from(&BTreeMap::new())
            .iter()
            .any(|_| true));
        assert_eq!(lists().missing_from(&BTreeMap::new()), ["staff.v1"]);
    }

    #[test]
    fn a_debug_print_of_the_lists_shows_users_and_no_hash() {
        let shown = format!("{:?}", lists());
        assert!(shown.contains("alice"), "{shown}");
        assert!(!shown.contains(BCRYPT) && !shown.contains("$6$"), "{shown}");
    }
}
