//! A realistic, deterministic decision workload for benchmarks and load tests: subjects of
//! several nations with their national clearance labels, documents with varied labels.

use serde_json::{Value, json};

const SUBJECTS: &[(&str, &str, &[&str])] = &[
    ("USA", "TOP SECRET", &["NATO", "FVEY"]),
    ("USA", "SECRET", &["NATO"]),
    ("GBR", "SECRET", &["NATO", "FVEY"]),
    ("FRA", "SECRET DÉFENSE", &["NATO"]),
    ("FRA", "CONFIDENTIEL DÉFENSE", &["NATO"]),
    ("DEU", "GEHEIM", &["NATO"]),
    ("DEU", "VS-NfD", &[]),
    ("ITA", "SEGRETO", &["NATO"]),
    ("CAN", "PROTECTED B", &["FVEY"]),
    ("POL", "TAJNE", &["NATO"]),
];

const RESOURCES: &[(&str, &[&str], &[&str], &str)] = &[
    (
        "UNCLASSIFIED",
        &["USA", "GBR", "FRA", "DEU", "ITA", "CAN", "POL"],
        &[],
        "ALL",
    ),
    (
        "RESTRICTED",
        &["USA", "GBR", "FRA", "DEU"],
        &["NATO"],
        "ALL",
    ),
    ("CONFIDENTIAL", &["USA", "GBR", "CAN"], &["FVEY"], "ALL"),
    (
        "SECRET",
        &["USA", "GBR", "FRA", "DEU", "ITA", "POL"],
        &["NATO"],
        "ALL",
    ),
    ("SECRET", &["USA", "GBR", "CAN"], &["FVEY", "NATO"], "ANY"),
    ("TOP_SECRET", &["USA", "GBR"], &["FVEY"], "ALL"),
];

/// The trusted issuer used for a subject's country in the workload (the embedded data's hub
/// trusts the USA, FRA, GBR and DEU issuers; others are denied as untrusted, as in real life).
fn issuer(country: &str) -> String {
    let port = match country {
        "USA" => 8443,
        "FRA" => 8444,
        "GBR" => 8445,
        _ => 8446,
    };
    format!(
        "https://localhost:{port}/realms/dive-{}",
        country.to_lowercase()
    )
}

/// Input number `i` of the workload (inputs repeat with period `SUBJECTS × RESOURCES × 4`).
pub fn input(i: usize) -> Value {
    let (country, clearance, cois) = SUBJECTS[i % SUBJECTS.len()];
    let (classification, rel, coi, op) = RESOURCES[(i / SUBJECTS.len()) % RESOURCES.len()];
    let variant = i / (SUBJECTS.len() * RESOURCES.len());
    json!({
        "subject": {
            "authenticated": true,
            "uniqueID": format!("user-{}-{}", country.to_lowercase(), i % SUBJECTS.len()),
            "clearance": clearance,
            "countryOfAffiliation": country,
            "acpCOI": cois,
            "organizationType": "MIL",
            "issuer": issuer(country),
        },
        "action": {"operation": "read"},
        "resource": {
            "resourceId": format!("doc-{}", variant % 4),
            "classification": classification,
            "releasabilityTo": rel,
            "COI": coi,
            "coiOperator": op,
            "creationDate": "2026-01-01T00:00:00Z",
            "encrypted": true,
        },
        "context": {"acr": "2", "amr": ["pwd", "otp"], "auth_time": 1_790_000_000 + (variant % 4) as i64},
    })
}

/// Number of distinct inputs in the workload.
pub const DISTINCT: usize = SUBJECTS.len() * RESOURCES.len() * 4;

/// The canonical single input used for uncached latency (a French SECRET user reading a NATO
/// SECRET document: every check runs and passes).
pub fn typical() -> Value {
    input(3 + SUBJECTS.len() * 3)
}

/// Inputs on which the PDP checks, at every load, that regorus's VM decides exactly like its
/// interpreter: the realistic workload plus a variant for every check, deny reason and
/// malformed shape (so that each branch of the policy runs at least once).
pub fn self_check_corpus() -> Vec<Value> {
    let mut out: Vec<Value> = (0..DISTINCT).map(input).collect();
    let base = typical();
    let set = |changes: &[(&str, Value)]| {
        let mut v = base.clone();
        for (ptr, val) in changes {
            if let Some((parent, key)) = ptr.rsplit_once('/')
                && let Some(Value::Object(m)) = v.pointer_mut(parent)
            {
                m.insert(key.to_string(), val.clone());
            }
        }
        v
    };
    let variants = [
        set(&[("/subject/authenticated", json!(false))]),
        set(&[("/subject/countryOfAffiliation", json!("fr"))]),
        set(&[("/subject/clearance", json!("ULTRA"))]),
        set(&[("/resource/classification", json!("TOP_SECRET"))]),
        set(&[("/context", json!({"acr": "1", "amr": ["pwd"]}))]),
        set(&[
            ("/action", json!("upload")),
            ("/resource/releasabilityTo", json!(["USA"])),
        ]),
        set(&[("/action", json!("upload"))]),
        set(&[("/resource/releasabilityTo", json!(["USA"]))]),
        set(&[("/resource/COI", json!(["NATO", "FVEY"]))]),
        set(&[
            ("/resource/COI", json!(["FVEY", "AUKUS"])),
            ("/resource/coiOperator", json!("ANY")),
        ]),
        set(&[
            ("/resource/COI", json!(["US-ONLY"])),
            ("/subject/acpCOI", json!(["US-ONLY"])),
        ]),
        set(&[("/resource/COI", json!(["US-ONLY", "FVEY"]))]),
        set(&[
            ("/resource/COI", json!(["Zeta"])),
            ("/subject/acpCOI", json!(["Zeta"])),
        ]),
        set(&[
            ("/resource/COI", json!([])),
            ("/resource/coiOperator", json!("SOME")),
        ]),
        set(&[("/resource/caveats", json!(["NOFORN"]))]),
        set(&[("/resource/creationDate", json!("2999-01-01T00:00:00Z"))]),
        set(&[("/resource/creationDate", Value::Null)]),
        set(&[("/context/integrityVerified", json!(false))]),
        set(&[("/context/integrityVerified", json!(true))]),
        set(&[("/subject/organizationType", json!("INDUSTRY"))]),
        set(&[
            ("/subject/organizationType", json!("INDUSTRY")),
            ("/resource/releasableToIndustry", json!(true)),
        ]),
        set(&[("/subject/issuer", json!("https://evil.example"))]),
        set(&[("/subject/issuer", Value::Null)]),
        set(&[("/resource/encrypted", json!(false))]),
        json!({}),
        json!(null),
        json!({"subject": "x", "resource": [1], "context": 3, "action": 7}),
    ];
    out.extend(variants);
    out
}
