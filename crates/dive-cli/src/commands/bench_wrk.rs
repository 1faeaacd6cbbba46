//! GET load from `wrk` (an external, event-driven load generator written in C), so that an HTTP
//! benchmark can tell the service's latency from that of a load generator sharing its process:
//! `wrk -t<threads> -c<connections> -d<secs>s --latency -s <script> <base URL>`, the script cycling
//! through request paths and bearer tokens. wrk does not verify the server certificate (the
//! service runs on the installation's own CA).

use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// What wrk reported.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WrkReport {
    pub threads: usize,
    pub connections: usize,
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers with a status outside 2xx/3xx (403 denies in a decision benchmark).
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
    /// CPU time of the service per answered request, when the caller measured it.
    pub service_cpu_us_per_request: Option<f64>,
}

/// Run wrk against `base` (`https://host:port`) for `duration`, GETting `paths` in turn with
/// `Authorization: Bearer` tokens in turn. `Ok(None)` when wrk is not installed.
pub fn run_gets(
    base: &str,
    paths: &[String],
    tokens: &[String],
    threads: usize,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Option<WrkReport>> {
    if Command::new("wrk").arg("--version").output().is_err() {
        return Ok(None);
    }
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("gets.lua");
    std::fs::write(&script, lua_script(paths, tokens))?;
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(base)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text, threads, connections)
        .map(Some)
        .with_context(|| format!("cannot read wrk's report:\n{text}"))
}

/// A Lua string literal (paths and tokens are URL and base64url characters; escape anyway).
fn lua_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn lua_script(paths: &[String], tokens: &[String]) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| lua_str(s))
            .collect::<Vec<_>>()
            .join(",\n")
    };
    format!(
        "local paths = {{\n{}\n}}\nlocal tokens = {{\n{}\n}}\nlocal i = 0\n\
         request = function()\n  i = i + 1\n  \
         return wrk.format(\"GET\", paths[(i % #paths) + 1], \
         {{[\"Authorization\"] = \"Bearer \" .. tokens[(i % #tokens) + 1]}})\nend\n",
        list(paths),
        list(tokens)
    )
}

/// `1.23ms`, `850.00us`, `2.01s`, `3.00m` in milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = s.split_at(split);
    let n: f64 = n.parse().ok()?;
    let factor = match unit {
        "us" => 1e-3,
        "ms" => 1.0,
        "s" => 1e3,
        "m" => 60e3,
        "h" => 3_600e3,
        _ => return None,
    };
    Some(n * factor)
}

fn parse(text: &str, threads: usize, connections: usize) -> Option<WrkReport> {
    let words = |prefix: &str| -> Option<Vec<&str>> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l.split_whitespace().collect())
    };
    let percentile = |p: &str| words(p).and_then(|w| duration_ms(w.get(1)?));
    // "Latency   1.20ms  500.00us  20.00ms   90.00%": mean, stdev, max, within one stdev.
    let max_ms = words("Latency").and_then(|w| duration_ms(w.get(3)?))?;
    // "123456 requests in 10.00s, 12.34MB read"
    let requests = text
        .lines()
        .find(|l| l.contains(" requests in "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let non_2xx = words("Non-2xx or 3xx responses:")
        .and_then(|w| w.last()?.parse().ok())
        .unwrap_or(0);
    // "Socket errors: connect 0, read 0, write 0, timeout 0"
    let socket_errors = words("Socket errors:").map_or(0, |w| {
        w.iter()
            .filter_map(|x| x.trim_end_matches(',').parse::<u64>().ok())
            .sum()
    });
    Some(WrkReport {
        threads,
        connections,
        requests,
        per_second: words("Requests/sec:")?.get(1)?.parse().ok()?,
        p50_ms: percentile("50%")?,
        p90_ms: percentile("90%")?,
        p99_ms: percentile("99%")?,
        max_ms,
        non_2xx,
        socket_errors,
        service_cpu_us_per_request: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_report() {
        let text = "Running 10s test @ https://localhost:4443\n  2 threads and 64 connections\n  \
            Thread Stats   Avg      Stdev     Max   +/- Stdev\n    \
            Latency     4.10ms    2.01ms  45.67ms   80.00%\n    \
            Req/Sec     7.80k   400.00     8.50k    70.00%\n  \
            Latency Distribution\n     50%    3.90ms\n     75%    5.00ms\n     \
            90%    6.50ms\n     99%    9.87ms\n  \
            155000 requests in 10.00s, 120.00MB read\n  \
            Socket errors: connect 0, read 2, write 0, timeout 1\n  \
            Non-2xx or 3xx responses: 100000\nRequests/sec:  15500.12\nTransfer/sec:     12.00MB\n";
        let r = parse(text, 2, 64).expect("parsed");
        assert_eq!(r.requests, 155_000);
        assert_eq!(r.non_2xx, 100_000);
        assert_eq!(r.socket_errors, 3);
        assert!((r.per_second - 15_500.12).abs() < 1e-6);
        assert!((r.p50_ms - 3.9).abs() < 1e-9);
        assert!((r.p99_ms - 9.87).abs() < 1e-9);
        assert!((r.max_ms - 45.67).abs() < 1e-9);
        assert_eq!(duration_ms("850.00us"), Some(0.85));
        assert_eq!(duration_ms("2.00s"), Some(2000.0));
        assert!(parse("wrk: connection refused", 2, 64).is_none());
    }

    #[test]
    fn the_script_cycles_paths_and_tokens() {
        let s = lua_script(&["/a".into(), "/b\"".into()], &["t1".into()]);
        assert!(s.contains("\"/a\",\n\"/b\\\"\""));
        assert!(s.contains("\"Bearer \" .. tokens[(i % #tokens) + 1]"));
    }
}
