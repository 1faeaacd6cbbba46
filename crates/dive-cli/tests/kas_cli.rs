//! `dive serve kas`, `dive kas` and `dive ztdf decrypt --kas` through the real binary, with a
//! real `dive serve idp` beside it, in a temporary DIVE_HOME.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

fn dive_cmd(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dive"));
    c.arg("--home")
        .arg(home)
        .env_remove("DIVE_IDP_PASSWORD")
        .env_remove("DIVE_IDP_DATABASE")
        .env_remove("DIVE_KAS_DATABASE")
        .env_remove("DIVE_PASSWORD")
        .env_remove("DIVE_TOTP_SECRET")
        .env_remove("DIVE_ACCESS_TOKEN");
    c
}

fn dive(home: &Path, args: &[&str]) -> Output {
    dive_cmd(home).args(args).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Start a server and return it with the first line it prints.
fn serve(home: &Path, args: &[&str]) -> (Child, String) {
    let mut child = dive_cmd(home)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

fn stop(mut child: Child) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

fn between<'a>(line: &'a str, start: &str, end: &str) -> &'a str {
    line.split(start)
        .nth(1)
        .and_then(|s| s.split(end).next())
        .unwrap_or_else(|| panic!("{start:?} in {line:?}"))
}

#[test]
fn decrypt_through_the_kas_with_a_login_then_rotate_and_audit() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    assert!(
        dive(h, &["idp", "users", "seed", "--instance", "USA"])
            .status
            .success()
    );
    let out = dive(
        h,
        &[
            "idp",
            "clients",
            "add",
            "--instance",
            "USA",
            "dive-cli",
            "--kind",
            "public",
            "--redirect-uri",
            "http://127.0.0.1/dive-cli/callback",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = dive(
        h,
        &[
            "idp",
            "clients",
            "add",
            "--instance",
            "USA",
            "kas",
            "--redirect-uri",
            "https://kas.invalid/cb",
            "--client-credentials",
        ],
    );
    let kas_secret = between(&text(&out.stdout), "client secret (shown once): ", "\n").to_string();
    let secrets = h.join("instances/usa/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("kas-client.json"),
        serde_json::json!({"client_id": "kas", "client_secret": kas_secret}).to_string(),
    )
    .unwrap();
    let passwords: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(h.join("instances/usa/test-users.json")).unwrap(),
    )
    .unwrap();

    let (idp, line) = serve(
        h,
        &["serve", "idp", "--instance", "USA", "--bind", "127.0.0.1:0"],
    );
    let issuer = between(&line, "(issuer ", ")").to_string();
    // The instance's policy data: the defaults, trusting this IdP.
    let policy = h.join("instances/usa/policy");
    std::fs::create_dir_all(&policy).unwrap();
    let repo_data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/data");
    for e in std::fs::read_dir(repo_data).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, policy.join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        policy.join("trusted_issuers.json"),
        serde_json::json!({ issuer.clone(): {"instance": "USA", "name": "test"} }).to_string(),
    )
    .unwrap();

    let (kas, line) = serve(
        h,
        &["serve", "kas", "--instance", "USA", "--bind", "127.0.0.1:0"],
    );
    let kas_url = between(&line, "(KAS URL ", ")").to_string();
    let keys = dive(h, &["kas", "keys", "--instance", "USA", "--json"]);
    let keys: serde_json::Value = serde_json::from_slice(&keys.stdout).unwrap();
    let rsa = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["algorithm"] == "rsa:2048" && k["current"] == true)
        .unwrap();
    let kid = rsa["kid"].as_str().unwrap().to_string();
    let pubkey = h.join(format!("instances/usa/kas/{kid}.pub.pem"));

    let plain = h.join("brief.txt");
    std::fs::write(&plain, b"SECRET brief for FVEY partners\n").unwrap();
    let ztdf = h.join("brief.ztdf");
    let out = dive(
        h,
        &[
            "ztdf",
            "encrypt",
            "--kas-url",
            &kas_url,
            "--kas-public-key",
            pubkey.to_str().unwrap(),
            "--kid",
            &kid,
            "--label",
            "SECRET//FVEY//REL TO USA, GBR",
            plain.to_str().unwrap(),
            ztdf.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{out:?}");

    // A SECRET user logs in (enrolling TOTP on the way) and decrypts.
    let out_file = h.join("brief.out");
    let user = "testuser-usa-4";
    let out = dive_cmd(h)
        .args([
            "ztdf",
            "decrypt",
            "--kas",
            "--user",
            user,
            "--issuer",
            &issuer,
            ztdf.to_str().unwrap(),
            out_file.to_str().unwrap(),
        ])
        .env("DIVE_PASSWORD", passwords[user].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(&plain).unwrap()
    );
    let stderr = text(&out.stderr);
    let totp = between(&stderr, "DIVE_TOTP_SECRET): ", "\n")
        .trim()
        .to_string();

    // An UNCLASSIFIED user is refused: exit 1, nothing written.
    let denied_file = h.join("denied.out");
    let out = dive_cmd(h)
        .args([
            "ztdf",
            "decrypt",
            "--kas",
            "--client-key",
            "rsa",
            "--user",
            "testuser-usa-1",
            "--issuer",
            &issuer,
            ztdf.to_str().unwrap(),
            denied_file.to_str().unwrap(),
        ])
        .env(
            "DIVE_PASSWORD",
            passwords["testuser-usa-1"].as_str().unwrap(),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(text(&out.stderr).contains("refused"), "{out:?}");
    assert!(!denied_file.exists());

    // Rotation: new current keys, and the old file still decrypts (second login uses the TOTP
    // secret enrolled above).
    let out = dive(h, &["kas", "rotate-keys", "--instance", "USA"]);
    assert!(out.status.success(), "{out:?}");
    assert!(text(&out.stdout).contains("new current rsa:2048 key: r-"));
    std::fs::remove_file(&out_file).unwrap();
    let out = dive_cmd(h)
        .args([
            "ztdf",
            "decrypt",
            "--kas",
            "--user",
            user,
            "--issuer",
            &issuer,
            ztdf.to_str().unwrap(),
            out_file.to_str().unwrap(),
        ])
        .env("DIVE_PASSWORD", passwords[user].as_str().unwrap())
        .env("DIVE_TOTP_SECRET", &totp)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        std::fs::read(&out_file).unwrap(),
        std::fs::read(&plain).unwrap()
    );

    // The audit log shows both decisions, with the real reason for the refusal.
    let out = dive(h, &["kas", "audit", "--instance", "USA", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(rows.iter().filter(|r| r["decision"] == "permit").count(), 2);
    let fail = rows.iter().find(|r| r["decision"] == "fail").unwrap();
    assert!(
        fail["reason"].as_str().unwrap().starts_with("PDP: "),
        "{fail}"
    );

    // Usage errors exit 2.
    let out = dive(
        h,
        &["ztdf", "decrypt", "--kas", ztdf.to_str().unwrap(), "x"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = dive(h, &["serve", "kas", "--instance", "XX"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    stop(kas);
    stop(idp);
    // Keys are 0600 under the instance directory.
    use std::os::unix::fs::PermissionsExt;
    let key = h.join(format!("instances/usa/kas/{kid}.key.pem"));
    assert_eq!(
        std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
