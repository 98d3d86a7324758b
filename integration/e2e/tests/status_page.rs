//! The status page (`GET /` on swarm-lb's listener) in a real browser: headless Chromium from
//! Debian's package loads the page of a running stack over the metrics port the compose file
//! publishes on loopback, its DOM is dumped and a screenshot kept (under the target dir, the
//! path printed). The DOM must hold the routed host, its tasks, and the shares of the two
//! services that share it (a canary); a service whose hosts label carries markup must show that
//! markup as text: no element comes from it.
//!
//! Chromium runs with a throwaway profile, a deadline, and a host resolver that resolves no
//! name, so it reaches nothing but the loopback address it is given.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use swarm_lb::observe::http;
use swarm_lb_e2e::docker::{swarm_lb_image, Network, Service};
use swarm_lb_e2e::stack::Stack;
use swarm_lb_e2e::{poll_until, unique};

const APP: &str = "swarm-lb/testapp:1";
const CANARY: &str = "swarm-lb/testapp:2";
const CONVERGE: Duration = Duration::from_secs(90);
/// One Chromium run (start, load, dump or capture, exit); a cold start on a busy machine
/// takes seconds.
const BROWSER: Duration = Duration::from_secs(60);
/// The hosts label of the hostile service: it closes an attribute and opens an element, so
/// any unescaped use would put an `<img>` in the DOM.
const HOSTILE: &str = "\"><img src=x onerror=alert(1)>.test";

/// The browser: `$CHROMIUM`, else Debian's `chromium`.
fn chromium() -> String {
    std::env::var("CHROMIUM")
        .ok()
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "chromium".to_owned())
}

/// Fail (never skip) when the browser is missing, saying how to get it.
async fn require_chromium() {
    let bin = chromium();
    let probe = tokio::process::Command::new(&bin)
        .arg("--version")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(BROWSER, probe).await {
        Ok(Ok(out)) if out.status.success() => {}
        Ok(Ok(out)) => panic!(
            "{bin} --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(Err(e)) => panic!(
            "{bin} not found ({e}): install it with \
             `apt-get install -y --no-install-recommends chromium` (scripts/setup.sh does), \
             or point $CHROMIUM at a Chromium binary"
        ),
        Err(_) => panic!("{bin} --version did not answer within {BROWSER:?}"),
    }
}

/// Runs headless Chromium on `url` with `args` added (`--dump-dom`, `--screenshot=...`), with
/// its own profile directory and the [`BROWSER`] deadline; returns its stdout.
async fn run_chromium(url: &str, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        // Nothing but the loopback address the page is on resolves: no traffic leaves.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let out = tokio::time::timeout(BROWSER, cmd.output())
        .await
        .unwrap_or_else(|_| {
            // An `alert()` that ran holds the page open: a script got in and the policy
            // did not stop it.
            panic!(
                "chromium {args:?} did not finish within {BROWSER:?} (a script dialog on the \
                 page blocks it)"
            )
        })
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium {args:?} {url}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where the screenshot is kept: the target dir's scratch space for integration tests.
fn artifact_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("the artifact directory");
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_routed_host_and_a_hostile_label_as_text() {
    require_chromium().await;
    let cluster = unique("c");
    let image = swarm_lb_image();
    let stack = Stack::up(&[
        ("SWARM_LB_SERVICE_CLUSTER", cluster.as_str()),
        ("SWARM_LB_IMAGE", image.as_str()),
    ])
    .await;
    let net = Network::create(&unique("net"));
    let host = format!("{}.test", unique("page"));
    let weight = |w: &'static str| ["--label", w];
    let web = Service::routed(
        &unique("page"),
        APP,
        &cluster,
        &net,
        &host,
        2,
        &weight("com.docker.lb.weight=80"),
    );
    // A canary sharing the host: the page shows both backends under it, with their shares.
    let canary = Service::routed(
        &unique("canary"),
        CANARY,
        &cluster,
        &net,
        &host,
        1,
        &weight("com.docker.lb.weight=20"),
    );
    let cluster_label = format!("com.docker.lb.service_cluster={cluster}");
    let hosts_label = format!("com.docker.lb.hosts={HOSTILE}");
    let evil = Service::create(
        &unique("evil"),
        APP,
        &[
            "--network",
            &net.name,
            "--replicas",
            "1",
            "--label",
            &hosts_label,
            "--label",
            "com.docker.lb.port=8080",
            "--label",
            &cluster_label,
        ],
    );

    // The page as swarm-lb serves it, once every task is in HAProxy and the label refused.
    let listener = std::net::SocketAddr::from(([127, 0, 0, 1], stack.metrics_port));
    let heading = format!("<h3>{host}</h3>");
    let task_prefix = format!("{}.", web.name);
    let complete = |page: &str| {
        page.contains(&heading)
            && page.contains(&evil.name)
            && page.matches(&task_prefix).count() >= 2
            && page.contains("20% of the host")
    };
    poll_until(
        CONVERGE,
        "the page with every task and the refusal",
        || async {
            for (svc, n) in [(&web, 2), (&canary, 1)] {
                let tasks = svc.running_task_ips(&net.id);
                if tasks.len() != n || stack.ready_addrs(&svc.name).await != tasks {
                    return None;
                }
            }
            match http::get(listener, "/").await {
                Ok((200, page)) => complete(&page).then_some(()),
                _ => None,
            }
        },
    )
    .await;

    let url = format!("http://127.0.0.1:{}/", stack.metrics_port);
    let dom = run_chromium(&url, &["--dump-dom".to_owned()]).await;
    assert!(dom.contains(&heading), "{dom}");
    for slot in ["1", "2"] {
        let task = format!("<td class=\"mono\">{}.{slot}.", web.name);
        assert!(dom.contains(&task), "task {slot} of {}: {dom}", web.name);
    }
    assert!(dom.contains("<td class=\"ok\">ready</td>"), "{dom}");
    // One host, two backends, each with its share.
    let group = dom
        .split(heading.as_str())
        .nth(1)
        .and_then(|rest| rest.split("</section>").next())
        .unwrap_or_else(|| panic!("no section for {host}: {dom}"));
    for (svc, share) in [(&web.name, "80%"), (&canary.name, "20%")] {
        let at = group
            .find(&format!("<strong class=\"mono\">{svc}</strong>"))
            .unwrap_or_else(|| panic!("{svc} not under {host}: {group}"));
        let line = &group[at..at + group[at..].find("</p>").expect("end of line")];
        assert!(line.contains(&format!("{share} of the host")), "{line}");
    }
    // The hostile value is in the problems table, as text.
    let problems = dom
        .split("<section id=\"problems\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no problems section: {dom}"));
    assert!(
        problems.contains(&evil.name) && problems.contains("com.docker.lb.hosts"),
        "{problems}"
    );
    assert!(
        problems.contains("&lt;img src=x onerror=alert(1)&gt;.test"),
        "the hostile value as text: {problems}"
    );
    // No element came from it: the page has no image and no script of its own.
    assert!(!dom.contains("<img"), "an injected element: {dom}");
    assert!(!dom.contains("<script"), "a script element: {dom}");

    let shot = artifact_dir().join(format!("status-page-{}.png", std::process::id()));
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".to_owned(),
        ],
    )
    .await;
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is not a screenshot ({} bytes)",
        shot.display(),
        png.len()
    );
    eprintln!("status page screenshot: {}", shot.display());
    drop((web, canary, evil));
}
