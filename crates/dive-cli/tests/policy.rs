//! `dive policy test|eval` and `dive serve pdp` driven through the real binary.

use std::path::PathBuf;
use std::process::{Command, Output};

fn dive(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dive"))
        .arg("--home")
        .arg(home)
        .args(args)
        .output()
        .expect("run dive")
}

fn policies() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../policies")
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn policy_test_runs_the_repository_tests() {
    let home = tempfile::tempdir().expect("home");
    let out = dive(home.path(), &["policy", "test", &policies()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("PASS: "), "{}", stdout(&out));
    let verbose = dive(
        home.path(),
        &["-v", "policy", "test", &policies(), "--run", "admin_test"],
    );
    let text = stdout(&verbose);
    assert!(
        text.contains("data.dive.admin_test.test_admin_role_required: PASS"),
        "{text}"
    );
}

#[test]
fn policy_test_fails_with_a_failing_test() {
    let home = tempfile::tempdir().expect("home");
    let dir = tempfile::tempdir().expect("dir");
    for e in std::fs::read_dir(policies()).expect("policies").flatten() {
        std::fs::copy(e.path(), dir.path().join(e.file_name())).ok();
    }
    std::fs::write(
        dir.path().join("bad_test.rego"),
        "package bad_test\nimport rego.v1\nimport data.dive.authz\ntest_anonymous_allowed if { authz.decision.allow with input as {} }\n",
    )
    .expect("write");
    let out = dive(
        home.path(),
        &["policy", "test", &dir.path().display().to_string()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("data.bad_test.test_anonymous_allowed: FAIL"),
        "{}",
        stdout(&out)
    );
    let missing = dive(home.path(), &["policy", "test", "/nonexistent/policies"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn policy_eval_prints_the_decision() {
    let home = tempfile::tempdir().expect("home");
    let file = home.path().join("input.json");
    let input = serde_json::json!({"input": {
        "subject": {"authenticated": true, "uniqueID": "u1", "clearance": "GEHEIM", "countryOfAffiliation": "DEU",
                    "acpCOI": ["NATO"], "organizationType": "MIL", "issuer": "https://localhost:8446/realms/dive-deu"},
        "action": "read",
        "resource": {"resourceId": "d1", "classification": "TOP_SECRET", "releasabilityTo": ["DEU"], "COI": ["NATO"]},
        "context": {"acr": "2", "amr": ["pwd", "otp"]}
    }});
    std::fs::write(&file, input.to_string()).expect("write");
    let out = dive(
        home.path(),
        &["policy", "eval", "--input", &file.display().to_string()],
    );
    assert_eq!(out.status.code(), Some(0));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json decision");
    assert_eq!(d["allow"], false);
    assert_eq!(
        d["reason"],
        "Insufficient clearance: your clearance SECRET is below the document's classification TOP_SECRET"
    );
    // The normalised input, as the policy sees it: the German label is SECRET, rank 3.
    let out = dive(
        home.path(),
        &[
            "policy",
            "eval",
            "--normalized",
            "--input",
            &file.display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    let n: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json input");
    assert_eq!(n["subject"]["clearance"], "SECRET");
    assert_eq!(n["subject"]["rank"], 3);
    assert_eq!(n["resource"]["rank"], 4);
    assert_eq!(n["context"]["aal"], 2);
    std::fs::write(&file, "{oops").expect("write");
    let bad = dive(
        home.path(),
        &["policy", "eval", "--input", &file.display().to_string()],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not JSON"));
}

#[test]
fn serve_pdp_refuses_non_loopback_plain_http() {
    let home = tempfile::tempdir().expect("home");
    let out = dive(home.path(), &["serve", "pdp", "--listen", "0.0.0.0:18181"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only loopback"));
}
