//! `dive idp upstreams` and `dive idp clients add --admin` through the real binary.

use std::process::Command;

fn dive(home: &std::path::Path, args: &[&str], secret: Option<&str>) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dive"));
    c.arg("--home")
        .arg(home)
        .args(args)
        .env_remove("DIVE_IDP_DATABASE")
        .env_remove("DIVE_IDP_UPSTREAM_SECRET");
    if let Some(s) = secret {
        c.env("DIVE_IDP_UPSTREAM_SECRET", s);
    }
    c.output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn upstreams_add_list_disable_remove_and_bad_input() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let secret = "the-secret-USA-holds-at-FRA-0123456789";
    let ca = h.join("fra-ca.pem");
    // Any valid CA certificate will do: the installation CA of another home.
    let other = tempfile::tempdir().unwrap();
    let pki = dive_pki::Pki::open(other.path()).unwrap();
    std::fs::copy(pki.ca_cert_path(), &ca).unwrap();
    let add = [
        "idp",
        "upstreams",
        "add",
        "--instance",
        "USA",
        "fra-idp",
        "--issuer",
        "https://idp.fra.example",
        "--client-id",
        "dive-usa-broker",
        "--country",
        "FRA",
        "--claim",
        "clearance=nationalClearance",
    ];
    // The secret comes only from the environment.
    let out = dive(h, &add, None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("DIVE_IDP_UPSTREAM_SECRET"));
    let mut with_ca: Vec<&str> = add.to_vec();
    with_ca.extend(["--ca-pem", ca.to_str().unwrap()]);
    let out = dive(h, &with_ca, Some(secret));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("added upstream fra-idp (FRA)"));
    assert!(!text(&out).contains(secret));

    let out = dive(h, &with_ca, Some(secret));
    assert_eq!(out.status.code(), Some(2), "exists: {}", text(&out));

    // Bad input names what is wrong, exit 2.
    for (args, needle) in [
        (vec!["--issuer", "http://idp.deu.example"], "issuer"),
        (vec!["--claim", "clearence=x"], "clearence"),
        (vec!["--claim", "clearance"], "LOCAL=UPSTREAM"),
        (vec!["--country", "Germany"], "country"),
    ] {
        let mut a = vec![
            "idp",
            "upstreams",
            "add",
            "--instance",
            "USA",
            "deu-idp",
            "--client-id",
            "x",
        ];
        if !args.contains(&"--issuer") {
            a.extend(["--issuer", "https://idp.deu.example"]);
        }
        a.extend(args.iter().copied());
        let out = dive(h, &a, Some(secret));
        assert_eq!(out.status.code(), Some(2), "{a:?}: {}", text(&out));
        assert!(text(&out).contains(needle), "{a:?}: {}", text(&out));
    }

    let out = dive(
        h,
        &["idp", "upstreams", "list", "--instance", "USA", "--json"],
        None,
    );
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "refused adds stored nothing"
    );
    assert_eq!(list[0]["alias"], "fra-idp");
    assert_eq!(list[0]["claim_mapping"]["clearance"], "nationalClearance");
    assert_eq!(list[0]["country"], "FRA");
    assert!(
        list[0]["ca_pem"]
            .as_str()
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    assert!(!text(&out).contains(secret), "the secret is never shown");

    let out = dive(
        h,
        &[
            "idp",
            "upstreams",
            "disable",
            "--instance",
            "USA",
            "fra-idp",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = dive(h, &["idp", "upstreams", "list", "--instance", "USA"], None);
    assert!(text(&out).contains("disabled"), "{}", text(&out));
    let out = dive(
        h,
        &["idp", "upstreams", "enable", "--instance", "USA", "fra-idp"],
        None,
    );
    assert!(out.status.success());
    let out = dive(
        h,
        &["idp", "upstreams", "remove", "--instance", "USA", "fra-idp"],
        None,
    );
    assert!(out.status.success());
    let out = dive(
        h,
        &["idp", "upstreams", "remove", "--instance", "USA", "fra-idp"],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not found"));
}

#[test]
fn admin_clients_hold_the_admin_scope() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = dive(
        h,
        &[
            "idp",
            "clients",
            "add",
            "--instance",
            "USA",
            "fed-admin",
            "--client-credentials",
            "--admin",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("(admin)"));
    let out = dive(
        h,
        &["idp", "clients", "add", "--instance", "USA", "x", "--admin"],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "--admin needs --client-credentials"
    );
    let out = dive(
        h,
        &["idp", "clients", "list", "--instance", "USA", "--json"],
        None,
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["client_id"], "fed-admin");
    assert_eq!(list[0]["scopes"], serde_json::json!(["admin"]));
}
