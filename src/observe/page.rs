//! The status page (`GET /` on the listener): the [`Status`] that `swarm-lb status` prints,
//! as one HTML document. Pure: [`render_html`] reads nothing but its argument (ages and
//! expiries are counted from [`Status::at`]), so a test renders it from a fixture.
//!
//! Server-rendered, no script and no external asset: one inline `<style>`, which is all the
//! listener's Content-Security-Policy lets the page use. Every value that comes from Docker
//! (service and host names, label keys and values, the text of label errors, task names) or
//! from HAProxy goes through [`Esc`]: a hostile label value renders as text, never as markup.
//! Attribute values are only this module's fixed class names.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use super::status::{Certificate, Passes, Route, ServerStatus, Status};

/// The page's `Content-Type`.
pub const CONTENT_TYPE: &str = "text/html; charset=utf-8";

/// How often the browser reloads the page (a `<meta http-equiv="refresh">`, no script).
pub const REFRESH_SECS: u32 = 10;

/// A certificate expiring within this many days is marked.
const EXPIRY_WARN_DAYS: i64 = 14;

/// `text` with `& < > " '` as character references: safe in element content and in a
/// double- or single-quoted attribute value.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// [`Esc`] into a `String`.
pub fn escape(text: &str) -> String {
    Esc(text).to_string()
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d1d1f;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .5em}\
h3{font-size:1.05em;margin:0 0 .4em;font-family:ui-monospace,monospace}\
.sub{color:#555;margin:0}\
section.host{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:.8em 0}\
.backend{margin:.6em 0 .2em}.backend p{margin:.2em 0}\
table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.25em .6em;border-bottom:1px solid #eee;vertical-align:top}\
th{font-weight:600;color:#444;background:#f3f3f3}\
td.mono,span.mono{font-family:ui-monospace,monospace;overflow-wrap:break-word}\
td.key{font-family:ui-monospace,monospace;white-space:nowrap}\
td.text{font-family:ui-monospace,monospace;overflow-wrap:anywhere}\
.tag{display:inline-block;padding:0 .45em;border-radius:3px;font-size:.85em;background:#eee}\
.ok{color:#11703a}.warn{color:#8a5a00}.bad{color:#b3261e;font-weight:600}\
.tag.share{background:#e3ecff}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;margin:0}dt{color:#555}dd{margin:0}\
.none{color:#777}";

/// The whole page.
pub fn render_html(status: &Status) -> String {
    let mut out = String::with_capacity(4096);
    let _ = write_page(&mut out, status);
    out
}

fn write_page(out: &mut String, s: &Status) -> fmt::Result {
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\n\
         <title>swarm-lb status</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
    )?;
    let servers: usize = s.routes.iter().map(|r| r.servers.len()).sum();
    let errors = s.problems.iter().filter(|p| p.severity == "error").count();
    writeln!(out, "<header>\n<h1>swarm-lb</h1>")?;
    write!(
        out,
        "<p class=\"sub\" id=\"summary\">{} {}, {} {}, {} label {}",
        s.routes.len(),
        plural(s.routes.len(), "backend", "backends"),
        servers,
        plural(servers, "server", "servers"),
        s.problems.len(),
        plural(s.problems.len(), "problem", "problems"),
    )?;
    if errors > 0 {
        write!(out, " (<span class=\"bad\">{errors} refused</span>)")?;
    }
    if s.at != 0 {
        write!(out, "; read at {}", utc(s.at))?;
    }
    writeln!(
        out,
        ". This page reloads every {REFRESH_SECS} s.</p>\n</header>"
    )?;
    passes(out, s.passes.as_ref(), s.at)?;
    routes(out, &s.routes)?;
    problems(out, s)?;
    certificates(out, &s.certificates, s.at)?;
    hints(out, s)?;
    out.push_str("</body>\n</html>\n");
    Ok(())
}

fn plural<'a>(n: usize, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn passes(out: &mut String, p: Option<&Passes>, now: i64) -> fmt::Result {
    let Some(p) = p else {
        return Ok(());
    };
    writeln!(
        out,
        "<section id=\"passes\">\n<h2>Passes and reloads</h2>\n<dl>"
    )?;
    out.push_str("<dt>Last pass</dt><dd>");
    match &p.last {
        None => out.push_str("<span class=\"none\">none yet</span>"),
        Some(last) => {
            match &last.error {
                None => out.push_str("<span class=\"ok\">succeeded</span>"),
                Some(e) => write!(out, "<span class=\"bad\">failed</span>: {}", Esc(e))?,
            }
            write!(out, ", {}", when(last.at, now))?;
            if let Some(ms) = last.took_ms {
                write!(out, ", took {ms} ms")?;
            }
        }
    }
    out.push_str("</dd>\n");
    write!(out, "<dt>Last successful pass</dt><dd>")?;
    match p.last_ok_at {
        Some(at) => out.push_str(&when(at, now)),
        None => out.push_str("<span class=\"none\">none yet</span>"),
    }
    writeln!(out, "</dd>")?;
    writeln!(
        out,
        "<dt>Passes</dt><dd>{} succeeded, {} failed</dd>",
        p.ok, p.failed
    )?;
    write!(
        out,
        "<dt>Reloads</dt><dd>{} done, {} failed",
        p.reloads, p.reload_failures
    )?;
    if let Some(r) = &p.last_reload {
        let outcome = if r.ok {
            "<span class=\"ok\">done</span>"
        } else {
            "<span class=\"bad\">failed</span>"
        };
        write!(
            out,
            "; the last {outcome} {} (reason <span class=\"mono\">{}</span>)",
            when(r.at, now),
            Esc(&r.reason)
        )?;
    }
    writeln!(out, "</dd>\n</dl>\n</section>")
}

/// A host as the status view writes it, and the share of it a backend gets, if shared:
/// `demo.example (20%)` -> (`demo.example`, `20%`).
fn split_share(host: &str) -> (&str, Option<&str>) {
    if let Some(head) = host.strip_suffix("%)") {
        if let Some((name, n)) = head.rsplit_once(" (") {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                return (name, Some(&host[name.len() + 2..host.len() - 1]));
            }
        }
    }
    (host, None)
}

/// Where a host goes: (index in `routes`, share of the host), in route order.
type Targets<'a> = Vec<(usize, Option<&'a str>)>;

/// Host -> service -> backend -> slots: hosts routed to the same backends (with the same
/// shares) are one group; a group lists each backend with its share and slots.
fn routes(out: &mut String, routes: &[Route]) -> fmt::Result {
    writeln!(out, "<section id=\"routes\">\n<h2>Routes</h2>")?;
    if routes.is_empty() {
        return writeln!(
            out,
            "<p class=\"none\">No service is routed.</p>\n</section>"
        );
    }
    let mut by_host: BTreeMap<&str, Targets> = BTreeMap::new();
    for (i, r) in routes.iter().enumerate() {
        if r.hosts.is_empty() {
            by_host.entry("(no host)").or_default().push((i, None));
        }
        for h in &r.hosts {
            let (name, share) = split_share(h);
            by_host.entry(name).or_default().push((i, share));
        }
    }
    // The same targets -> their hosts, in host order.
    let mut groups: Vec<(Targets, Vec<&str>)> = Vec::new();
    for (host, targets) in by_host {
        match groups.iter_mut().find(|(t, _)| *t == targets) {
            Some((_, hosts)) => hosts.push(host),
            None => groups.push((targets, vec![host])),
        }
    }
    for (targets, hosts) in groups {
        out.push_str("<section class=\"host\">\n<h3>");
        for (n, h) in hosts.iter().enumerate() {
            if n > 0 {
                out.push_str(", ");
            }
            write!(out, "{}", Esc(h))?;
        }
        out.push_str("</h3>\n");
        for (i, share) in targets {
            backend(out, &routes[i], share)?;
        }
        out.push_str("</section>\n");
    }
    out.push_str("</section>\n");
    Ok(())
}

fn backend(out: &mut String, r: &Route, share: Option<&str>) -> fmt::Result {
    write!(
        out,
        "<div class=\"backend\">\n<p>service <strong class=\"mono\">{}</strong>, backend \
         <span class=\"mono\">{}</span>, <span class=\"tag\">{}</span>",
        Esc(&r.service),
        Esc(&r.backend),
        Esc(&r.mode)
    )?;
    if let Some(share) = share {
        write!(
            out,
            " <span class=\"tag share\">{} of the host</span>",
            Esc(share)
        )?;
    }
    writeln!(out, "</p>")?;
    out.push_str(
        "<table>\n<tr><th>Slot</th><th>Task</th><th>Address</th><th>State</th>\
         <th>Health</th><th>Check</th></tr>\n",
    );
    for s in &r.servers {
        server(out, s)?;
    }
    if r.free_slots > 0 || r.servers.is_empty() {
        writeln!(
            out,
            "<tr><td class=\"none\" colspan=\"6\">{} free {}</td></tr>",
            r.free_slots,
            plural(r.free_slots, "slot", "slots")
        )?;
    }
    out.push_str("</table>\n</div>\n");
    Ok(())
}

fn server(out: &mut String, s: &ServerStatus) -> fmt::Result {
    writeln!(
        out,
        "<tr><td class=\"key\">{}</td><td class=\"mono\">{}</td><td class=\"key\">{}</td>\
         <td class=\"{}\">{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td></tr>",
        Esc(&s.slot),
        Esc(s.task.as_deref().unwrap_or("-")),
        Esc(&s.address),
        tone(&s.state),
        Esc(&s.state),
        tone(&s.health),
        Esc(&s.health),
        tone(&s.check),
        Esc(&s.check),
    )
}

/// The class of a state, health or check word: one of this module's fixed names.
fn tone(word: &str) -> &'static str {
    match word {
        "ready" | "up" | "passed" => "ok",
        "drain" | "starting" | "stopping" | "unknown" | "none" => "warn",
        "maint" | "down" | "failed" | "error" => "bad",
        _ => "",
    }
}

fn problems(out: &mut String, s: &Status) -> fmt::Result {
    writeln!(out, "<section id=\"problems\">\n<h2>Label problems</h2>")?;
    if s.problems.is_empty() {
        return writeln!(out, "<p class=\"none\">None.</p>\n</section>");
    }
    out.push_str(
        "<table>\n<tr><th>Service</th><th>Label</th><th>Severity</th><th>Reason</th></tr>\n",
    );
    for p in &s.problems {
        let tone = if p.severity == "error" { "bad" } else { "warn" };
        writeln!(
            out,
            "<tr><td class=\"key\">{}</td><td class=\"key\">{}</td><td class=\"{tone}\">{}</td>\
             <td class=\"text\">{}</td></tr>",
            Esc(&p.service),
            Esc(&p.label),
            Esc(&p.severity),
            Esc(&p.reason)
        )?;
    }
    out.push_str("</table>\n</section>\n");
    Ok(())
}

fn certificates(out: &mut String, certs: &[Certificate], now: i64) -> fmt::Result {
    writeln!(out, "<section id=\"certificates\">\n<h2>Certificates</h2>")?;
    if certs.is_empty() {
        return writeln!(
            out,
            "<p class=\"none\">No certificate is served for a service's labels.</p>\n</section>"
        );
    }
    out.push_str(
        "<table>\n<tr><th>Service</th><th>Secret</th><th>Names</th><th>Serial</th>\
         <th>Not after</th><th>Expires</th></tr>\n",
    );
    for c in certs {
        let left = c.not_after.saturating_sub(now);
        let (tone, expires) = if now == 0 {
            ("", "-".to_owned())
        } else if left < 0 {
            ("bad", format!("expired {} ago", span(-left)))
        } else if left < EXPIRY_WARN_DAYS * 86_400 {
            ("bad", format!("in {}", span(left)))
        } else {
            ("ok", format!("in {}", span(left)))
        };
        writeln!(
            out,
            "<tr><td class=\"key\">{}</td><td class=\"key\">{}</td><td class=\"mono\">{}</td>\
             <td class=\"mono\">{}</td><td>{}</td><td class=\"{tone}\">{}</td></tr>",
            Esc(&c.service),
            Esc(&c.secret),
            Esc(&c.names.join(", ")),
            Esc(&c.serial),
            utc(c.not_after),
            expires
        )?;
    }
    out.push_str("</table>\n</section>\n");
    Ok(())
}

fn hints(out: &mut String, s: &Status) -> fmt::Result {
    if s.hints.is_empty() {
        return Ok(());
    }
    out.push_str(
        "<section id=\"hints\">\n<h2>Node hints</h2>\n<table>\n\
         <tr><th>Node</th><th>Agent</th><th>Stream</th></tr>\n",
    );
    for h in &s.hints {
        let (tone, stream) = if h.live {
            ("ok", "live")
        } else {
            ("bad", "lost: task list only")
        };
        writeln!(
            out,
            "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"{tone}\">{stream}</td></tr>",
            Esc(h.node.as_deref().unwrap_or("-")),
            Esc(&h.agent)
        )?;
    }
    out.push_str("</table>\n</section>\n");
    Ok(())
}

/// `at` as a UTC date and time, and how long before `now` it was (when `now` is known).
fn when(at: i64, now: i64) -> String {
    if now == 0 {
        return utc(at);
    }
    let ago = now.saturating_sub(at);
    if ago < 0 {
        utc(at)
    } else {
        format!("{} ({} ago)", utc(at), span(ago))
    }
}

/// A duration in seconds as an operator reads it: `42 s`, `5 min`, `3 h`, `12 days`.
fn span(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 2 * 3600 => format!("{} min", s / 60),
        s if s < 2 * 86_400 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

/// Unix seconds as `YYYY-MM-DD hh:mm:ss UTC` (the proleptic Gregorian calendar; Howard
/// Hinnant's days-to-civil).
fn utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::status::{HintSource, LastPass, LastReload, Problem};

    const NOW: i64 = 1_796_000_000;

    fn server(slot: &str, task: Option<&str>, addr: &str, state: &str) -> ServerStatus {
        ServerStatus {
            slot: slot.into(),
            task: task.map(Into::into),
            address: addr.into(),
            state: state.into(),
            health: "up".into(),
            check: "passed".into(),
        }
    }

    fn route(hosts: &[&str], service: &str, servers: Vec<ServerStatus>, free: usize) -> Route {
        Route {
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            service: service.into(),
            mode: "task".into(),
            backend: service.into(),
            servers,
            free_slots: free,
        }
    }

    const HOSTILE: &str = "\"><img src=x onerror=alert(1)><script>alert('x')</script>&";

    fn fixture() -> Status {
        Status {
            routes: vec![
                route(
                    &["shop.example", "www.shop.example"],
                    "shop",
                    vec![
                        server("s1", Some("shop.1.abc"), "10.0.1.5:8080", "ready"),
                        server("s2", Some("shop.2.def"), "10.0.1.6:8080", "drain"),
                    ],
                    1,
                ),
                route(
                    &["demo.example (80%)"],
                    "demo-v1",
                    vec![server("s1", Some("demo-v1.1.aaa"), "10.0.2.5:80", "ready")],
                    0,
                ),
                route(
                    &["demo.example (20%)"],
                    "demo-v2",
                    vec![server("s1", None, "10.0.2.9:80", "maint")],
                    3,
                ),
            ],
            problems: vec![Problem {
                service: "evil".into(),
                label: "com.docker.lb.hosts".into(),
                severity: "error".into(),
                reason: format!("label com.docker.lb.hosts={HOSTILE:?}: not a host name"),
            }],
            hints: vec![HintSource {
                agent: "10.0.0.3:9271".into(),
                node: Some("worker-1".into()),
                live: false,
            }],
            certificates: vec![Certificate {
                service: "shop".into(),
                secret: "shop-cert".into(),
                serial: "0A1B".into(),
                names: vec!["shop.example".into(), "www.shop.example".into()],
                not_after: NOW + 10 * 86_400,
            }],
            passes: Some(Passes {
                ok: 41,
                failed: 1,
                last: Some(LastPass {
                    at: NOW - 3,
                    error: None,
                    took_ms: Some(4),
                }),
                last_ok_at: Some(NOW - 3),
                reloads: 2,
                reload_failures: 0,
                last_reload: Some(LastReload {
                    at: NOW - 600,
                    reason: "backend_created".into(),
                    ok: true,
                }),
            }),
            at: NOW,
        }
    }

    #[test]
    fn escaping_replaces_the_five_characters_markup_is_made_of() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(
            escape("plain.example/app -> /"),
            "plain.example/app -&gt; /"
        );
        assert_eq!(escape(""), "");
        assert_eq!(escape("ünï<"), "ünï&lt;");
    }

    #[test]
    fn a_hostile_label_value_is_text_on_the_page() {
        let page = render_html(&fixture());
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("onerror=alert(1)>"), "{page}");
        assert!(
            page.contains("&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(&#39;x&#39;)"),
            "{page}"
        );
    }

    #[test]
    fn every_field_of_every_kind_is_escaped() {
        let evil = "<b>\"'&</b>";
        let shown = "&lt;b&gt;&quot;&#39;&amp;&lt;/b&gt;";
        let mut s = fixture();
        let r = &mut s.routes[0];
        r.hosts = vec![evil.into()];
        r.service = evil.into();
        r.backend = evil.into();
        r.mode = evil.into();
        r.servers[0] = ServerStatus {
            slot: evil.into(),
            task: Some(evil.into()),
            address: evil.into(),
            state: evil.into(),
            health: evil.into(),
            check: evil.into(),
        };
        s.problems[0] = Problem {
            service: evil.into(),
            label: evil.into(),
            severity: evil.into(),
            reason: evil.into(),
        };
        s.hints[0].agent = evil.into();
        s.hints[0].node = Some(evil.into());
        s.certificates[0].service = evil.into();
        s.certificates[0].secret = evil.into();
        s.certificates[0].serial = evil.into();
        s.certificates[0].names = vec![evil.into()];
        if let Some(p) = s.passes.as_mut() {
            p.last = Some(LastPass {
                at: NOW,
                error: Some(evil.into()),
                took_ms: None,
            });
            if let Some(r) = p.last_reload.as_mut() {
                r.reason = evil.into();
            }
        }
        let page = render_html(&s);
        assert!(!page.contains("<b>"), "{page}");
        // host, service, backend, mode; slot, task, address, state, health, check; problem
        // x4; hint x2; certificate x4; pass error, reload reason.
        assert_eq!(page.matches(shown).count(), 4 + 6 + 4 + 2 + 4 + 2, "{page}");
    }

    #[test]
    fn the_page_groups_hosts_backends_and_slots_and_shows_shares() {
        let page = render_html(&fixture());
        assert!(page.starts_with("<!DOCTYPE html>"));
        let shop = page
            .find("<h3>shop.example, www.shop.example</h3>")
            .expect(&page);
        let demo = page.find("<h3>demo.example</h3>").expect(&page);
        assert!(demo < shop, "hosts in order: {page}");
        // Both canary backends under the one host, each with its share.
        let demo_part = &page[demo..shop];
        assert!(demo_part.contains("demo-v1") && demo_part.contains("80% of the host"));
        assert!(demo_part.contains("demo-v2") && demo_part.contains("20% of the host"));
        assert!(demo_part.contains("3 free slots"));
        let shop_part = &page[shop..];
        for cell in ["shop.1.abc", "10.0.1.6:8080", "1 free slot<"] {
            assert!(shop_part.contains(cell), "{cell}: {page}");
        }
        assert!(
            shop_part.contains("<td class=\"warn\">drain</td>"),
            "{page}"
        );
        assert!(page.contains("<td class=\"bad\">maint</td>"), "{page}");
    }

    #[test]
    fn the_page_shows_problems_certificates_passes_reloads_and_hints() {
        let page = render_html(&fixture());
        let section = |id: &str| {
            let start = page.find(&format!("<section id=\"{id}\">")).expect(id);
            let end = start + page[start..].find("</section>").expect("end");
            page[start..end].to_owned()
        };
        let problems = section("problems");
        assert!(problems.contains("evil") && problems.contains("com.docker.lb.hosts"));
        assert!(
            problems.contains("<td class=\"bad\">error</td>"),
            "{problems}"
        );
        let certs = section("certificates");
        assert!(
            certs.contains("shop-cert") && certs.contains("0A1B"),
            "{certs}"
        );
        assert!(certs.contains("shop.example, www.shop.example"), "{certs}");
        assert!(certs.contains(&utc(NOW + 10 * 86_400)), "{certs}");
        assert!(
            certs.contains("<td class=\"bad\">in 10 days</td>"),
            "{certs}"
        );
        let passes = section("passes");
        assert!(passes.contains("succeeded</span>, 2026-"), "{passes}");
        assert!(passes.contains("(3 s ago), took 4 ms"), "{passes}");
        assert!(passes.contains("41 succeeded, 1 failed"), "{passes}");
        assert!(passes.contains("2 done, 0 failed"), "{passes}");
        assert!(passes.contains("(10 min ago)") && passes.contains("backend_created"));
        let hints = section("hints");
        assert!(hints.contains("worker-1") && hints.contains("lost: task list only"));
        assert!(
            page.contains(
                "3 backends, 4 servers, 1 label problem (<span class=\"bad\">1 refused</span>)"
            ),
            "{page}"
        );
    }

    #[test]
    fn an_empty_status_says_nothing_is_routed_and_has_no_pass_section() {
        let page = render_html(&Status::default());
        assert!(page.contains("No service is routed."), "{page}");
        assert!(page.contains("<section id=\"problems\">") && page.contains("None."));
        assert!(!page.contains("id=\"passes\"") && !page.contains("id=\"hints\""));
        assert!(
            !page.contains("read at"),
            "no time without Status::at: {page}"
        );
    }

    #[test]
    fn the_page_has_no_script_and_no_external_reference() {
        let mut s = fixture();
        // (The hostile value holds `src=` as text.)
        s.problems[0].reason = "label com.docker.lb.port=\"0\": must be 1-65535".into();
        let page = render_html(&s);
        for banned in [
            "<script",
            "src=",
            "href=",
            "<link",
            "url(",
            "@import",
            "javascript:",
        ] {
            assert!(!page.contains(banned), "{banned}: {page}");
        }
    }

    #[test]
    fn shares_split_only_from_a_trailing_percentage() {
        assert_eq!(split_share("a.example (20%)"), ("a.example", Some("20%")));
        assert_eq!(
            split_share("a.example/app -> / (5%)"),
            ("a.example/app -> /", Some("5%"))
        );
        assert_eq!(split_share("a.example"), ("a.example", None));
        assert_eq!(split_share("a (x%)"), ("a (x%)", None));
    }

    #[test]
    fn unix_times_read_as_utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_000_000), "2026-11-30 00:53:20 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
        assert_eq!(span(59), "59 s");
        assert_eq!(span(600), "10 min");
        assert_eq!(span(3 * 86_400 + 5), "3 days");
    }
}
