//! `dive idp` and `dive serve idp` through the real binary.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

fn dive(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("DIVE_IDP_PASSWORD")
        .env_remove("DIVE_IDP_DATABASE")
        .output()
        .unwrap()
}

#[test]
fn seed_users_clients_and_bad_input() {
    let home = tempfile::tempdir().unwrap();
    let out = dive(home.path(), &["idp", "users", "seed", "--instance", "FRA"]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("created 7 test user(s)"), "{stdout}");
    let file = home.path().join("instances/fra/test-users.json");
    assert!(stdout.contains(&file.display().to_string()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let passwords: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let pw = passwords["testuser-fra-4"].as_str().unwrap();
    assert!(!stdout.contains(pw), "passwords are not printed");
    // Seeding again keeps the users and their passwords.
    let again = dive(home.path(), &["idp", "users", "seed", "--instance", "fra"]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("created 0 test user(s)"));

    let list = dive(home.path(), &["idp", "users", "list", "--instance", "FRA"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("testuser-fra-4") && text.contains("SECRET DÉFENSE"),
        "{text}"
    );
    assert!(
        text.contains("industry-fra-1") && text.contains("Industry"),
        "{text}"
    );

    // A clearance label not valid for the country is bad input (exit 2), naming the field.
    let out = dive(
        home.path(),
        &[
            "idp",
            "users",
            "add",
            "--instance",
            "FRA",
            "eve",
            "--clearance",
            "GEHEIMNIS",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("clearance"));

    let out = dive(
        home.path(),
        &[
            "idp",
            "clients",
            "add",
            "--instance",
            "FRA",
            "portal",
            "--redirect-uri",
            "https://portal.example/cb",
            "--client-credentials",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("client secret (shown once): "));
    let list = dive(
        home.path(),
        &["idp", "clients", "list", "--instance", "FRA"],
    );
    assert!(String::from_utf8_lossy(&list.stdout).contains("portal"));
    let out = dive(
        home.path(),
        &[
            "idp",
            "clients",
            "add",
            "--instance",
            "FRA",
            "bad",
            "--redirect-uri",
            "http://evil.example/",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = dive(
        home.path(),
        &["idp", "clients", "remove", "--instance", "FRA", "portal"],
    );
    assert!(out.status.success());
    let out = dive(
        home.path(),
        &["idp", "clients", "remove", "--instance", "FRA", "portal"],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = dive(
        home.path(),
        &[
            "idp",
            "users",
            "disable",
            "--instance",
            "FRA",
            "testuser-fra-1",
        ],
    );
    assert!(out.status.success());
}

#[test]
fn serve_idp_answers_over_https_and_stops_on_sigterm() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(home.path())
        .args(["serve", "idp", "--instance", "DEU", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let issuer = line
        .split("(issuer ")
        .nth(1)
        .and_then(|s| s.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pki = dive_pki::Pki::open(home.path()).unwrap();
        let http = dive_http::https_client(&pki).unwrap();
        let d: serde_json::Value = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["issuer"], issuer.as_str());
        let m = http.get(format!("{issuer}/metrics")).send().await.unwrap();
        assert!(
            m.text()
                .await
                .unwrap()
                .contains("dive_idp_http_requests_total")
        );
    });
    let db = home.path().join("instances/deu/idp.db");
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
