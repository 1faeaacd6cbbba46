//! Listing and search over the catalog: filters, facet counts and cursor pagination, all over the
//! documents the caller may access (see `access`).
//!
//! Facets are disjunctive: the count for a value of one facet applies every filter except that
//! facet's own, so that selecting `classification=SECRET` still shows how many accessible
//! TOP_SECRET documents match the rest of the query.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dive_core::{Clearance, CountryCode};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::access::{View, accessible};
use crate::catalog::{Catalog, Entry, Sort, SortKey, compare};
use crate::store::{ResourceMeta, to_ms};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// A bad query parameter: which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query parameter {param}: {why}")]
pub struct QueryError {
    pub param: String,
    pub why: String,
}

fn qerr(param: &str, why: impl Into<String>) -> QueryError {
    QueryError {
        param: param.to_string(),
        why: why.into(),
    }
}

/// A parsed search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// Lower-cased terms; every one must occur in the title, description, file name or id.
    pub terms: Vec<String>,
    pub classifications: Vec<Clearance>,
    /// Releasable to any of these.
    pub countries: Vec<CountryCode>,
    /// Carries any of these COI tags.
    pub cois: Vec<String>,
    /// MIME types.
    pub types: Vec<String>,
    /// Created at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Created before (Unix ms).
    pub to_ms: Option<i64>,
    pub sort: Sort,
    pub limit: usize,
    pub after: Option<SortKey>,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            terms: Vec::new(),
            classifications: Vec::new(),
            countries: Vec::new(),
            cois: Vec::new(),
            types: Vec::new(),
            from_ms: None,
            to_ms: None,
            sort: Sort::Newest,
            limit: DEFAULT_LIMIT,
            after: None,
        }
    }
}

/// The query parameters the search understands.
pub const PARAMS: &[&str] = &[
    "q",
    "classification",
    "country",
    "coi",
    "type",
    "from",
    "to",
    "sort",
    "limit",
    "cursor",
];

#[derive(Serialize, serde::Deserialize)]
struct CursorData {
    s: String,
    #[serde(flatten)]
    k: SortKey,
}

/// Encode the position after `key` in `sort` order as an opaque cursor.
pub fn encode_cursor(sort: Sort, key: SortKey) -> String {
    let data = CursorData {
        s: sort.as_str().to_string(),
        k: key,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&data).unwrap_or_default())
}

fn decode_cursor(text: &str, sort: Sort) -> Result<SortKey, QueryError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|_| qerr("cursor", "not a cursor returned by this service"))?;
    let data: CursorData = serde_json::from_slice(&bytes)
        .map_err(|_| qerr("cursor", "not a cursor returned by this service"))?;
    if data.s != sort.as_str() {
        return Err(qerr(
            "cursor",
            format!(
                "the cursor belongs to sort={}, not sort={}",
                data.s,
                sort.as_str()
            ),
        ));
    }
    Ok(data.k)
}

/// A date or date-time: `2026-03-01` (midnight UTC) or RFC 3339.
fn parse_time(param: &str, v: &str) -> Result<i64, QueryError> {
    if let Ok(t) = OffsetDateTime::parse(v, &Rfc3339) {
        return Ok(to_ms(t));
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(v, &fmt)
        .map(|d| to_ms(d.midnight().assume_utc()))
        .map_err(|_| {
            qerr(
                param,
                format!("{v:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 time"),
            )
        })
}

/// Values of a repeatable parameter: `a=x&a=y` and `a=x,y` both give `[x, y]`.
fn split_values(v: &str) -> impl Iterator<Item = &str> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty())
}

impl SearchQuery {
    /// Parse a URL query string. Unknown parameters and bad values are errors naming them.
    pub fn parse(query: &str) -> Result<SearchQuery, QueryError> {
        let mut q = SearchQuery::default();
        let mut cursor: Option<String> = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "q" => q.terms.extend(v.split_whitespace().map(str::to_lowercase)),
                "classification" => {
                    for c in split_values(&v) {
                        let level = Clearance::from_str(c).map_err(|_| {
                            qerr(
                                "classification",
                                format!("{c:?} is not a level (UNCLASSIFIED, RESTRICTED, CONFIDENTIAL, SECRET, TOP_SECRET)"),
                            )
                        })?;
                        if !q.classifications.contains(&level) {
                            q.classifications.push(level);
                        }
                    }
                }
                "country" => {
                    for c in split_values(&v) {
                        let code =
                            CountryCode::new(c).map_err(|e| qerr("country", e.to_string()))?;
                        if !q.countries.contains(&code) {
                            q.countries.push(code);
                        }
                    }
                }
                "coi" => q.cois.extend(split_values(&v).map(str::to_string)),
                "type" => q
                    .types
                    .extend(split_values(&v).map(str::to_ascii_lowercase)),
                "from" => q.from_ms = Some(parse_time("from", &v)?),
                "to" => q.to_ms = Some(parse_time("to", &v)?),
                "sort" => {
                    q.sort = Sort::parse(&v)
                        .ok_or_else(|| qerr("sort", "expected newest, oldest or title"))?
                }
                "limit" => {
                    q.limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            qerr("limit", format!("expected a number from 1 to {MAX_LIMIT}"))
                        })?
                }
                "cursor" => cursor = Some(v.into_owned()),
                other => {
                    return Err(qerr(
                        other,
                        format!("unknown parameter; expected one of {}", PARAMS.join(", ")),
                    ));
                }
            }
        }
        if let (Some(f), Some(t)) = (q.from_ms, q.to_ms)
            && f > t
        {
            return Err(qerr("from", "is after to"));
        }
        if let Some(c) = cursor {
            q.after = Some(decode_cursor(&c, q.sort)?);
        }
        Ok(q)
    }

    fn text_matches(&self, e: &Entry) -> bool {
        self.terms.iter().all(|t| e.text.contains(t.as_str()))
    }

    fn date_matches(&self, e: &Entry) -> bool {
        self.from_ms.is_none_or(|f| e.created_ms >= f)
            && self.to_ms.is_none_or(|t| e.created_ms < t)
    }
}

/// Facet counts over the accessible documents (disjunctive: see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facets {
    pub classification: BTreeMap<String, usize>,
    pub country: BTreeMap<String, usize>,
    /// Documents without a COI count under `(none)`.
    pub coi: BTreeMap<String, usize>,
    pub file_type: BTreeMap<String, usize>,
}

pub const NO_COI: &str = "(none)";

/// One page of a search.
#[derive(Debug, Clone)]
pub struct SearchPage {
    pub items: Vec<Arc<ResourceMeta>>,
    /// Accessible documents matching every filter (all pages).
    pub total: usize,
    pub facets: Facets,
    /// More items follow: the cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Run `query` over `catalog` as seen through `view`, at `now_ms`.
pub fn search(
    catalog: &Catalog,
    view: &View,
    query: &SearchQuery,
    now_ms: i64,
    skew_ms: i64,
) -> SearchPage {
    let mut tally = FacetTally::default();
    let mut total = 0;
    let mut items: Vec<Arc<ResourceMeta>> = Vec::with_capacity(query.limit + 1);
    let mut more = false;
    for e in catalog.iter_sorted(query.sort) {
        if !accessible(view, catalog, e, now_ms, skew_ms) {
            continue;
        }
        if !query.date_matches(e) || !query.text_matches(e) {
            continue;
        }
        let l = &e.meta.label;
        let m_class =
            query.classifications.is_empty() || query.classifications.contains(&l.classification);
        let m_country = query.countries.is_empty()
            || l.releasability_to
                .iter()
                .any(|c| query.countries.contains(c));
        let m_coi = query.cois.is_empty() || l.coi.iter().any(|c| query.cois.contains(c));
        let m_type = query.types.is_empty()
            || query
                .types
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&e.meta.mime_type));
        if m_country && m_coi && m_type {
            tally.classification(l.classification.as_str());
        }
        if m_class && m_coi && m_type {
            tally.countries(&l.releasability_to);
        }
        if m_class && m_country && m_type {
            tally.cois(&l.coi);
        }
        if m_class && m_country && m_coi {
            tally.file_type(&e.meta.mime_type);
        }
        if !(m_class && m_country && m_coi && m_type) {
            continue;
        }
        total += 1;
        let after_cursor = match &query.after {
            None => true,
            Some(k) => {
                compare(
                    query.sort,
                    (e.created_ms, &e.title_lc, &e.meta.id),
                    (k.created_ms, &k.title_lc, &k.id),
                ) == std::cmp::Ordering::Greater
            }
        };
        if after_cursor {
            if items.len() < query.limit {
                items.push(e.meta.clone());
            } else {
                more = true;
            }
        }
    }
    let next_cursor = if more {
        items
            .last()
            .and_then(|m| catalog.get(&m.id))
            .map(|e| encode_cursor(query.sort, SortKey::of(e)))
    } else {
        None
    };
    SearchPage {
        items,
        total,
        facets: tally.into_facets(),
        next_cursor,
    }
}

fn owned(counts: HashMap<&str, usize>) -> BTreeMap<String, usize> {
    counts
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect()
}

/// Facet counts while scanning, keyed by values borrowed from the catalog: a NATO document is
/// releasable to some thirty countries, so keying by owned strings allocated one per country per
/// document (≈ 100,000 allocations for a TOP SECRET user's search). Converted once at the end.
#[derive(Default)]
struct FacetTally<'a> {
    classification: HashMap<&'static str, usize>,
    country: HashMap<CountryCode, usize>,
    coi: HashMap<&'a str, usize>,
    /// By the stored MIME type; case variants merge in [`FacetTally::into_facets`].
    file_type: HashMap<&'a str, usize>,
}

impl<'a> FacetTally<'a> {
    fn classification(&mut self, c: &'static str) {
        *self.classification.entry(c).or_default() += 1;
    }

    fn countries(&mut self, to: &[CountryCode]) {
        for c in to {
            *self.country.entry(*c).or_default() += 1;
        }
    }

    fn cois(&mut self, cois: &'a [String]) {
        if cois.is_empty() {
            *self.coi.entry(NO_COI).or_default() += 1;
        }
        for c in cois {
            *self.coi.entry(c.as_str()).or_default() += 1;
        }
    }

    fn file_type(&mut self, mime: &'a str) {
        *self.file_type.entry(mime).or_default() += 1;
    }

    fn into_facets(self) -> Facets {
        let mut file_type = BTreeMap::new();
        for (t, n) in self.file_type {
            *file_type.entry(t.to_ascii_lowercase()).or_default() += n;
        }
        Facets {
            classification: owned(self.classification),
            country: self
                .country
                .into_iter()
                .map(|(c, n)| (c.as_str().to_string(), n))
                .collect(),
            coi: owned(self.coi),
            file_type,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repeated_and_comma_separated_values() {
        let q = SearchQuery::parse(
            "q=Fuel+Report&classification=SECRET,TOP_SECRET&classification=SECRET&country=FRA&coi=NATO&type=text/csv&from=2026-01-01&to=2026-02-01T00:00:00Z&sort=title&limit=5",
        )
        .unwrap();
        assert_eq!(q.terms, vec!["fuel", "report"]);
        assert_eq!(
            q.classifications,
            vec![Clearance::Secret, Clearance::TopSecret]
        );
        assert_eq!(q.countries[0].as_str(), "FRA");
        assert_eq!(q.cois, vec!["NATO"]);
        assert_eq!(q.types, vec!["text/csv"]);
        assert_eq!(q.sort, Sort::Title);
        assert_eq!(q.limit, 5);
        assert_eq!(q.to_ms.unwrap() - q.from_ms.unwrap(), 31 * 86_400_000);
    }

    #[test]
    fn bad_parameters_are_named() {
        let e = |s: &str| SearchQuery::parse(s).unwrap_err();
        assert_eq!(e("colour=red").param, "colour");
        assert_eq!(e("classification=SEKRIT").param, "classification");
        assert_eq!(e("country=usa").param, "country");
        assert_eq!(e("limit=0").param, "limit");
        assert_eq!(e("limit=1000").param, "limit");
        assert_eq!(e("from=yesterday").param, "from");
        assert_eq!(e("from=2026-02-01&to=2026-01-01").param, "from");
        assert_eq!(e("cursor=!!!").param, "cursor");
        let c = encode_cursor(
            Sort::Newest,
            SortKey {
                created_ms: 1,
                title_lc: "a".into(),
                id: "x".into(),
            },
        );
        assert!(SearchQuery::parse(&format!("cursor={c}")).is_ok());
        assert!(
            e(&format!("sort=title&cursor={c}"))
                .why
                .contains("sort=newest")
        );
    }
}
