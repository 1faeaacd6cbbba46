//! Helpers shared by the integration tests that drive the real `dive` binary.

#![allow(dead_code)] // each test binary uses its own subset

pub mod instance;
pub mod stack;

use std::process::Output;
use std::time::{Duration, Instant};

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Five free ports for one instance (idp, api, kas, web, pdp).
pub fn ports() -> [u16; 5] {
    let ls: Vec<std::net::TcpListener> = (0..5)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let p: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    [p[0], p[1], p[2], p[3], p[4]]
}

pub fn port_flags(p: &[u16; 5]) -> Vec<String> {
    [
        "--idp-port",
        "--api-port",
        "--kas-port",
        "--web-port",
        "--pdp-port",
    ]
    .iter()
    .zip(p)
    .flat_map(|(f, v)| [f.to_string(), v.to_string()])
    .collect()
}

pub fn args<'a>(base: &[&'a str], extra: &'a [String]) -> Vec<&'a str> {
    base.iter()
        .copied()
        .chain(extra.iter().map(String::as_str))
        .collect()
}

pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
