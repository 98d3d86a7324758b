//! swarm-lb's `/metrics` (Prometheus text), read for the figures it alone knows (pass
//! durations, reloads). A binary without a metric simply gives no figure.

use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One scrape: (series name, labels, value).
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    series: Vec<(String, String, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let series = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(|l| {
                let (key, value) = l.rsplit_once(' ')?;
                let value: f64 = value.parse().ok()?;
                let (name, labels) = match key.split_once('{') {
                    Some((n, rest)) => (n, rest.trim_end_matches('}')),
                    None => (key, ""),
                };
                Some((name.to_owned(), labels.to_owned(), value))
            })
            .collect();
        Scrape { series }
    }

    /// Sum over every label set of `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| v)
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.series.iter().any(|(n, _, _)| n == name)
    }

    /// `(le, cumulative count)` of histogram `name`, in order.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = self
            .series
            .iter()
            .filter(|(n, _, _)| *n == bucket)
            .filter_map(|(_, labels, v)| {
                let le = labels
                    .split(',')
                    .find_map(|kv| kv.trim().strip_prefix("le="))?
                    .trim_matches('"');
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// The `q` quantile of what histogram `name` observed between scrapes `a` and `b`: the upper
/// bound of the bucket it falls in (so, an upper estimate).
pub fn quantile_delta(a: &Scrape, b: &Scrape, name: &str, q: f64) -> Option<f64> {
    let before = a.buckets(name);
    let after = b.buckets(name);
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, v)| {
            let old = before
                .iter()
                .find(|(l, _)| l == le)
                .map(|(_, v)| *v)
                .unwrap_or(0.0);
            (*le, v - old)
        })
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    delta
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| *le)
}

/// `GET /metrics` from `addr` (`127.0.0.1:port`).
pub async fn scrape(addr: &str) -> anyhow::Result<Scrape> {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    let buf = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .context("scraping swarm-lb's /metrics")??;
    let text = String::from_utf8_lossy(&buf);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    Ok(Scrape::parse(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quantile_is_the_bucket_bound_of_the_observations_between_two_scrapes() {
        let a = Scrape::parse(
            "x_bucket{le=\"0.01\"} 5\nx_bucket{le=\"0.1\"} 5\nx_bucket{le=\"+Inf\"} 5\nx_count 5\n",
        );
        let b = Scrape::parse(
            "x_bucket{le=\"0.01\"} 6\nx_bucket{le=\"0.1\"} 9\nx_bucket{le=\"+Inf\"} 10\nx_count 10\n",
        );
        assert_eq!(quantile_delta(&a, &b, "x", 0.5), Some(0.1));
        assert_eq!(quantile_delta(&a, &b, "x", 0.2), Some(0.01));
        assert_eq!(b.sum("x_count") - a.sum("x_count"), 5.0);
        assert_eq!(quantile_delta(&b, &b, "x", 0.5), None);
    }
}
