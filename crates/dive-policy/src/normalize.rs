//! The normaliser: turns a raw, OPA-style decision input (`{subject, action, resource, context}`,
//! any JSON at all) into the normalised input the Rego policy decides on.
//!
//! Everything deterministic happens here, once, in Rust, with dive-core's types: national labels
//! to DIVE levels and ranks through the issuing nation's table, country codes, COI operator,
//! RFC 3339 timestamps to Unix nanoseconds, the authentication level from acr/amr, COI registry
//! facts (tags held and missing, label coherence, country membership) and every attribute error
//! with a message naming the field. The policy then only decides: which facts access requires,
//! in which priority, with which explanation. The shape is documented in docs/policy.md
//! ("Normalised input") so that policy authors can write Rego tests against it.
//!
//! The normaliser never fails: malformed input yields errors in `facts.attributeErrors` (and
//! fail-closed values such as rank −1 for an unknown clearance), which the policy turns into a
//! deny that names the problem.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use dive_core::{Aal, Clearance, CoiOperator, CoiRegistry, CountryCode, Equivalency, US_ONLY};
use regorus::Value as RValue;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Rank of a subject whose clearance is unknown or invalid: it clears nothing.
pub const UNKNOWN_SUBJECT_RANK: i64 = -1;
/// Rank of a resource whose classification is unknown or invalid: nobody is cleared for it.
pub const UNKNOWN_RESOURCE_RANK: i64 = 5;

/// Normalises inputs against one set of equivalency tables and one COI registry (those of the
/// policy data in force, so a data reload also changes normalisation).
#[derive(Debug, Clone)]
pub struct Normalizer {
    equivalency: Equivalency,
    coi: CoiRegistry,
}

/// The normalised input, in the two forms it is used in.
#[derive(Debug, Clone)]
pub struct Normalized {
    /// The engine's form, handed to regorus.
    pub value: RValue,
}

impl Normalized {
    /// As JSON (for `dive policy eval --normalized`, tests and debugging).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(&self.value).unwrap_or(Value::Null)
    }
}

impl Normalizer {
    pub fn new(equivalency: Equivalency, coi: CoiRegistry) -> Normalizer {
        Normalizer { equivalency, coi }
    }

    /// dive-core's built-in equivalency tables and COI registry.
    pub fn builtin() -> Normalizer {
        Normalizer::new(
            Equivalency::builtin().clone(),
            CoiRegistry::builtin().clone(),
        )
    }

    /// Normalise `raw`, deciding as of now unless the input fixes `context.currentTime`.
    pub fn normalize(&self, raw: &Value) -> Normalized {
        self.normalize_at(raw, OffsetDateTime::now_utc())
    }

    /// Normalise `raw` with `now` as the clock (used when `context.currentTime` is absent).
    pub fn normalize_at(&self, raw: &Value, now: OffsetDateTime) -> Normalized {
        let mut errors = Errors::default();
        let subject = raw.get("subject").and_then(Value::as_object);
        let resource = raw.get("resource").and_then(Value::as_object);
        let context = raw.get("context").and_then(Value::as_object);
        if subject.is_none() {
            errors.push("subject is missing or not an object".into());
        }
        if resource.is_none() {
            errors.push("resource is missing or not an object".into());
        }
        let s = self.subject(subject, &mut errors);
        let r = self.resource(resource, &mut errors);
        let ctx = context_facts(context, now, &mut errors);
        let facts = self.facts(&s, &r, errors);
        let action = match raw.get("action") {
            Some(Value::String(a)) => Some(a.as_str()),
            Some(Value::Object(m)) => m.get("operation").and_then(Value::as_str),
            _ => None,
        };
        let k = keys();
        static SHAPE: OnceLock<RValue> = OnceLock::new();
        let value = object(
            &SHAPE,
            [
                (&k.k_subject, s.to_value()),
                (&k.k_action, opt_str(action)),
                (&k.k_resource, r.to_value()),
                (&k.k_context, ctx.to_value()),
                (&k.k_facts, facts),
            ],
        );
        Normalized { value }
    }

    fn subject(&self, m: Option<&Map<String, Value>>, errors: &mut Errors) -> Subject {
        let empty = Map::new();
        let present = m.is_some();
        let m = m.unwrap_or(&empty);
        let get = |k: &str| present_value(m, k);
        let unique_id = match get("uniqueID") {
            Some(Value::String(u)) if !u.trim().is_empty() => Some(u.clone()),
            _ => None,
        };
        if present && unique_id.is_none() {
            errors.push("subject.uniqueID is missing or empty".into());
        }
        let country = get("countryOfAffiliation")
            .and_then(Value::as_str)
            .and_then(|c| CountryCode::new(c).ok());
        if present && country.is_none() {
            errors.push(format!(
                "subject.countryOfAffiliation {} is not a valid ISO 3166-1 alpha-3 code (upper case, e.g. USA)",
                json_text(get("countryOfAffiliation"))
            ));
        }
        // The nation whose table defines the label: the issuing nation when given, else the
        // subject's own.
        let clearance_country = match get("clearanceCountry") {
            Some(v) => {
                let cc = v.as_str().and_then(|c| CountryCode::new(c).ok());
                if cc.is_none() {
                    errors.push(format!(
                        "subject.clearanceCountry {} is not a valid ISO 3166-1 alpha-3 code",
                        json_text(Some(v))
                    ));
                }
                cc
            }
            None => country,
        };
        // The original national label is authoritative when present; `clearance` must agree.
        let original = get("clearanceOriginal");
        let given = get("clearance");
        let label = original.or(given);
        let mut level = None;
        match (label, clearance_country) {
            (None, _) => {
                if present {
                    errors.push("subject.clearance is missing".into());
                }
            }
            (Some(l), Some(cc)) => {
                level = l
                    .as_str()
                    .and_then(|l| self.equivalency.normalize(cc, l).ok());
                if level.is_none() {
                    errors.push(format!(
                        "subject clearance {} is not a known classification label of {cc}",
                        json_text(Some(l))
                    ));
                }
            }
            // The country is invalid and already reported; the label cannot be read without it.
            (Some(_), None) => {}
        }
        if let (Some(Value::String(orig)), Some(Value::String(c)), Some(lvl)) =
            (original, given, level)
            && self.equivalency.normalize_marking(c).ok() != Some(lvl)
        {
            errors.push(format!(
                "subject clearance {c} does not match the national label {orig} ({lvl})"
            ));
        }
        let acp_coi = self.canonical_cois(string_array(
            get("acpCOI"),
            present,
            "subject.acpCOI must be an array of COI tags",
            errors,
        ));
        let organization_type = match get("organizationType").and_then(Value::as_str) {
            Some(t @ ("GOV" | "MIL" | "INDUSTRY")) => Some(t.to_string()),
            _ => None,
        };
        if present && organization_type.is_none() {
            errors.push(format!(
                "subject.organizationType {} must be GOV, MIL or INDUSTRY",
                json_text(get("organizationType"))
            ));
        }
        let roles = match get("roles") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        Subject {
            authenticated: m.get("authenticated") == Some(&Value::Bool(true)),
            unique_id,
            clearance: level,
            clearance_original: label.and_then(Value::as_str).map(str::to_string),
            clearance_country,
            country,
            acp_coi,
            organization_type,
            issuer: get("issuer").and_then(Value::as_str).map(str::to_string),
            roles,
        }
    }

    fn resource(&self, m: Option<&Map<String, Value>>, errors: &mut Errors) -> Resource {
        let empty = Map::new();
        let present = m.is_some();
        let m = m.unwrap_or(&empty);
        let get = |k: &str| present_value(m, k);
        let given = get("classification");
        let original = get("originalClassification");
        let original_country = get("originalCountry")
            .and_then(Value::as_str)
            .and_then(|c| CountryCode::new(c).ok());
        if present && given.is_none() && original.is_none() {
            errors.push("resource.classification is missing".into());
        }
        // The original national marking defines the level; `classification` must agree.
        let level = match (original, original_country) {
            (Some(Value::String(o)), Some(cc)) => self.equivalency.normalize(cc, o).ok(),
            (Some(_), _) => None,
            (None, _) => given
                .and_then(Value::as_str)
                .and_then(|c| self.equivalency.normalize_marking(c).ok()),
        };
        if let Some(label) = original.or(given)
            && level.is_none()
        {
            let of = original_country
                .map(|c| format!(" of {c}"))
                .unwrap_or_default();
            errors.push(format!(
                "resource classification {} is not a known classification label{of}",
                json_text(Some(label))
            ));
        }
        if original.is_some() && original_country.is_none() {
            errors.push(format!(
                "resource.originalCountry {} must be a valid ISO 3166-1 alpha-3 code when originalClassification is set",
                json_text(get("originalCountry"))
            ));
        }
        if let (Some(Value::String(o)), Some(Value::String(c)), Some(lvl), Some(cc)) =
            (original, given, level, original_country)
            && self.equivalency.normalize_marking(c).ok() != Some(lvl)
        {
            errors.push(format!(
                "resource classification {c} does not match its original marking {o} of {cc} ({lvl})"
            ));
        }
        let mut releasability = Vec::new();
        match get("releasabilityTo") {
            Some(Value::Array(items)) => {
                for item in items {
                    match item.as_str().and_then(|c| CountryCode::new(c).ok()) {
                        Some(c) => releasability.push(c),
                        None => errors.push(format!(
                            "resource.releasabilityTo contains {}, not a valid ISO 3166-1 alpha-3 code",
                            json_text(Some(item))
                        )),
                    }
                }
            }
            _ if present => {
                errors.push("resource.releasabilityTo must be an array of country codes".into())
            }
            _ => {}
        }
        let coi = self.canonical_cois(string_array(
            get("COI"),
            present,
            "resource.COI must be an array of COI tags",
            errors,
        ));
        let coi_operator = match get("coiOperator") {
            None => Some(CoiOperator::All.as_str().to_string()),
            Some(Value::String(op)) if op.parse::<CoiOperator>().is_ok() => Some(op.clone()),
            Some(other) => {
                errors.push(format!(
                    "resource.coiOperator {} is invalid: expected ALL or ANY",
                    json_text(Some(other))
                ));
                other.as_str().map(str::to_string)
            }
        };
        let caveats = match get("caveats") {
            Some(Value::Array(a))
                if a.iter().all(|c| c.as_str().is_some_and(|c| !c.is_empty())) =>
            {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            }
            _ => Vec::new(),
        };
        let creation_date = get("creationDate");
        let creation_time = creation_date.and_then(Value::as_str).and_then(parse_ns);
        if creation_date.is_some() && creation_time.is_none() {
            errors.push(format!(
                "resource.creationDate {} is not an RFC 3339 timestamp",
                json_text(creation_date)
            ));
        }
        Resource {
            resource_id: get("resourceId")
                .and_then(Value::as_str)
                .map(str::to_string),
            classification: level,
            original_classification: original.and_then(Value::as_str).map(str::to_string),
            original_country,
            releasability,
            coi,
            coi_operator,
            caveats,
            creation_date: creation_date.and_then(Value::as_str).map(str::to_string),
            creation_time,
            encrypted: m.get("encrypted") == Some(&Value::Bool(true)),
            releasable_to_industry: m.get("releasableToIndustry") == Some(&Value::Bool(true)),
        }
    }

    /// COI tags in the registry's spelling, so that `ALPHA` read from an attribute FQN and
    /// `Alpha` held by a subject are the same community.
    fn canonical_cois(&self, tags: Vec<String>) -> Vec<String> {
        tags.into_iter().map(|t| self.coi.canonicalize(t)).collect()
    }

    /// Facts that relate the subject, the resource and the COI registry.
    fn facts(&self, s: &Subject, r: &Resource, errors: Errors) -> RValue {
        let (held, missing): (Vec<&String>, Vec<&String>) =
            r.coi.iter().partition(|c| s.acp_coi.contains(c));
        let uncovered: Vec<RValue> = r
            .releasability
            .iter()
            .filter(|c| !r.coi.iter().any(|t| self.coi.is_member(t, **c)))
            .map(|c| RValue::from(c.as_str()))
            .collect();
        let k = keys();
        static SHAPE: OnceLock<RValue> = OnceLock::new();
        object(
            &SHAPE,
            [
                (&k.k_attribute_errors, strings(errors.into_sorted())),
                (&k.k_coi_held, strings(held)),
                (&k.k_coi_missing, strings(missing)),
                (&k.k_coherence_violations, strings(self.coherence(r))),
                (&k.k_uncovered_countries, RValue::from(uncovered)),
            ],
        )
    }

    /// Label coherence against the COI registry (sorted, each problem once). Strict mode's
    /// country coverage is a policy setting, so it is left to the policy (`uncoveredCountries`).
    fn coherence(&self, r: &Resource) -> Vec<String> {
        let has = |t: &str| r.coi.iter().any(|c| c == t);
        let mut out = Vec::new();
        if has(US_ONLY) {
            for other in r.coi.iter().filter(|t| *t != US_ONLY) {
                out.push(format!(
                    "US-ONLY cannot be combined with another COI ({other})"
                ));
            }
        }
        let file = self.coi.file();
        for [a, b] in &file.mutually_exclusive {
            // Pairs with US-ONLY are reported by the rule above.
            if a != US_ONLY && b != US_ONLY && has(a) && has(b) {
                out.push(format!("COIs {a} and {b} are mutually exclusive"));
            }
        }
        if r.caveats.iter().any(|c| c == "NOFORN") {
            let coi_ok = r.coi.len() == 1 && r.coi[0] == US_ONLY;
            let rel_ok = r.releasability.len() == 1 && r.releasability[0].as_str() == "USA";
            if !(coi_ok && rel_ok) {
                out.push(
                    "NOFORN requires COI exactly US-ONLY and releasability exactly USA".into(),
                );
            }
        }
        if r.coi_operator.as_deref() == Some(CoiOperator::Any.as_str()) {
            for [sub, sup] in &file.subsets {
                if has(sub) && has(sup) {
                    out.push(format!(
                        "under ANY, {sub} is a subset of {sup}: listing both widens access to all of {sup}"
                    ));
                }
            }
        }
        for tag in r.coi.iter().filter(|t| !self.coi.contains(t)) {
            out.push(format!("COI {tag} is not in the COI registry"));
        }
        out.sort();
        out.dedup();
        out
    }
}

struct Subject {
    authenticated: bool,
    unique_id: Option<String>,
    clearance: Option<Clearance>,
    clearance_original: Option<String>,
    clearance_country: Option<CountryCode>,
    country: Option<CountryCode>,
    acp_coi: Vec<String>,
    organization_type: Option<String>,
    issuer: Option<String>,
    roles: Vec<String>,
}

impl Subject {
    fn to_value(&self) -> RValue {
        let k = keys();
        static SHAPE: OnceLock<RValue> = OnceLock::new();
        object(
            &SHAPE,
            [
                (&k.k_authenticated, RValue::from(self.authenticated)),
                (&k.k_unique_i_d, opt_str(self.unique_id.as_deref())),
                (
                    &k.k_clearance,
                    opt_str(self.clearance.map(Clearance::as_str)),
                ),
                (
                    &k.k_rank,
                    RValue::from(
                        self.clearance
                            .map_or(UNKNOWN_SUBJECT_RANK, |c| i64::from(c.rank())),
                    ),
                ),
                (
                    &k.k_clearance_original,
                    opt_str(self.clearance_original.as_deref()),
                ),
                (
                    &k.k_clearance_country,
                    opt_str(self.clearance_country.as_ref().map(CountryCode::as_str)),
                ),
                (
                    &k.k_country_of_affiliation,
                    opt_str(self.country.as_ref().map(CountryCode::as_str)),
                ),
                (&k.k_acp_c_o_i, strings(&self.acp_coi)),
                (
                    &k.k_organization_type,
                    opt_str(self.organization_type.as_deref()),
                ),
                (&k.k_issuer, opt_str(self.issuer.as_deref())),
                (&k.k_roles, strings(&self.roles)),
            ],
        )
    }
}

struct Resource {
    resource_id: Option<String>,
    classification: Option<Clearance>,
    original_classification: Option<String>,
    original_country: Option<CountryCode>,
    releasability: Vec<CountryCode>,
    coi: Vec<String>,
    coi_operator: Option<String>,
    caveats: Vec<String>,
    creation_date: Option<String>,
    creation_time: Option<i64>,
    encrypted: bool,
    releasable_to_industry: bool,
}

impl Resource {
    fn to_value(&self) -> RValue {
        let k = keys();
        let rel: Vec<RValue> = self
            .releasability
            .iter()
            .map(|c| RValue::from(c.as_str()))
            .collect();
        static SHAPE: OnceLock<RValue> = OnceLock::new();
        object(
            &SHAPE,
            [
                (&k.k_resource_id, opt_str(self.resource_id.as_deref())),
                (
                    &k.k_classification,
                    opt_str(self.classification.map(Clearance::as_str)),
                ),
                (
                    &k.k_rank,
                    RValue::from(
                        self.classification
                            .map_or(UNKNOWN_RESOURCE_RANK, |c| i64::from(c.rank())),
                    ),
                ),
                (
                    &k.k_original_classification,
                    opt_str(self.original_classification.as_deref()),
                ),
                (
                    &k.k_original_country,
                    opt_str(self.original_country.as_ref().map(CountryCode::as_str)),
                ),
                (&k.k_releasability_to, RValue::from(rel)),
                (&k.k_c_o_i, strings(&self.coi)),
                (&k.k_coi_operator, opt_str(self.coi_operator.as_deref())),
                (&k.k_caveats, strings(&self.caveats)),
                (&k.k_creation_date, opt_str(self.creation_date.as_deref())),
                (
                    &k.k_creation_time,
                    self.creation_time.map_or(RValue::Null, RValue::from),
                ),
                (&k.k_encrypted, RValue::from(self.encrypted)),
                (
                    &k.k_releasable_to_industry,
                    RValue::from(self.releasable_to_industry),
                ),
            ],
        )
    }
}

struct Context {
    aal: Aal,
    now: i64,
    integrity_verified: Option<bool>,
}

impl Context {
    fn to_value(&self) -> RValue {
        let k = keys();
        static SHAPE: OnceLock<RValue> = OnceLock::new();
        object(
            &SHAPE,
            [
                (&k.k_aal, RValue::from(i64::from(self.aal.level()))),
                (&k.k_now, RValue::from(self.now)),
                (
                    &k.k_integrity_verified,
                    self.integrity_verified.map_or(RValue::Null, RValue::from),
                ),
            ],
        )
    }
}

fn context_facts(
    m: Option<&Map<String, Value>>,
    now: OffsetDateTime,
    errors: &mut Errors,
) -> Context {
    let empty = Map::new();
    let m = m.unwrap_or(&empty);
    let get = |k: &str| present_value(m, k);
    // acr may arrive as a number; anything else cannot name a level.
    let acr = match get("acr") {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let amr: Vec<String> = match get("amr") {
        Some(Value::Array(a)) if a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let clock = nanos(now);
    let now = match get("currentTime") {
        None => clock,
        Some(t) => match t.as_str().and_then(parse_ns) {
            Some(ns) => ns,
            None => {
                errors.push(format!(
                    "context.currentTime {} is not an RFC 3339 timestamp",
                    json_text(Some(t))
                ));
                clock
            }
        },
    };
    Context {
        aal: Aal::derive(acr.as_deref(), &amr),
        now,
        // A report that is not `true` is a failed verification (fail closed).
        integrity_verified: get("integrityVerified").map(|v| v == &Value::Bool(true)),
    }
}

/// Attribute errors, each once, sorted (the deny reason lists them in this order).
#[derive(Default)]
struct Errors(Vec<String>);

impl Errors {
    fn push(&mut self, e: String) {
        self.0.push(e);
    }

    fn into_sorted(mut self) -> Vec<String> {
        self.0.sort();
        self.0.dedup();
        self.0
    }
}

/// A field's value unless absent or null (null means "not given" for every attribute).
fn present_value<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    m.get(k).filter(|v| !v.is_null())
}

/// An optional array of non-empty strings: absent is empty, anything else is an error.
fn string_array(
    v: Option<&Value>,
    report: bool,
    message: &str,
    errors: &mut Errors,
) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(|x| x.as_str().is_some_and(|s| !s.is_empty())) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(_) => {
            if report {
                errors.push(message.to_string());
            }
            Vec::new()
        }
    }
}

/// A value as it appears in a message: JSON text, `null` when absent.
fn json_text(v: Option<&Value>) -> String {
    v.map_or_else(|| "null".to_string(), Value::to_string)
}

fn parse_ns(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(nanos)
}

fn nanos(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

fn opt_str(s: Option<&str>) -> RValue {
    s.map_or(RValue::Null, RValue::from)
}

fn strings<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> RValue {
    RValue::from(
        items
            .into_iter()
            .map(|s| RValue::from(s.as_ref()))
            .collect::<Vec<_>>(),
    )
}

/// An engine object with these fields. `shape` (one per call site, whose keys never change) holds
/// an object with the same keys and null values, built on first use: a decision clones it (one
/// compact sorted array) and sets each value in place, where building a sorted map per object
/// and converting it to that array cost several allocations per field.
fn object<const N: usize>(shape: &OnceLock<RValue>, fields: [(&RValue, RValue); N]) -> RValue {
    let template = shape.get_or_init(|| {
        RValue::from(
            fields
                .iter()
                .map(|(k, _)| ((*k).clone(), RValue::Null))
                .collect::<BTreeMap<_, _>>(),
        )
    });
    let mut value = template.clone();
    if let Ok(o) = value.as_object_mut() {
        // The template's values are null already: an absent attribute costs no key search.
        for (k, v) in fields
            .into_iter()
            .filter(|(_, v)| !matches!(v, RValue::Null))
        {
            match o.get_mut(k) {
                Some(slot) => *slot = v,
                None => {
                    o.insert(k.clone(), v);
                }
            }
        }
    }
    value
}

macro_rules! keys {
    ($($field:ident = $name:literal),* $(,)?) => {
        /// The field names of the normalised input, as engine strings built once (a decision
        /// then clones a reference instead of allocating each name).
        struct Keys { $($field: RValue),* }

        fn keys() -> &'static Keys {
            static KEYS: OnceLock<Keys> = OnceLock::new();
            KEYS.get_or_init(|| Keys { $($field: RValue::from($name)),* })
        }
    };
}

keys! {
    k_c_o_i = "COI",
    k_aal = "aal",
    k_acp_c_o_i = "acpCOI",
    k_action = "action",
    k_attribute_errors = "attributeErrors",
    k_authenticated = "authenticated",
    k_caveats = "caveats",
    k_classification = "classification",
    k_clearance = "clearance",
    k_clearance_country = "clearanceCountry",
    k_clearance_original = "clearanceOriginal",
    k_coherence_violations = "coherenceViolations",
    k_coi_held = "coiHeld",
    k_coi_missing = "coiMissing",
    k_coi_operator = "coiOperator",
    k_context = "context",
    k_country_of_affiliation = "countryOfAffiliation",
    k_creation_date = "creationDate",
    k_creation_time = "creationTime",
    k_encrypted = "encrypted",
    k_facts = "facts",
    k_integrity_verified = "integrityVerified",
    k_issuer = "issuer",
    k_now = "now",
    k_organization_type = "organizationType",
    k_original_classification = "originalClassification",
    k_original_country = "originalCountry",
    k_rank = "rank",
    k_releasability_to = "releasabilityTo",
    k_releasable_to_industry = "releasableToIndustry",
    k_resource = "resource",
    k_resource_id = "resourceId",
    k_roles = "roles",
    k_subject = "subject",
    k_uncovered_countries = "uncoveredCountries",
    k_unique_i_d = "uniqueID",
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: &str = "2026-06-01T12:00:00Z";

    fn raw() -> Value {
        json!({
            "subject": {
                "authenticated": true, "uniqueID": "hans.muller@bund.de", "clearance": "Geheim",
                "countryOfAffiliation": "DEU", "acpCOI": ["NATO"], "organizationType": "MIL",
                "issuer": "https://idp.deu", "roles": ["dive-user"],
            },
            "action": {"operation": "read"},
            "resource": {
                "resourceId": "doc-1", "classification": "SECRET", "releasabilityTo": ["DEU", "USA"],
                "COI": ["NATO", "FVEY"], "coiOperator": "ANY", "creationDate": "2026-01-01T00:00:00Z",
                "encrypted": true,
            },
            "context": {"acr": "1", "amr": ["pwd", "otp"], "currentTime": NOW},
        })
    }

    fn norm(v: &Value) -> Value {
        Normalizer::builtin().normalize(v).to_json()
    }

    fn patched(changes: &[(&str, Value)]) -> Value {
        let mut v = raw();
        for (ptr, val) in changes {
            let (parent, key) = ptr.rsplit_once('/').expect("pointer");
            if let Some(Value::Object(m)) = v.pointer_mut(parent) {
                if val.is_null() {
                    m.remove(key);
                } else {
                    m.insert(key.to_string(), val.clone());
                }
            }
        }
        v
    }

    fn errors(v: &Value) -> Vec<String> {
        serde_json::from_value(norm(v)["facts"]["attributeErrors"].clone()).unwrap_or_default()
    }

    #[test]
    fn national_labels_become_levels_and_ranks_through_the_issuing_nation() {
        let n = norm(&raw());
        assert_eq!(n["subject"]["clearance"], "SECRET");
        assert_eq!(n["subject"]["rank"], 3);
        assert_eq!(n["subject"]["clearanceOriginal"], "Geheim");
        assert_eq!(n["subject"]["clearanceCountry"], "DEU");
        assert_eq!(n["resource"]["rank"], 3);
        assert_eq!(n["action"], "read");
        assert_eq!(n["facts"]["attributeErrors"], json!([]));
        // Romania's SECRET is CONFIDENTIAL; the issuing nation's table wins over the subject's.
        let rou = norm(&patched(&[
            ("/subject/clearance", json!("SECRET")),
            ("/subject/clearanceCountry", json!("ROU")),
        ]));
        assert_eq!(rou["subject"]["clearance"], "CONFIDENTIAL");
        assert_eq!(rou["subject"]["clearanceCountry"], "ROU");
    }

    #[test]
    fn an_unknown_national_label_is_an_error_never_a_guess() {
        let v = patched(&[("/subject/clearance", json!("STRENG SUPER GEHEIM"))]);
        let n = norm(&v);
        assert_eq!(n["subject"]["clearance"], Value::Null);
        assert_eq!(n["subject"]["rank"], UNKNOWN_SUBJECT_RANK);
        assert_eq!(
            errors(&v),
            [
                "subject clearance \"STRENG SUPER GEHEIM\" is not a known classification label of DEU"
            ]
        );
        let r = patched(&[("/resource/classification", json!("SEKRIT"))]);
        assert_eq!(norm(&r)["resource"]["rank"], UNKNOWN_RESOURCE_RANK);
        assert_eq!(
            errors(&r),
            ["resource classification \"SEKRIT\" is not a known classification label"]
        );
    }

    #[test]
    fn the_original_marking_is_authoritative_and_must_agree() {
        let v = patched(&[
            ("/subject/clearanceOriginal", json!("GEHEIM")),
            ("/subject/clearance", json!("TOP_SECRET")),
        ]);
        assert_eq!(
            errors(&v),
            ["subject clearance TOP_SECRET does not match the national label GEHEIM (SECRET)"]
        );
        let r = patched(&[
            ("/resource/originalClassification", json!("Streng Geheim")),
            ("/resource/originalCountry", json!("DEU")),
            ("/resource/classification", json!("TOP_SECRET")),
        ]);
        let n = norm(&r);
        assert_eq!(n["resource"]["classification"], "TOP_SECRET");
        assert_eq!(n["resource"]["originalCountry"], "DEU");
        assert!(errors(&r).is_empty(), "{:?}", errors(&r));
        let missing_country = patched(&[("/resource/originalClassification", json!("GEHEIM"))]);
        assert!(
            errors(&missing_country)
                .iter()
                .any(|e| e.starts_with("resource.originalCountry null must be a valid"))
        );
    }

    #[test]
    fn every_malformed_field_is_named() {
        let v = patched(&[
            ("/subject/uniqueID", json!("  ")),
            ("/subject/countryOfAffiliation", json!("deu")),
            ("/subject/acpCOI", json!("NATO,FVEY")),
            ("/subject/organizationType", json!(3)),
            ("/resource/releasabilityTo", json!(["DEU", "uk"])),
            ("/resource/coiOperator", json!("any")),
            ("/resource/creationDate", json!("yesterday")),
            ("/context/currentTime", json!(17)),
        ]);
        assert_eq!(
            errors(&v),
            [
                "context.currentTime 17 is not an RFC 3339 timestamp",
                "resource.coiOperator \"any\" is invalid: expected ALL or ANY",
                "resource.creationDate \"yesterday\" is not an RFC 3339 timestamp",
                "resource.releasabilityTo contains \"uk\", not a valid ISO 3166-1 alpha-3 code",
                "subject.acpCOI must be an array of COI tags",
                "subject.countryOfAffiliation \"deu\" is not a valid ISO 3166-1 alpha-3 code (upper case, e.g. USA)",
                "subject.organizationType 3 must be GOV, MIL or INDUSTRY",
                "subject.uniqueID is missing or empty",
            ]
        );
        let n = norm(&v);
        assert_eq!(n["resource"]["releasabilityTo"], json!(["DEU"]));
        assert_eq!(n["subject"]["countryOfAffiliation"], Value::Null);
    }

    #[test]
    fn any_json_normalises_without_panicking() {
        for v in [
            json!(null),
            json!(42),
            json!("subject"),
            json!([{"subject": {}}]),
            json!({"subject": [], "resource": "x", "context": [], "action": {"operation": 3}}),
            json!({"subject": {"clearance": {"a": 1}, "clearanceCountry": [1]}, "resource": {"classification": 4, "COI": [null], "releasabilityTo": [[]]}}),
        ] {
            let n = norm(&v);
            assert_eq!(n["subject"]["authenticated"], false);
            assert!(n["facts"]["attributeErrors"].as_array().is_some());
        }
        assert_eq!(
            errors(&json!({})),
            [
                "resource is missing or not an object",
                "subject is missing or not an object"
            ]
        );
    }

    #[test]
    fn aal_times_and_integrity() {
        let n = norm(&raw());
        // Two methods make AAL2 even with acr 1.
        assert_eq!(n["context"]["aal"], 2);
        assert_eq!(n["context"]["now"], 1_780_315_200_000_000_000_i64);
        assert_eq!(n["resource"]["creationTime"], 1_767_225_600_000_000_000_i64);
        assert_eq!(n["context"]["integrityVerified"], Value::Null);
        let hwk = norm(&patched(&[("/context/amr", json!(["pwd", "hwk"]))]));
        assert_eq!(hwk["context"]["aal"], 3);
        let numeric = norm(&patched(&[
            ("/context/acr", json!(2)),
            ("/context/amr", json!([])),
        ]));
        assert_eq!(numeric["context"]["aal"], 2);
        // A report that is not `true` counts as a failed verification.
        let odd = norm(&patched(&[("/context/integrityVerified", json!("yes"))]));
        assert_eq!(odd["context"]["integrityVerified"], false);
        // Without a fixed time the clock decides.
        let now = norm(&patched(&[("/context/currentTime", Value::Null)]));
        assert!(now["context"]["now"].as_i64().unwrap_or(0) > 1_780_315_200_000_000_000);
    }

    #[test]
    fn coi_registry_facts() {
        let n = norm(&raw());
        assert_eq!(n["facts"]["coiHeld"], json!(["NATO"]));
        assert_eq!(n["facts"]["coiMissing"], json!(["FVEY"]));
        // DEU is not a FVEY member, but it is a NATO member: every country is covered.
        assert_eq!(n["facts"]["uncoveredCountries"], json!([]));
        let v = patched(&[
            ("/resource/COI", json!(["US-ONLY", "FVEY", "AUKUS", "Zeta"])),
            ("/resource/caveats", json!(["NOFORN"])),
        ]);
        let n = norm(&v);
        assert_eq!(
            n["facts"]["coherenceViolations"],
            json!([
                "COI Zeta is not in the COI registry",
                "NOFORN requires COI exactly US-ONLY and releasability exactly USA",
                "US-ONLY cannot be combined with another COI (AUKUS)",
                "US-ONLY cannot be combined with another COI (FVEY)",
                "US-ONLY cannot be combined with another COI (Zeta)",
                "under ANY, AUKUS is a subset of FVEY: listing both widens access to all of FVEY",
            ])
        );
        assert_eq!(n["facts"]["uncoveredCountries"], json!(["DEU"]));
        let exclusive = norm(&patched(&[(
            "/resource/COI",
            json!(["EU-RESTRICTED", "NATO-COSMIC"]),
        )]));
        assert_eq!(
            exclusive["facts"]["coherenceViolations"],
            json!(["COIs EU-RESTRICTED and NATO-COSMIC are mutually exclusive"])
        );
    }

    #[test]
    fn replacement_tables_change_normalisation() {
        let eq = Equivalency::from_json(
            r#"{"version":"t","tables":{"NATO":{},"DEU":{"TOP_SECRET":["GEHEIM"]}}}"#,
        )
        .expect("valid tables");
        let n = Normalizer::new(eq, CoiRegistry::builtin().clone()).normalize(&raw());
        assert_eq!(n.to_json()["subject"]["clearance"], "TOP_SECRET");
    }
}
