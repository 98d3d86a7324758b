//! Who this task is: the identity every answer carries, so a test can tell which task (and which
//! image version) served a request. Built once at start; the parser is pure.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

/// The identity of this process as a Swarm task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// `TASK_NAME` (set it with `--env TASK_NAME={{.Task.Name}}`), else the hostname.
    pub task: String,
    pub hostname: String,
    /// `VERSION`, baked into the image; changes across a rolling update.
    pub version: Option<String>,
    /// The task's own IPv4 addresses, loopback excluded.
    pub ips: Vec<Ipv4Addr>,
    /// `ECHO_PATHS=1`: answer every path (200, with the request target it got).
    pub echo_paths: bool,
}

impl TaskInfo {
    /// Reads the environment and `/proc`. Missing sources give placeholders, never an error:
    /// the app must start in a `FROM scratch` image and on a developer's machine alike.
    pub fn from_env() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| non_empty_env("HOSTNAME"))
            .unwrap_or_else(|| "unknown".to_owned());
        let task = non_empty_env("TASK_NAME").unwrap_or_else(|| hostname.clone());
        let version = non_empty_env("VERSION");
        let ips = read_local_ipv4(Path::new("/proc/net/fib_trie"));
        let echo_paths = non_empty_env("ECHO_PATHS").as_deref() == Some("1");
        TaskInfo {
            task,
            hostname,
            version,
            ips,
            echo_paths,
        }
    }

    /// The body of `GET /`: one `key=value` per line, easy to grep in shell and to parse in tests.
    /// `local` is the address the connection arrived on: the task IP the proxy chose.
    pub fn render(&self, local: SocketAddr, peer: SocketAddr) -> String {
        let ips = self
            .ips
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        format!(
            "task={}\nhostname={}\nversion={}\nips={}\nlocal={}\npeer={}\n",
            self.task,
            self.hostname,
            self.version.as_deref().unwrap_or("-"),
            ips,
            local,
            peer
        )
    }
}

fn non_empty_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn read_local_ipv4(path: &Path) -> Vec<Ipv4Addr> {
    std::fs::read_to_string(path)
        .map(|text| local_ipv4_from_fib_trie(&text))
        .unwrap_or_default()
}

/// The addresses of this network namespace from `/proc/net/fib_trie`: every leaf `|-- A.B.C.D`
/// followed by a `/32 host LOCAL` line. Reading the kernel's table needs no ioctl (and so no
/// unsafe code or libc crate). Order of first appearance, without duplicates (the Main and Local
/// tables both list them) and without loopback. Lines it does not understand are ignored.
pub fn local_ipv4_from_fib_trie(text: &str) -> Vec<Ipv4Addr> {
    let mut found = Vec::new();
    let mut leaf: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(addr) = line.strip_prefix("|-- ") {
            leaf = addr.trim().parse().ok();
        } else if line.starts_with("+--") || line.ends_with(':') {
            leaf = None;
        } else if line.starts_with("/32 host LOCAL") {
            if let Some(ip) = leaf {
                if !ip.is_loopback() && !found.contains(&ip) {
                    found.push(ip);
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from a container attached to a bridge and an overlay network.
    const FIB_TRIE: &str = "\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.1.0/24 2 0 2
        +-- 10.0.1.0/28 2 0 2
           |-- 10.0.1.0
              /24 link UNICAST
           |-- 10.0.1.7
              /32 host LOCAL
        |-- 10.0.1.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.18.0.0/16 2 0 2
           |-- 172.18.0.3
              /16 link UNICAST
              /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 10.0.1.7
              /32 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
";

    #[test]
    fn local_addresses_are_the_leaves_marked_host_local_without_loopback_or_duplicates() {
        assert_eq!(
            local_ipv4_from_fib_trie(FIB_TRIE),
            vec![Ipv4Addr::new(10, 0, 1, 7), Ipv4Addr::new(172, 18, 0, 3)]
        );
    }

    #[test]
    fn broadcast_and_network_leaves_are_not_local_addresses() {
        let ips = local_ipv4_from_fib_trie(FIB_TRIE);
        assert!(!ips.contains(&Ipv4Addr::new(10, 0, 1, 255)));
        assert!(!ips.contains(&Ipv4Addr::new(10, 0, 1, 0)));
    }

    #[test]
    fn garbage_or_truncated_fib_trie_gives_no_address_and_no_panic() {
        assert!(local_ipv4_from_fib_trie("").is_empty());
        assert!(local_ipv4_from_fib_trie("|-- not-an-ip\n/32 host LOCAL\n").is_empty());
        assert!(local_ipv4_from_fib_trie("/32 host LOCAL\n|-- 10.0.0.1").is_empty());
    }

    #[test]
    fn the_identity_body_names_task_version_addresses_and_the_connection() {
        let info = TaskInfo {
            task: "web.2.abc".into(),
            hostname: "f00".into(),
            version: Some("2".into()),
            ips: vec![Ipv4Addr::new(10, 0, 1, 7), Ipv4Addr::new(172, 18, 0, 3)],
            echo_paths: false,
        };
        let body = info.render(
            "10.0.1.7:8080".parse().unwrap(),
            "10.0.1.2:40000".parse().unwrap(),
        );
        assert_eq!(
            body,
            "task=web.2.abc\nhostname=f00\nversion=2\nips=10.0.1.7,172.18.0.3\n\
             local=10.0.1.7:8080\npeer=10.0.1.2:40000\n"
        );
    }

    #[test]
    fn a_missing_version_is_shown_as_a_dash() {
        let info = TaskInfo {
            task: "t".into(),
            hostname: "h".into(),
            version: None,
            ips: vec![],
            echo_paths: false,
        };
        let body = info.render(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert!(body.contains("\nversion=-\n"), "{body}");
        assert!(body.contains("\nips=\n"), "{body}");
    }
}
