//! `dive serve api` through the real binary: HTTPS, 401 without a token, the OpenAPI document,
//! the SQLite store under the instance directory, SIGTERM; bad flags are exit code 2.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn dive(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("DIVE_API_DATABASE")
        .env_remove("DIVE_KAS_URL")
        .output()
        .unwrap()
}

#[test]
fn serve_api_answers_over_https_and_stops_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(home.path())
        .args([
            "serve",
            "api",
            "--instance",
            "usa",
            "--bind",
            "127.0.0.1:0",
            "--kas-url",
            "https://localhost:8445/kas",
        ])
        .env_remove("DIVE_API_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("api usa listening on 127.0.0.1:"),
        "{line}"
    );
    let port: u16 = line
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    let db = home.path().join("instances/usa/api.db");
    assert!(line.contains(&db.display().to_string()), "{line}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pki = dive_pki::Pki::open(home.path()).unwrap();
        let http = dive_http::https_client(&pki).unwrap();
        let base = format!("https://localhost:{port}");
        let r = http.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .get(format!("{base}/api/resources"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "unauthenticated");
        let doc: serde_json::Value = http
            .get(format!("{base}/api/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let m = http.get(format!("{base}/metrics")).send().await.unwrap();
        assert!(
            m.text()
                .await
                .unwrap()
                .contains("dive_api_decisions_total{action=\"search\",decision=\"deny\"} 1")
        );
    });
    assert_eq!(
        std::fs::metadata(&db).unwrap().permissions().mode() & 0o777,
        0o600
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let out = dive(
        home.path(),
        &[
            "serve",
            "api",
            "--instance",
            "USA",
            "--kas-url",
            "ftp://kas",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kas-url"));
    let out = dive(
        home.path(),
        &[
            "serve",
            "api",
            "--instance",
            "XXA",
            "--kas-url",
            "https://kas",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--instance"));
    let out = dive(
        home.path(),
        &[
            "serve",
            "api",
            "--instance",
            "USA",
            "--kas-url",
            "https://kas",
            "--policy-data",
            "/nonexistent/dir",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--policy-data"));
}
