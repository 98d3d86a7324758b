//! Shared reporting for the benchmark binaries: every figure is printed as a table row and
//! written, the same, to a JSON file, with the machine and HAProxy version it ran on.
#![forbid(unsafe_code)]

pub mod micro;
pub mod scale;
pub mod swarm;

use std::path::Path;

use serde::Serialize;

/// One measured figure, with its target when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub group: String,
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// e.g. "< 100" or ">= 80% of raw"; empty when there is no target.
    pub target: String,
    /// None when there is no target.
    pub met: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub date: String,
    pub machine: String,
    pub haproxy: String,
    pub figures: Vec<Figure>,
    /// Free-text findings printed under the table (errors of a phase, failure samples).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    pub fn new() -> Report {
        Report {
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine: format!(
                "{} cores, {}, {}",
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(0),
                mem_total(),
                run("uname", &["-sr"])
            ),
            // The binary the micro benchmarks run ($HAPROXY first); bench-swarm's image is
            // built from the same Debian package.
            haproxy: run(
                &swarm_lb_testkit::haproxy_bin()
                    .map(|b| b.display().to_string())
                    .unwrap_or_else(|_| "haproxy".to_owned()),
                &["-v"],
            )
            .lines()
            .next()
            .unwrap_or("")
            .to_owned(),
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// A finding that is not a figure; printed now and under the table.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("note: {text}");
        self.notes.push(text);
    }

    pub fn add(&mut self, group: &str, name: &str, value: f64, unit: &str) {
        self.push(group, name, value, unit, "", None);
    }

    pub fn add_target(
        &mut self,
        group: &str,
        name: &str,
        value: f64,
        unit: &str,
        target: &str,
        met: bool,
    ) {
        self.push(group, name, value, unit, target, Some(met));
    }

    fn push(
        &mut self,
        group: &str,
        name: &str,
        value: f64,
        unit: &str,
        target: &str,
        met: Option<bool>,
    ) {
        let f = Figure {
            group: group.to_owned(),
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            target: target.to_owned(),
            met,
        };
        println!("{}", row(&f));
        self.figures.push(f);
    }

    /// The whole table, Markdown, for the terminal and README.
    pub fn table(&self) -> String {
        let mut s = format!(
            "Ran {} on {}; {}\n\n| group | figure | value | unit | target | met |\n|---|---|---|---|---|---|\n",
            self.date, self.machine, self.haproxy
        );
        for f in &self.figures {
            s.push_str(&row(f));
            s.push('\n');
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for n in &self.notes {
                s.push_str("- ");
                s.push_str(n);
                s.push('\n');
            }
        }
        s
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

fn row(f: &Figure) -> String {
    let met = match f.met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    };
    let value = if f.value.fract() == 0.0 && f.value.abs() < 1e15 {
        format!("{}", f.value as i64)
    } else {
        format!("{:.2}", f.value)
    };
    format!(
        "| {} | {} | {} | {} | {} | {} |",
        f.group, f.name, value, f.unit, f.target, met
    )
}

fn run(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_default()
}

/// Percentile (nearest rank) of `sorted` values; `p` in 0..=100.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }
}
