//! Memory and process figures read from `/proc`.

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in MiB; `None` for `pid` gone.
pub fn status_mib(pid: u32, field: &str) -> Option<f64> {
    status_field(&format!("/proc/{pid}/status"), field)
}

/// The same field for this process.
pub fn self_status_mib(field: &str) -> Option<f64> {
    status_field("/proc/self/status", field)
}

fn status_field(path: &str, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = value.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb as f64 / 1024.0)
    })
}

/// CPU time this process has used so far, all threads, in nanoseconds (the first field of
/// each thread's `schedstat`); `None` where the kernel does not expose it.
pub fn self_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread may exit between the listing and the read: it no longer counts.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU time the calling thread has used so far, in nanoseconds.
pub fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The 1-minute load average: how much else this machine was running.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
