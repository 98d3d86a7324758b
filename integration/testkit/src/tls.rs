//! Real TLS clients and certificates for the TLS tests: `openssl` and `curl` from the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fails (never skips) when one of `tools` is not on `PATH`, saying how to install it; `what`
/// names the tests that need it.
pub fn require_tools(tools: &[&str], what: &str) {
    for tool in tools {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            found,
            "{tool} is needed by {what}: apt-get install openssl curl (scripts/setup.sh does)"
        );
    }
}

/// A self-signed P-256 certificate for `host` (CN and subject alternative name) with serial
/// `serial` (hex digits), valid two days, and its key, written by `openssl req` into `dir` as
/// `<tag>.crt` and `<tag>.key`: (certificate path, key path).
pub fn self_signed_pair(dir: &Path, tag: &str, host: &str, serial: &str) -> (PathBuf, PathBuf) {
    require_tools(&["openssl"], "the TLS tests");
    let (crt, key) = (
        dir.join(format!("{tag}.crt")),
        dir.join(format!("{tag}.key")),
    );
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", &format!("/CN={host}")])
        .args(["-addext", &format!("subjectAltName=DNS:{host}")])
        .args(["-set_serial", &format!("0x{serial}")])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("run openssl req");
    assert!(out.status.success(), "openssl req: {out:?}");
    (crt, key)
}
