//! PDP behaviour: caching keyed on every input, invalidation on hot reload, fail-closed
//! evaluation, thread safety, the Rego test runner and the OPA-compatible Data API.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use dive_policy::{EngineKind, Entrypoint, Input, Outcome, Pdp, Sources, run_tests, workload};
use serde_json::{Value, json};

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// A copy of the repository's policies in a temporary directory, to edit during a test.
fn copy_policies(to: &Path) {
    for e in std::fs::read_dir(policies_dir())
        .expect("policies dir")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "rego") {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn typical() -> Input {
    Input::from_json(workload::typical())
}

#[test]
fn cache_keys_on_coi_tags_authentication_and_action() {
    let pdp = Pdp::embedded().expect("pdp");
    let mut v = workload::typical();
    let first = pdp.decide(&Input::from_json(v.clone()));
    assert!(first.allow, "{}", first.reason);
    assert_eq!(pdp.cached_decisions(), 1);
    assert_eq!(pdp.decide(&Input::from_json(v.clone())), first);
    // A COI change, an MFA downgrade and another action are different decisions, not cache hits.
    v["subject"]["acpCOI"] = json!([]);
    assert!(!pdp.decide(&Input::from_json(v.clone())).allow);
    v["subject"]["acpCOI"] = json!(["NATO"]);
    v["context"]["amr"] = json!(["pwd"]);
    v["context"]["acr"] = json!("1");
    assert!(
        pdp.decide(&Input::from_json(v.clone()))
            .reason
            .starts_with("Stronger authentication")
    );
    v["context"]["amr"] = json!(["pwd", "otp"]);
    v["context"]["acr"] = json!("2");
    v["action"] = json!({"operation": "upload"});
    v["resource"]["releasabilityTo"] = json!(["USA"]);
    assert!(
        pdp.decide(&Input::from_json(v))
            .reason
            .starts_with("Upload refused")
    );
    assert_eq!(pdp.cached_decisions(), 4);
}

#[test]
fn data_change_on_disk_is_picked_up_and_invalidates_the_cache() {
    let data = tempfile::tempdir().expect("tempdir");
    let pdp = Pdp::new(Sources {
        policy_dir: Some(policies_dir()),
        data_dir: Some(data.path().into()),
    })
    .expect("pdp");
    assert!(pdp.decide(&typical()).allow);
    let before = pdp.version();
    assert_eq!(pdp.reload_if_changed().ok(), Some(None));
    // Revoke trust in the French issuer: the next decision must deny, without a restart.
    std::fs::write(
        data.path().join("trusted_issuers.json"),
        r#"{"https://localhost:8443/realms/dive-usa": {"instance": "USA"}}"#,
    )
    .expect("write");
    let version = pdp.reload_if_changed().expect("reload").expect("changed");
    assert_ne!(version, before);
    assert_eq!(pdp.cached_decisions(), 0);
    let d = pdp.decide(&typical());
    assert!(
        d.reason.starts_with("Untrusted token issuer"),
        "{}",
        d.reason
    );
    assert_eq!(d.policy_version.as_deref(), Some(version.as_str()));
}

#[test]
fn a_broken_reload_keeps_the_policy_in_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_policies(dir.path());
    let pdp = Pdp::new(Sources {
        policy_dir: Some(dir.path().into()),
        data_dir: None,
    })
    .expect("pdp");
    std::fs::write(
        dir.path().join("authz.rego"),
        "package dive.authz\nallow if {",
    )
    .expect("write");
    let err = pdp
        .reload()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("authz.rego"), "{err}");
    assert!(pdp.decide(&typical()).allow);
}

#[test]
fn evaluation_errors_fail_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_policies(dir.path());
    // A policy whose decision is not a decision document: deny, saying why.
    std::fs::write(
        dir.path().join("authz.rego"),
        "package dive.authz\nimport rego.v1\ndecision := {\"allow\": \"yes\"}\n",
    )
    .expect("write");
    let pdp = Pdp::new(Sources {
        policy_dir: Some(dir.path().into()),
        data_dir: None,
    })
    .expect("pdp");
    let d = pdp.decide(&typical());
    assert!(!d.allow);
    assert!(
        d.reason
            .starts_with("Policy evaluation failed, access denied: malformed decision"),
        "{}",
        d.reason
    );
    // An undefined decision is also a deny.
    std::fs::write(
        dir.path().join("authz.rego"),
        "package dive.authz\nimport rego.v1\ndecision := 1 if false\n",
    )
    .expect("write");
    pdp.reload().expect("reload");
    let d = pdp.decide(&typical());
    assert!(!d.allow && d.reason.contains("no decision"), "{}", d.reason);
}

#[test]
fn decisions_are_consistent_across_threads() {
    let pdp = Arc::new(Pdp::embedded().expect("pdp"));
    const N: usize = 60;
    let expected: Vec<bool> = (0..N)
        .map(|i| pdp.decide(&Input::from_json(workload::input(i))).allow)
        .collect();
    assert!(expected.iter().any(|a| *a) && expected.iter().any(|a| !*a));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (pdp, expected) = (pdp.clone(), expected.clone());
            std::thread::spawn(move || {
                (0..N * 2).all(|i| {
                    let k = (i + t * 7) % N;
                    // Reloads while other threads decide: decisions stay consistent.
                    if t == 0 && i % 40 == 0 {
                        let _ = pdp.reload();
                    }
                    pdp.decide(&Input::from_json(workload::input(k))).allow == expected[k]
                })
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap_or(false));
    }
}

#[test]
fn admin_and_guardrail_entrypoints() {
    let pdp = Pdp::embedded().expect("pdp");
    let admin = json!({
        "subject": {"authenticated": true, "uniqueID": "admin-usa", "roles": ["dive-admin"], "issuer": "https://localhost:8443/realms/dive-usa"},
        "action": {"operation": "federation.add"},
        "context": {"acr": "2", "amr": ["pwd", "otp"]},
    });
    assert!(pdp.decide_admin(&Input::from_json(admin.clone())).allow);
    let mut user = admin.clone();
    user["subject"]["roles"] = json!(["dive-user"]);
    let d = pdp.decide_admin(&Input::from_json(user));
    assert_eq!(
        d.reason,
        "Admin role required: federation.add needs the dive-admin role"
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let ok = pdp.decide_guardrails(&Input::from_json(
        json!({"token": {"iat": now - 10, "exp": now + 890}}),
    ));
    assert!(ok.allow, "{}", ok.reason);
    let long = pdp.decide_guardrails(&Input::from_json(
        json!({"token": {"iat": now - 10, "exp": now + 86_400}}),
    ));
    assert!(
        !long.allow && long.reason.contains("exceeds the 900s limit"),
        "{}",
        long.reason
    );
    let bad = pdp.decide_guardrails(&Input::from_json(json!({"token": {"iat": "yesterday"}})));
    assert!(
        !bad.allow && bad.reason.contains("token.iat must be seconds"),
        "{}",
        bad.reason
    );
}

#[test]
fn repository_rego_tests_pass_and_a_failing_test_is_reported() {
    let snap = Sources {
        policy_dir: Some(policies_dir()),
        data_dir: None,
    }
    .load()
    .expect("load");
    let results = run_tests(&snap, None).expect("run");
    assert!(results.len() >= 20, "{} tests", results.len());
    let failed: Vec<_> = results
        .iter()
        .filter(|r| r.outcome != Outcome::Pass)
        .map(|r| format!("{} {:?}", r.name, r.outcome))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    copy_policies(dir.path());
    std::fs::write(
        dir.path().join("wrong_test.rego"),
        "package dive.wrong_test\nimport rego.v1\nimport data.dive.authz\ntest_empty_input_allowed if { authz.decision.allow with input as {} }\n",
    )
    .expect("write");
    let snap = Sources {
        policy_dir: Some(dir.path().into()),
        data_dir: None,
    }
    .load()
    .expect("load");
    let r = run_tests(&snap, Some("wrong_test")).expect("run");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].outcome, Outcome::Fail);
}

#[tokio::test]
async fn opa_compatible_data_api() {
    let pdp = Arc::new(Pdp::embedded().expect("pdp"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dive_policy::server::serve(
        pdp,
        listener,
        std::time::Duration::from_secs(60),
        async move {
            let _ = rx.await;
        },
    ));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let health = client
        .get(format!("{base}/health"))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);
    let post = |path: &str, body: String| {
        client
            .post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let body = json!({"input": workload::typical()}).to_string();
    let r: Value = post("/v1/data/dive/authz/decision", body.clone())
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r["result"]["allow"], true);
    assert_eq!(r["result"]["obligations"][0]["type"], "kas_key_release");
    let r: Value = post("/v1/data/dive/authz/allow", body.clone())
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"result": true}));
    let r: Value = post(
        "/v1/data/dive/authz/reason",
        json!({"input": {}}).to_string(),
    )
    .await
    .expect("post")
    .json()
    .await
    .expect("json");
    assert_eq!(r["result"], "Not authenticated: sign in and try again");
    let r: Value = post("/v1/data/other/pkg", body)
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({}));
    let bad = post("/v1/data/dive/authz", "{not json".into())
        .await
        .expect("post");
    assert_eq!(bad.status(), 400);
    let err: Value = bad.json().await.expect("json");
    assert_eq!(err["code"], "invalid_parameter");
    let _ = tx.send(());
    server.await.expect("join").expect("serve");
}

#[test]
fn typed_inputs_from_token_claims_and_labels() {
    use dive_core::{
        CoiOperator, CountryCode, Equivalency, ResourceAttributes, SecurityLabel, SubjectAttributes,
    };
    let claims = json!({
        "uniqueID": "testuser-deu-4", "clearance": "GEHEIM", "countryOfAffiliation": "DEU",
        "acpCOI": ["NATO"], "organizationType": "MIL", "acr": "2", "amr": ["pwd", "otp"],
        "auth_time": 1_790_000_000, "iss": "https://localhost:8446/realms/dive-deu", "roles": ["dive-user"],
    });
    let subject = SubjectAttributes::from_claims(&claims, Equivalency::builtin()).expect("claims");
    let cc = |c: &str| CountryCode::new(c).expect("country");
    let label = SecurityLabel::from_national(
        Equivalency::builtin(),
        cc("FRA"),
        "SECRET DÉFENSE",
        [cc("FRA"), cc("DEU")],
    )
    .expect("label")
    .with_coi(CoiOperator::All, ["NATO"]);
    let resource = ResourceAttributes::from_label("doc-fr-1", label, true);
    let pdp = Pdp::embedded().expect("pdp");
    let d = pdp.decide(&Input::new(
        &subject,
        "read",
        &resource,
        &dive_policy::RequestContext::default(),
    ));
    assert!(d.allow, "{}", d.reason);
    assert_eq!(
        d.evaluation_details["resource"]["originalClassification"],
        "SECRET DÉFENSE"
    );
    let ctx = dive_policy::RequestContext {
        integrity_verified: Some(false),
        current_time: None,
    };
    let d = pdp.decide(&Input::new(&subject, "read", &resource, &ctx));
    assert!(
        d.reason.starts_with("Integrity check failed"),
        "{}",
        d.reason
    );
}

#[test]
fn a_policy_the_vm_cannot_run_falls_back_to_the_interpreter() {
    let pdp = Pdp::embedded().expect("pdp");
    assert_eq!(pdp.engine(Entrypoint::Authz), EngineKind::Vm);
    assert_eq!(pdp.engine(Entrypoint::Admin), EngineKind::Interpreter);
    // regorus's VM compiler does not support partial object rules with constant keys yet: the
    // policy still decides, exactly, on the interpreter, and the PDP says why.
    let dir = tempfile::tempdir().expect("tempdir");
    copy_policies(dir.path());
    std::fs::write(
        dir.path().join("authz.rego"),
        "package dive.authz\nimport rego.v1\np[\"k\"] := 1\n\
         decision := {\"allow\": p.k == 1, \"reason\": \"forced\", \"obligations\": [], \"evaluation_details\": {}}\n",
    )
    .expect("write");
    let pdp = Pdp::new(Sources {
        policy_dir: Some(dir.path().into()),
        data_dir: None,
    })
    .expect("pdp");
    assert_eq!(pdp.engine(Entrypoint::Authz), EngineKind::Interpreter);
    let why = pdp
        .interpreter_reason(Entrypoint::Authz)
        .unwrap_or_default();
    assert!(why.contains("does not compile for the regorus VM"), "{why}");
    let d = pdp.decide(&Input::from_json(json!({})));
    assert!(d.allow && d.reason == "forced", "{}", d.reason);
}

#[test]
fn raw_input_is_normalised_before_evaluation() {
    let pdp = Pdp::embedded().expect("pdp");
    let n = pdp.normalized_input(Entrypoint::Authz, &typical());
    assert_eq!(n["subject"]["clearance"], "SECRET");
    assert_eq!(n["subject"]["clearanceOriginal"], "SECRET DÉFENSE");
    assert_eq!(n["action"], "read");
    assert_eq!(n["context"]["aal"], 2);
    // Malformed input is denied with a reason, never a panic or an engine error.
    for bad in [
        json!(null),
        json!([1]),
        json!({"subject": {"clearance": ["x"]}}),
    ] {
        let d = pdp.decide(&Input::from_json(bad));
        assert!(!d.allow);
        assert!(
            !d.reason.starts_with("Policy evaluation failed"),
            "{}",
            d.reason
        );
    }
    let mut v = workload::typical();
    v["subject"]["clearance"] = json!("SECRET DÉFENCE");
    let d = pdp.decide(&Input::from_json(v));
    assert_eq!(
        d.reason,
        "Invalid or missing attributes: subject clearance \"SECRET DÉFENCE\" is not a known classification label of FRA"
    );
    // Guardrail inputs are the caller's own document.
    let g = json!({"token": {"iat": 1}});
    assert_eq!(
        pdp.normalized_input(Entrypoint::Guardrails, &Input::from_json(g.clone())),
        g
    );
}

#[test]
fn coi_tags_match_the_registry_whatever_their_case() {
    // Program COIs are spelled `Alpha` in the registry; a label read back from attribute FQNs
    // carries `ALPHA`. Both must be the same community, on either side.
    let pdp = Pdp::embedded().expect("pdp");
    let mut v = workload::typical();
    v["subject"]["acpCOI"] = json!(["Alpha"]);
    v["resource"]["COI"] = json!(["ALPHA"]);
    let n = pdp.normalized_input(Entrypoint::Authz, &Input::from_json(v.clone()));
    assert_eq!(n["resource"]["COI"], json!(["Alpha"]));
    let d = pdp.decide(&Input::from_json(v.clone()));
    assert!(d.allow, "{}", d.reason);
    v["subject"]["acpCOI"] = json!(["alpha"]);
    v["resource"]["COI"] = json!(["Alpha"]);
    let d = pdp.decide(&Input::from_json(v.clone()));
    assert!(d.allow, "{}", d.reason);
    // A different program is still missing.
    v["subject"]["acpCOI"] = json!(["BETA"]);
    let d = pdp.decide(&Input::from_json(v));
    assert!(!d.allow);
    assert!(d.reason.contains("Alpha"), "{}", d.reason);
}

#[test]
fn repeated_request_bodies_skip_parsing_until_the_policies_change() {
    let pdp = Pdp::embedded().expect("pdp");
    let body = json!({"input": workload::typical()}).to_string();
    let parses = std::cell::Cell::new(0);
    let parse = |b: &[u8]| {
        parses.set(parses.get() + 1);
        let v: Value = serde_json::from_slice(b).map_err(|e| e.to_string())?;
        Ok::<_, String>(Input::from_json(v["input"].clone()))
    };
    let first = pdp
        .decide_request_body(Entrypoint::Authz, body.as_bytes(), parse)
        .unwrap();
    assert!(first.allow, "{}", first.reason);
    let again = pdp
        .decide_request_body(Entrypoint::Authz, body.as_bytes(), parse)
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(
        parses.get(),
        1,
        "a byte-identical request is not parsed again"
    );
    // Other bytes (same document, other spacing) are parsed, and decided alike.
    let spaced = format!(" {body}");
    let d = pdp
        .decide_request_body(Entrypoint::Authz, spaced.as_bytes(), parse)
        .unwrap();
    assert_eq!(d, first);
    assert_eq!(parses.get(), 2);
    // Bad bodies are the parser's error and are never cached.
    for _ in 0..2 {
        assert!(
            pdp.decide_request_body(Entrypoint::Authz, b"{not json", parse)
                .is_err()
        );
    }
    assert_eq!(parses.get(), 4);
    // A reload drops what was decided under the old policies.
    pdp.reload().expect("reload");
    pdp.decide_request_body(Entrypoint::Authz, body.as_bytes(), parse)
        .unwrap();
    assert_eq!(parses.get(), 5);
    // Entrypoints other than access decisions are never cached.
    let admin = json!({"input": {}}).to_string();
    for _ in 0..2 {
        pdp.decide_request_body(Entrypoint::Admin, admin.as_bytes(), parse)
            .unwrap();
    }
    assert_eq!(parses.get(), 7);
}
