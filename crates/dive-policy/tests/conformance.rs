//! Conformance suite: table-driven decisions covering every check, every deny reason and their
//! priority, national labels of many nations, coherence rules and malformed inputs.

use std::path::PathBuf;
use std::sync::OnceLock;

use dive_policy::{EngineKind, Entrypoint, Input, Pdp, Sources};
use serde_json::{Value, json};

const NOW: &str = "2026-06-01T12:00:00Z";

const NATIONS: &[&str] = &[
    "USA", "FRA", "GBR", "DEU", "ITA", "ESP", "POL", "NLD", "NOR", "CAN", "AUS", "NZL", "TUR",
    "ROU", "BEL", "DNK",
];

fn issuer(country: &str) -> String {
    format!("https://idp.{}.dive.test", country.to_lowercase())
}

/// Test data: a USA hub trusting and federated with sixteen nations; JPN trusted, not federated.
fn data_dir(strict: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut issuers = serde_json::Map::new();
    for c in NATIONS.iter().chain(&["JPN"]) {
        issuers.insert(issuer(c), json!({"instance": c}));
    }
    let partners: Vec<&str> = NATIONS.iter().copied().filter(|c| *c != "USA").collect();
    let settings = json!({
        "instance": "USA", "embargoSkewSeconds": 300,
        "requireAal3ForTopSecret": strict, "strictCoherence": strict,
    });
    let files = [
        ("trusted_issuers.json", Value::Object(issuers)),
        ("federation.json", json!({ "USA": partners })),
        ("settings.json", settings),
    ];
    for (name, v) in files {
        std::fs::write(dir.path().join(name), v.to_string()).expect("write data");
    }
    dir
}

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn pdp(strict: bool) -> &'static Pdp {
    static DEFAULT: OnceLock<Pdp> = OnceLock::new();
    static STRICT: OnceLock<Pdp> = OnceLock::new();
    let cell = if strict { &STRICT } else { &DEFAULT };
    cell.get_or_init(|| {
        let dir = data_dir(strict);
        let sources = Sources {
            policy_dir: Some(policies_dir()),
            data_dir: Some(dir.path().into()),
        };
        Pdp::new(sources).expect("policies compile")
    })
}

/// The same PDPs evaluating on regorus's interpreter only, to compare the VM against.
fn interpreter_pdp(strict: bool) -> &'static Pdp {
    static DEFAULT: OnceLock<Pdp> = OnceLock::new();
    static STRICT: OnceLock<Pdp> = OnceLock::new();
    let cell = if strict { &STRICT } else { &DEFAULT };
    cell.get_or_init(|| {
        let dir = data_dir(strict);
        let sources = Sources {
            policy_dir: Some(policies_dir()),
            data_dir: Some(dir.path().into()),
        };
        Pdp::new(sources)
            .and_then(Pdp::without_vm)
            .expect("policies compile")
    })
}

fn subject(country: &str, clearance: &str) -> Value {
    json!({
        "authenticated": true,
        "uniqueID": format!("testuser-{}-1", country.to_lowercase()),
        "clearance": clearance,
        "countryOfAffiliation": country,
        "acpCOI": ["NATO"],
        "organizationType": "MIL",
        "issuer": issuer(country),
    })
}

fn resource(classification: &str) -> Value {
    json!({
        "resourceId": "doc-1",
        "classification": classification,
        "releasabilityTo": NATIONS,
        "COI": ["NATO"],
        "coiOperator": "ALL",
        "creationDate": "2026-01-01T00:00:00Z",
        "encrypted": true,
    })
}

fn input(subject: Value, resource: Value) -> Value {
    json!({
        "subject": subject,
        "action": {"operation": "read"},
        "resource": resource,
        "context": {"acr": "2", "amr": ["pwd", "otp"], "currentTime": NOW},
    })
}

/// The baseline: a French SECRET user reading a NATO SECRET document. Allowed.
fn base() -> Value {
    input(subject("FRA", "SECRET DÉFENSE"), resource("SECRET"))
}

/// Set (or with `Value::Null` as `del`, remove) fields by JSON pointer.
fn with(mut v: Value, changes: &[(&str, Value)]) -> Value {
    for (ptr, val) in changes {
        let (parent, key) = ptr.rsplit_once('/').expect("pointer has a parent");
        let target = if parent.is_empty() {
            Some(&mut v)
        } else {
            v.pointer_mut(parent)
        };
        let obj = target
            .and_then(Value::as_object_mut)
            .expect("parent is an object");
        if *val == del() {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), val.clone());
        }
    }
    v
}

/// Marker for "remove this field".
fn del() -> Value {
    json!({"__delete__": true})
}

struct Case {
    name: &'static str,
    strict: bool,
    input: Value,
    allow: bool,
    /// The reason must contain this.
    reason: &'static str,
}

fn case(name: &'static str, input: Value, allow: bool, reason: &'static str) -> Case {
    Case {
        name,
        strict: false,
        input,
        allow,
        reason,
    }
}

fn strict(mut c: Case) -> Case {
    c.strict = true;
    c
}

const GRANTED: &str = "Access granted: all conditions are met";

fn national(country: &str, label: &str, classification: &str) -> Value {
    input(subject(country, label), resource(classification))
}

fn cases() -> Vec<Case> {
    let b = base;
    let mfa1 = json!({"acr": "1", "amr": ["pwd"], "currentTime": NOW});
    let industry = |country: &str, classification: &str, rel: bool| {
        let mut s = subject(country, "SECRET");
        s["organizationType"] = json!("INDUSTRY");
        let mut r = resource(classification);
        r["releasableToIndustry"] = json!(rel);
        input(s, r)
    };
    let us_only = |cois: Value, rel: Value, subject_cois: Value, caveats: Value| {
        let mut s = subject("USA", "SECRET");
        s["acpCOI"] = subject_cois;
        let mut r = resource("SECRET");
        r["COI"] = cois;
        r["releasabilityTo"] = rel;
        r["caveats"] = caveats;
        input(s, r)
    };
    vec![
        // 1. authentication
        case("baseline allow", b(), true, GRANTED),
        case(
            "not authenticated",
            with(b(), &[("/subject/authenticated", json!(false))]),
            false,
            "Not authenticated",
        ),
        case(
            "authenticated flag missing",
            with(b(), &[("/subject/authenticated", del())]),
            false,
            "Not authenticated",
        ),
        case(
            "authenticated as string is not true",
            with(b(), &[("/subject/authenticated", json!("true"))]),
            false,
            "Not authenticated",
        ),
        // 2. attributes
        case(
            "missing uniqueID",
            with(b(), &[("/subject/uniqueID", del())]),
            false,
            "subject.uniqueID is missing or empty",
        ),
        case(
            "blank uniqueID",
            with(b(), &[("/subject/uniqueID", json!("  "))]),
            false,
            "subject.uniqueID is missing or empty",
        ),
        case(
            "uniqueID wrong type",
            with(b(), &[("/subject/uniqueID", json!(42))]),
            false,
            "subject.uniqueID is missing or empty",
        ),
        case(
            "missing country",
            with(b(), &[("/subject/countryOfAffiliation", del())]),
            false,
            "subject.countryOfAffiliation null is not a valid ISO 3166-1 alpha-3 code",
        ),
        case(
            "lower-case country",
            with(b(), &[("/subject/countryOfAffiliation", json!("fra"))]),
            false,
            "subject.countryOfAffiliation \"fra\" is not a valid",
        ),
        case(
            "two-letter country UK",
            with(b(), &[("/subject/countryOfAffiliation", json!("UK"))]),
            false,
            "\"UK\" is not a valid",
        ),
        case(
            "NATO is not a country",
            with(b(), &[("/subject/countryOfAffiliation", json!("NATO"))]),
            false,
            "\"NATO\" is not a valid",
        ),
        case(
            "missing clearance",
            with(b(), &[("/subject/clearance", del())]),
            false,
            "subject.clearance is missing",
        ),
        case(
            "clearance wrong type",
            with(b(), &[("/subject/clearance", json!(3))]),
            false,
            "subject clearance 3 is not a known classification label of FRA",
        ),
        case(
            "unknown national label is not guessed",
            with(b(), &[("/subject/clearance", json!("ULTRA DÉFENSE"))]),
            false,
            "\"ULTRA DÉFENSE\" is not a known classification label of FRA",
        ),
        case(
            "missing resource classification",
            with(b(), &[("/resource/classification", del())]),
            false,
            "resource.classification is missing",
        ),
        case(
            "unknown resource classification",
            with(b(), &[("/resource/classification", json!("SEKRIT"))]),
            false,
            "resource classification \"SEKRIT\" is not a known classification label",
        ),
        case(
            "releasabilityTo not an array",
            with(b(), &[("/resource/releasabilityTo", json!("FRA"))]),
            false,
            "resource.releasabilityTo must be an array",
        ),
        case(
            "lower-case releasability code",
            with(b(), &[("/resource/releasabilityTo", json!(["FRA", "usa"]))]),
            false,
            "releasabilityTo contains \"usa\"",
        ),
        case(
            "unknown COI operator",
            with(b(), &[("/resource/coiOperator", json!("SOME"))]),
            false,
            "resource.coiOperator \"SOME\" is invalid: expected ALL or ANY",
        ),
        case(
            "lower-case COI operator",
            with(b(), &[("/resource/coiOperator", json!("any"))]),
            false,
            "resource.coiOperator \"any\" is invalid",
        ),
        case(
            "acpCOI as one comma-joined string",
            with(b(), &[("/subject/acpCOI", json!("NATO,FVEY"))]),
            false,
            "subject.acpCOI must be an array",
        ),
        case(
            "organizationType missing",
            with(b(), &[("/subject/organizationType", del())]),
            false,
            "subject.organizationType null must be GOV, MIL or INDUSTRY",
        ),
        case(
            "organizationType unknown",
            with(b(), &[("/subject/organizationType", json!("CIV"))]),
            false,
            "organizationType \"CIV\" must be",
        ),
        case(
            "creationDate not RFC 3339",
            with(b(), &[("/resource/creationDate", json!("yesterday"))]),
            false,
            "resource.creationDate \"yesterday\" is not an RFC 3339 timestamp",
        ),
        case(
            "subject not an object",
            with(b(), &[("/subject", json!("FRA"))]),
            false,
            "Not authenticated",
        ),
        case(
            "resource missing",
            with(b(), &[("/resource", del())]),
            false,
            "resource is missing or not an object",
        ),
        case(
            "clearance disagrees with national label",
            with(
                national("DEU", "GEHEIM", "SECRET"),
                &[
                    ("/subject/clearanceOriginal", json!("GEHEIM")),
                    ("/subject/clearance", json!("TOP_SECRET")),
                ],
            ),
            false,
            "does not match the national label GEHEIM",
        ),
        case(
            "originalClassification without originalCountry",
            with(
                b(),
                &[("/resource/originalClassification", json!("GEHEIM"))],
            ),
            false,
            "originalCountry",
        ),
        case(
            "invalid clearanceCountry",
            with(b(), &[("/subject/clearanceCountry", json!("Fr"))]),
            false,
            "subject.clearanceCountry \"Fr\"",
        ),
        // 3. clearance, through national tables of many nations
        case(
            "FRA confidentiel vs SECRET",
            national("FRA", "CONFIDENTIEL DÉFENSE", "SECRET"),
            false,
            "Insufficient clearance: your clearance CONFIDENTIAL is below the document's classification SECRET",
        ),
        case(
            "DEU GEHEIM reads SECRET",
            national("DEU", "GEHEIM", "SECRET"),
            true,
            GRANTED,
        ),
        case(
            "DEU VS-NfD vs CONFIDENTIAL",
            national("DEU", "VS-NfD", "CONFIDENTIAL"),
            false,
            "your clearance RESTRICTED",
        ),
        case(
            "GBR OFFICIAL-SENSITIVE reads RESTRICTED",
            national("GBR", "official sensitive", "RESTRICTED"),
            true,
            GRANTED,
        ),
        case(
            "GBR TOP SECRET (old gap)",
            national("GBR", "TOP SECRET", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "NZL TOP SECRET (old gap)",
            national("NZL", "Top Secret", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "CAN PROTECTED B reads CONFIDENTIAL",
            national("CAN", "PROTECTED B", "CONFIDENTIAL"),
            true,
            GRANTED,
        ),
        case(
            "CAN PROTECTED A is RESTRICTED (old gap)",
            national("CAN", "Protected A", "CONFIDENTIAL"),
            false,
            "your clearance RESTRICTED",
        ),
        case(
            "AUS PROTECTED reads CONFIDENTIAL (old gap)",
            national("AUS", "PROTECTED", "CONFIDENTIAL"),
            true,
            GRANTED,
        ),
        case(
            "AUS OFFICIAL is UNCLASSIFIED",
            national("AUS", "OFFICIAL", "RESTRICTED"),
            false,
            "your clearance UNCLASSIFIED",
        ),
        case(
            "ITA SEGRETISSIMO reads TOP_SECRET",
            national("ITA", "SEGRETISSIMO", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "ESP SECRETO reads SECRET",
            national("ESP", "SECRETO", "SECRET"),
            true,
            GRANTED,
        ),
        case(
            "POL label without diacritics",
            national("POL", "scisle tajne", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "NLD ZEER GEHEIM",
            national("NLD", "Zeer Geheim", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "NOR HEMMELIG vs TOP_SECRET",
            national("NOR", "HEMMELIG", "TOP_SECRET"),
            false,
            "your clearance SECRET",
        ),
        case(
            "ROU SECRET means CONFIDENTIAL",
            national("ROU", "SECRET", "SECRET"),
            false,
            "your clearance CONFIDENTIAL",
        ),
        case(
            "TUR ÇOK GİZLİ in lower case",
            national("TUR", "çok gizli", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "BEL Dutch label ZEER GEHEIM",
            national("BEL", "ZEER_GEHEIM", "TOP_SECRET"),
            true,
            GRANTED,
        ),
        case(
            "DNK NATO marking accepted",
            national("DNK", "NATO SECRET", "SECRET"),
            true,
            GRANTED,
        ),
        case(
            "resource original marking through its nation's table",
            with(
                b(),
                &[
                    ("/resource/originalClassification", json!("STRENG GEHEIM")),
                    ("/resource/originalCountry", json!("DEU")),
                    ("/resource/classification", json!("TOP_SECRET")),
                ],
            ),
            false,
            "below the document's classification TOP_SECRET",
        ),
        case(
            "resource original marking agreeing",
            with(
                b(),
                &[
                    ("/resource/originalClassification", json!("Geheim")),
                    ("/resource/originalCountry", json!("DEU")),
                ],
            ),
            true,
            GRANTED,
        ),
        // 9. authentication strength
        case(
            "SECRET needs MFA",
            with(b(), &[("/context", mfa1.clone())]),
            false,
            "Stronger authentication required: SECRET documents need AAL2 and you signed in at AAL1",
        ),
        case(
            "UNCLASSIFIED with password only",
            with(
                national("FRA", "NON CLASSIFIÉ", "UNCLASSIFIED"),
                &[("/context", mfa1.clone())],
            ),
            true,
            GRANTED,
        ),
        case(
            "acr 2 alone is MFA",
            with(
                b(),
                &[(
                    "/context",
                    json!({"acr": "2", "amr": ["pwd"], "currentTime": NOW}),
                )],
            ),
            true,
            GRANTED,
        ),
        case(
            "numeric acr",
            with(b(), &[("/context", json!({"acr": 2, "currentTime": NOW}))]),
            true,
            GRANTED,
        ),
        strict(case(
            "TOP_SECRET needs AAL3 when configured",
            national("USA", "TOP SECRET", "TOP_SECRET"),
            false,
            "need AAL3 and you signed in at AAL2",
        )),
        strict(case(
            "TOP_SECRET with hardware key",
            with(
                national("USA", "TS", "TOP_SECRET"),
                &[
                    ("/context/amr", json!(["pwd", "hwk"])),
                    ("/resource/releasabilityTo", json!(["USA", "GBR"])),
                ],
            ),
            true,
            GRANTED,
        )),
        // 8. upload
        case(
            "upload within clearance and releasable",
            with(b(), &[("/action", json!("upload"))]),
            true,
            GRANTED,
        ),
        case(
            "upload not releasable to own country",
            with(
                b(),
                &[
                    ("/action", json!({"operation": "upload"})),
                    ("/resource/releasabilityTo", json!(["USA"])),
                ],
            ),
            false,
            "Upload refused: the document must be releasable to your own country FRA",
        ),
        case(
            "upload above clearance is a clearance deny",
            with(
                b(),
                &[
                    ("/action", json!("upload")),
                    ("/resource/classification", json!("TOP_SECRET")),
                ],
            ),
            false,
            "Insufficient clearance",
        ),
        // 4. releasability
        case(
            "empty releasability",
            with(b(), &[("/resource/releasabilityTo", json!([]))]),
            false,
            "Not releasable to your country: FRA",
        ),
        case(
            "not in releasability",
            with(b(), &[("/resource/releasabilityTo", json!(["USA", "GBR"]))]),
            false,
            "FRA is not in the document's releasability list",
        ),
        // 5. COI
        case(
            "COI ALL missing one",
            with(b(), &[("/resource/COI", json!(["NATO", "FVEY"]))]),
            false,
            "requires all of [\"NATO\", \"FVEY\"]; you are missing [\"FVEY\"]",
        ),
        case(
            "COI ALL all held",
            with(
                b(),
                &[
                    ("/subject/acpCOI", json!(["NATO", "EUCOM"])),
                    ("/resource/COI", json!(["NATO", "EUCOM"])),
                ],
            ),
            true,
            GRANTED,
        ),
        case(
            "COI ANY one held",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["FVEY", "NATO"])),
                    ("/resource/coiOperator", json!("ANY")),
                ],
            ),
            true,
            GRANTED,
        ),
        case(
            "COI ANY none held",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["FVEY", "AUKUS"])),
                    ("/resource/coiOperator", json!("ANY")),
                ],
            ),
            false,
            "requires at least one of",
        ),
        case(
            "COI from own tags, not country membership",
            with(
                national("GBR", "SECRET", "SECRET"),
                &[
                    ("/subject/acpCOI", json!([])),
                    ("/resource/COI", json!(["FVEY"])),
                ],
            ),
            false,
            "you are missing [\"FVEY\"]",
        ),
        case(
            "no resource COI",
            with(
                b(),
                &[("/resource/COI", json!([])), ("/subject/acpCOI", json!([]))],
            ),
            true,
            GRANTED,
        ),
        case(
            "US-ONLY for exactly US-ONLY",
            us_only(
                json!(["US-ONLY"]),
                json!(["USA"]),
                json!(["US-ONLY"]),
                json!([]),
            ),
            true,
            GRANTED,
        ),
        case(
            "US-ONLY with extra subject tags",
            us_only(
                json!(["US-ONLY"]),
                json!(["USA"]),
                json!(["US-ONLY", "NATO"]),
                json!([]),
            ),
            false,
            "a US-ONLY document needs your COI tags to be exactly [US-ONLY]",
        ),
        // 6. embargo (5 minutes skew)
        case(
            "embargo beyond skew",
            with(
                b(),
                &[("/resource/creationDate", json!("2026-06-01T12:06:00Z"))],
            ),
            false,
            "Embargoed: the document is not available before 2026-06-01T12:06:00Z",
        ),
        case(
            "embargo within skew",
            with(
                b(),
                &[("/resource/creationDate", json!("2026-06-01T12:04:00+00:00"))],
            ),
            true,
            GRANTED,
        ),
        case(
            "no creation date",
            with(b(), &[("/resource/creationDate", del())]),
            true,
            GRANTED,
        ),
        // 7. integrity
        case(
            "integrity failure reported",
            with(b(), &[("/context/integrityVerified", json!(false))]),
            false,
            "Integrity check failed",
        ),
        case(
            "integrity verified",
            with(b(), &[("/context/integrityVerified", json!(true))]),
            true,
            GRANTED,
        ),
        // 10. industry
        case(
            "industry without releasableToIndustry",
            industry("FRA", "CONFIDENTIAL", false),
            false,
            "Industry access: the document is not releasable to industry",
        ),
        case(
            "industry within FRA cap",
            industry("FRA", "CONFIDENTIAL", true),
            true,
            GRANTED,
        ),
        case(
            "industry above FRA cap",
            industry("FRA", "SECRET", true),
            false,
            "above the industry cap CONFIDENTIAL for FRA",
        ),
        case(
            "industry USA cap SECRET",
            industry("USA", "SECRET", true),
            true,
            GRANTED,
        ),
        case(
            "industry default cap for other nations",
            industry("NOR", "SECRET", true),
            false,
            "industry cap CONFIDENTIAL for NOR",
        ),
        // 11. coherence
        case(
            "US-ONLY with FVEY",
            us_only(
                json!(["US-ONLY", "FVEY"]),
                json!(["USA"]),
                json!(["US-ONLY"]),
                json!([]),
            ),
            false,
            "Incoherent security label (US-ONLY cannot be combined with another COI (FVEY))",
        ),
        case(
            "EU-RESTRICTED with NATO-COSMIC",
            with(
                b(),
                &[
                    ("/subject/acpCOI", json!(["EU-RESTRICTED", "NATO-COSMIC"])),
                    ("/resource/COI", json!(["EU-RESTRICTED", "NATO-COSMIC"])),
                ],
            ),
            false,
            "COIs EU-RESTRICTED and NATO-COSMIC are mutually exclusive",
        ),
        case(
            "NOFORN releasable abroad",
            us_only(
                json!(["US-ONLY"]),
                json!(["USA", "GBR"]),
                json!(["US-ONLY"]),
                json!(["NOFORN"]),
            ),
            false,
            "NOFORN requires COI exactly US-ONLY and releasability exactly USA",
        ),
        case(
            "NOFORN coherent",
            us_only(
                json!(["US-ONLY"]),
                json!(["USA"]),
                json!(["US-ONLY"]),
                json!(["NOFORN"]),
            ),
            true,
            GRANTED,
        ),
        case(
            "ANY with a subset widens",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["FVEY", "AUKUS"])),
                    ("/resource/coiOperator", json!("ANY")),
                    ("/subject/acpCOI", json!(["FVEY"])),
                ],
            ),
            false,
            "under ANY, AUKUS is a subset of FVEY",
        ),
        case(
            "unknown COI tag",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["Zeta"])),
                    ("/subject/acpCOI", json!(["Zeta"])),
                ],
            ),
            false,
            "COI Zeta is not in the COI registry",
        ),
        strict(case(
            "strict: releasable country outside the COIs",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["FVEY"])),
                    ("/subject/acpCOI", json!(["FVEY"])),
                    ("/subject/countryOfAffiliation", json!("USA")),
                    ("/subject/clearance", json!("SECRET")),
                    ("/subject/issuer", json!(issuer("USA"))),
                    ("/resource/releasabilityTo", json!(["USA", "FRA"])),
                ],
            ),
            false,
            "strict mode: releasable country FRA belongs to none of the label's COIs",
        )),
        case(
            "non-strict tolerates it",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["FVEY"])),
                    ("/subject/acpCOI", json!(["FVEY"])),
                    ("/subject/countryOfAffiliation", json!("USA")),
                    ("/subject/clearance", json!("SECRET")),
                    ("/subject/issuer", json!(issuer("USA"))),
                    ("/resource/releasabilityTo", json!(["USA", "FRA"])),
                ],
            ),
            true,
            GRANTED,
        ),
        // 12. trusted issuer and federation
        case(
            "untrusted issuer",
            with(b(), &[("/subject/issuer", json!("https://evil.example"))]),
            false,
            "Untrusted token issuer \"https://evil.example\"",
        ),
        case(
            "missing issuer",
            with(b(), &[("/subject/issuer", del())]),
            false,
            "Untrusted token issuer null",
        ),
        case(
            "trusted but not federated",
            with(b(), &[("/subject/issuer", json!(issuer("JPN")))]),
            false,
            "No federation agreement: instance JPN is not federated with USA",
        ),
        case(
            "own instance issuer",
            with(national("USA", "SECRET", "SECRET"), &[]),
            true,
            GRANTED,
        ),
        // priority: the most important failing check is reported
        case(
            "priority authentication > attributes",
            with(
                b(),
                &[
                    ("/subject/authenticated", json!(false)),
                    ("/subject/countryOfAffiliation", json!("fr")),
                ],
            ),
            false,
            "Not authenticated",
        ),
        case(
            "priority attributes > clearance",
            with(
                b(),
                &[
                    ("/subject/uniqueID", del()),
                    ("/resource/classification", json!("TOP_SECRET")),
                ],
            ),
            false,
            "Invalid or missing attributes",
        ),
        case(
            "priority clearance > authentication strength",
            with(
                b(),
                &[
                    ("/resource/classification", json!("TOP_SECRET")),
                    ("/context", mfa1.clone()),
                ],
            ),
            false,
            "Insufficient clearance",
        ),
        case(
            "priority authentication strength > upload",
            with(
                b(),
                &[
                    ("/action", json!("upload")),
                    ("/resource/releasabilityTo", json!(["USA"])),
                    ("/context", mfa1.clone()),
                ],
            ),
            false,
            "Stronger authentication required",
        ),
        case(
            "priority upload > releasability",
            with(
                b(),
                &[
                    ("/action", json!("upload")),
                    ("/resource/releasabilityTo", json!(["USA"])),
                ],
            ),
            false,
            "Upload refused",
        ),
        case(
            "priority releasability > COI",
            with(
                b(),
                &[
                    ("/resource/releasabilityTo", json!(["USA"])),
                    ("/resource/COI", json!(["FVEY"])),
                ],
            ),
            false,
            "Not releasable",
        ),
        case(
            "priority COI > embargo",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["FVEY"])),
                    ("/resource/creationDate", json!("2027-01-01T00:00:00Z")),
                ],
            ),
            false,
            "Community of interest",
        ),
        case(
            "priority embargo > integrity",
            with(
                b(),
                &[
                    ("/resource/creationDate", json!("2027-01-01T00:00:00Z")),
                    ("/context/integrityVerified", json!(false)),
                ],
            ),
            false,
            "Embargoed",
        ),
        case(
            "priority integrity > industry",
            with(
                industry("FRA", "CONFIDENTIAL", false),
                &[("/context/integrityVerified", json!(false))],
            ),
            false,
            "Integrity check failed",
        ),
        case(
            "priority industry > coherence",
            with(
                industry("FRA", "CONFIDENTIAL", false),
                &[
                    ("/resource/COI", json!(["Zeta"])),
                    ("/subject/acpCOI", json!(["Zeta"])),
                ],
            ),
            false,
            "Industry access",
        ),
        case(
            "priority coherence > trusted issuer",
            with(
                b(),
                &[
                    ("/resource/COI", json!(["Zeta"])),
                    ("/subject/acpCOI", json!(["Zeta"])),
                    ("/subject/issuer", json!("https://evil.example")),
                ],
            ),
            false,
            "Incoherent security label",
        ),
        case(
            "priority trusted issuer > federation",
            with(b(), &[("/subject/issuer", json!("https://evil.example"))]),
            false,
            "Untrusted token issuer",
        ),
        // malformed documents
        case("null input", Value::Null, false, "Not authenticated"),
        case("array input", json!([1, 2]), false, "Not authenticated"),
        case("wrapped OPA body", json!({"input": base()}), true, GRANTED),
    ]
}

#[test]
fn conformance_table() {
    let cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let d = pdp(c.strict).decide(&Input::from_json(c.input.clone()));
        if d.allow != c.allow || !d.reason.contains(c.reason) {
            failures.push(format!(
                "{}: expected allow={} reason~{:?}; got allow={} reason={:?}",
                c.name, c.allow, c.reason, d.allow, d.reason
            ));
        }
        // The checks explain the decision: allow iff every boolean check passed.
        if let Some(checks) = d
            .evaluation_details
            .get("checks")
            .and_then(Value::as_object)
        {
            let all = checks.values().filter_map(Value::as_bool).all(|b| b);
            if all != d.allow {
                failures.push(format!(
                    "{}: checks {checks:?} disagree with allow={}",
                    c.name, d.allow
                ));
            }
        } else {
            failures.push(format!("{}: no evaluation_details.checks", c.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn obligations_only_for_allowed_encrypted_resources() {
    let d = pdp(false).decide(&Input::from_json(base()));
    assert!(d.allow);
    assert_eq!(d.obligations.len(), 1);
    assert_eq!(d.obligations[0]["type"], "kas_key_release");
    assert_eq!(d.obligations[0]["resourceId"], "doc-1");
    let plain = pdp(false).decide(&Input::from_json(with(
        base(),
        &[("/resource/encrypted", json!(false))],
    )));
    assert!(plain.allow && plain.obligations.is_empty());
    let denied = pdp(false).decide(&Input::from_json(with(
        base(),
        &[("/resource/releasabilityTo", json!(["USA"]))],
    )));
    assert!(!denied.allow && denied.obligations.is_empty());
}

#[test]
fn evaluation_details_echo_normalised_attributes() {
    let d = pdp(false).decide(&Input::from_json(national("DEU", "vs-nfd", "RESTRICTED")));
    let det = &d.evaluation_details;
    assert_eq!(det["subject"]["clearance"], "RESTRICTED");
    assert_eq!(det["subject"]["clearanceOriginal"], "vs-nfd");
    assert_eq!(det["subject"]["clearanceCountry"], "DEU");
    assert_eq!(det["resource"]["classification"], "RESTRICTED");
    assert_eq!(det["authentication"]["aal"], "AAL2");
    assert_eq!(det["checks"]["coherence_violations"], 0);
    let bad = pdp(false).decide(&Input::from_json(with(
        base(),
        &[("/resource/COI", json!(["US-ONLY", "FVEY", "NATO"]))],
    )));
    assert_eq!(bad.evaluation_details["checks"]["coherence_violations"], 2);
    assert!(d.policy_version.is_some());
}

#[test]
fn the_vm_decides_every_case_exactly_like_the_interpreter() {
    for strict in [false, true] {
        assert_eq!(
            pdp(strict).engine(Entrypoint::Authz),
            EngineKind::Vm,
            "{:?}",
            pdp(strict).interpreter_reason(Entrypoint::Authz)
        );
        assert_eq!(
            interpreter_pdp(strict).engine(Entrypoint::Authz),
            EngineKind::Interpreter
        );
    }
    for c in cases() {
        let input = Input::from_json(c.input.clone());
        let vm = pdp(c.strict).decide(&input);
        let interpreted = interpreter_pdp(c.strict).decide(&input);
        assert_eq!(vm.to_json(), interpreted.to_json(), "{}", c.name);
    }
}

#[test]
fn typed_and_raw_inputs_decide_alike() {
    // The raw OPA-style document and the one `Input::new` builds from typed attributes go
    // through the same normaliser.
    use dive_core::{
        Aal, Authentication, Clearance, CountryCode, Equivalency, OrganizationType,
        ResourceAttributes, SecurityLabel, SubjectAttributes,
    };
    let cc = |c: &str| CountryCode::new(c).expect("country");
    let subject = SubjectAttributes {
        unique_id: "testuser-fra-1".into(),
        clearance: Clearance::Secret,
        clearance_original: "SECRET DÉFENSE".into(),
        clearance_country: cc("FRA"),
        country_of_affiliation: cc("FRA"),
        acp_coi: vec!["NATO".into()],
        organization_type: OrganizationType::Mil,
        issuer: issuer("FRA"),
        roles: vec![],
        authentication: Authentication {
            acr: Some("2".into()),
            amr: vec!["pwd".into(), "otp".into()],
            auth_time: None,
            aal: Aal::Aal2,
        },
    };
    let label =
        SecurityLabel::from_national(Equivalency::builtin(), cc("DEU"), "GEHEIM", [cc("FRA")])
            .expect("label")
            .with_coi(dive_core::CoiOperator::All, ["NATO"]);
    let resource = ResourceAttributes::from_label("doc-9", label, true);
    let typed = pdp(false).decide(&Input::new(
        &subject,
        "read",
        &resource,
        &dive_policy::RequestContext::default(),
    ));
    assert!(typed.allow, "{}", typed.reason);
    assert_eq!(
        typed.evaluation_details["resource"]["originalCountry"],
        "DEU"
    );
    assert_eq!(typed.obligations[0]["resourceId"], "doc-9");
    let mut raw = base();
    raw["resource"]["originalClassification"] = json!("GEHEIM");
    raw["resource"]["originalCountry"] = json!("DEU");
    let d = pdp(false).decide(&Input::from_json(raw));
    assert_eq!(
        d.evaluation_details["checks"],
        typed.evaluation_details["checks"]
    );
}
