//! The `swarm-lb` binary refuses bad flags and environment variables at start-up, with a
//! clear CLI error (exit status 2), never a panic later.

use std::process::{Command, Output};

fn swarm_lb(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm-lb"));
    cmd.args(args);
    // Nothing from the caller's environment may decide the outcome.
    for (key, _) in std::env::vars() {
        if key.starts_with("SWARM_LB_") || key == "DOCKER_HOST" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run swarm-lb")
}

fn refused(out: &Output, names: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "exit status; stderr: {stderr}");
    assert!(
        stderr.contains(names),
        "stderr should name {names}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn zero_durations_on_the_command_line_are_refused_at_start_up() {
    for flag in [
        "--resync=0",
        "--proxy-check=0",
        "--reload-timeout=0",
        "--debounce-ms=0",
        "--settle-poll-ms=0",
    ] {
        let name = flag.split('=').next().unwrap_or(flag);
        refused(&swarm_lb(&["run", flag], &[]), name);
    }
}

#[test]
fn zero_negative_or_unparsable_durations_in_the_environment_are_refused_at_start_up() {
    for (var, flag) in [
        ("SWARM_LB_RESYNC", "--resync"),
        ("SWARM_LB_PROXY_CHECK", "--proxy-check"),
        ("SWARM_LB_RELOAD_TIMEOUT", "--reload-timeout"),
        ("SWARM_LB_DEBOUNCE_MS", "--debounce-ms"),
        ("SWARM_LB_SETTLE_POLL_MS", "--settle-poll-ms"),
    ] {
        for bad in ["0", "-3", "soon"] {
            refused(&swarm_lb(&["run"], &[(var, bad)]), flag);
        }
    }
    refused(
        &swarm_lb(&["run"], &[("SWARM_LB_SLOT_BLOCK", "0")]),
        "--slot-block",
    );
}

#[test]
fn a_bad_trusted_proxy_block_is_refused_at_start_up_naming_the_flag_and_the_block() {
    for bad in ["10.0.0.0/33", "example.com", "proxy:", "10.0.0.0/8,nope"] {
        let out = swarm_lb(&["run", "--trusted-proxies", bad], &[]);
        refused(&out, "--trusted-proxies");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let item = bad.rsplit(',').next().unwrap_or(bad);
        let item = item.strip_prefix("proxy:").unwrap_or(item);
        assert!(stderr.contains(item), "{bad}: {stderr}");
    }
    refused(
        &swarm_lb(&["run"], &[("SWARM_LB_TRUSTED_PROXIES", "10.0.0.1/40")]),
        "--trusted-proxies",
    );
}

#[test]
fn an_unknown_tls_profile_is_refused_at_start_up_naming_the_accepted_ones() {
    for out in [
        swarm_lb(&["run", "--tls-profile", "strict"], &[]),
        swarm_lb(&["run"], &[("SWARM_LB_TLS_PROFILE", "Modern")]),
    ] {
        refused(&out, "--tls-profile");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("modern, intermediate and old"), "{stderr}");
    }
}

#[test]
fn acme_without_an_https_bind_or_secrets_delivery_is_refused_before_docker_is_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().to_string_lossy().into_owned();
    for (extra, missing) in [
        // HTTPS off (the default bind is :443), delivery on; then delivery off (the default).
        (
            &["--secrets-delivery", "job", "--https-bind", ""][..],
            "--acme needs --https-bind",
        ),
        (
            &["--https-bind", ":443"][..],
            "--acme needs --secrets-delivery=job",
        ),
    ] {
        let mut args = vec![
            "run",
            "--acme",
            "--acme-directory",
            "https://ca.example/dir",
            "--config-dir",
            &config,
        ];
        args.extend_from_slice(extra);
        // No engine there: the refusal must come before any Docker call.
        let out = swarm_lb(&args, &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{stderr}");
        assert!(stderr.contains(missing), "{extra:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_empty_acme_values_compose_passes_for_unset_variables_are_accepted() {
    // docker-compose.yml and docker-stack.yml pass `${SWARM_LB_ACME_*:-}`: empty, not absent.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().to_string_lossy().into_owned();
    let out = swarm_lb(
        &["run", "--config-dir", &config],
        &[
            ("SWARM_LB_ACME", "false"),
            ("SWARM_LB_ACME_EMAIL", ""),
            ("SWARM_LB_ACME_CA_BUNDLE", ""),
            ("SWARM_LB_ACME_EAB_KID", ""),
            ("SWARM_LB_ACME_EAB_HMAC_FILE", ""),
            ("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // It gets as far as Docker: the flags and the environment were accepted.
    assert!(stderr.contains("connecting to Docker"), "{stderr}");
    assert!(!stderr.contains("a value is required"), "{stderr}");
}
