//! Documents: search (local or federated) with filters, facets and pages.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use dive_core::{Clearance, CountryCode};
use serde::Deserialize;
use serde_json::Value;

use super::*;

#[derive(Deserialize, Default)]
pub(super) struct DocQuery {
    q: Option<String>,
    classification: Option<String>,
    country: Option<String>,
    coi: Option<String>,
    #[serde(rename = "type")]
    file_type: Option<String>,
    from: Option<String>,
    to: Option<String>,
    scope: Option<String>,
    cursor: Option<String>,
    per_page: Option<String>,
}

pub(super) fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl DocQuery {
    fn filters(&self) -> Result<Filters, String> {
        let classification = match nonempty(&self.classification) {
            None => None,
            Some(c) => Some(
                serde_json::from_value::<Clearance>(Value::String(c.clone()))
                    .map_err(|_| format!("classification {c:?} is not a known level"))?,
            ),
        };
        let country = match nonempty(&self.country) {
            None => None,
            Some(c) => Some(
                CountryCode::new(&c.to_ascii_uppercase())
                    .map_err(|e| format!("country {c:?}: {e}"))?,
            ),
        };
        let per_page = match nonempty(&self.per_page) {
            None => 0,
            Some(n) => n
                .parse()
                .ok()
                .filter(|n| crate::api::PAGE_SIZES.contains(n))
                .ok_or_else(|| {
                    format!(
                        "per_page {n:?}: choose one of {}",
                        crate::api::PAGE_SIZES.map(|n| n.to_string()).join(", ")
                    )
                })?,
        };
        Ok(Filters {
            q: nonempty(&self.q),
            classification,
            country,
            coi: nonempty(&self.coi),
            file_type: nonempty(&self.file_type),
            from: nonempty(&self.from),
            to: nonempty(&self.to),
            cursor: nonempty(&self.cursor),
            per_page,
        })
    }

    fn federated(&self) -> bool {
        self.scope.as_deref() == Some("federated")
    }

    /// The link for these filters with one changed (`None` removes it); a cursor only when
    /// `key` is `cursor`.
    fn href_with(&self, key: &str, value: Option<&str>) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        let mut push = |k: &'static str, v: &Option<String>| {
            let v = if k == key {
                value.map(str::to_string)
            } else {
                nonempty(v)
            };
            if let Some(v) = v {
                pairs.push((k, v));
            }
        };
        push("q", &self.q);
        push("classification", &self.classification);
        push("country", &self.country);
        push("coi", &self.coi);
        push("type", &self.file_type);
        push("from", &self.from);
        push("to", &self.to);
        push("scope", &self.scope);
        push("per_page", &self.per_page);
        push("cursor", &None);
        format!("/documents?{}", query_string(&pairs))
    }
}

fn options(
    values: impl IntoIterator<Item = (String, String)>,
    selected: &Option<String>,
) -> Vec<SelectOption> {
    let sel = nonempty(selected);
    let mut out: Vec<SelectOption> = values
        .into_iter()
        .map(|(value, text)| SelectOption {
            selected: sel.as_deref() == Some(value.as_str()),
            value,
            text,
        })
        .collect();
    // A selected value the facets no longer list stays selectable.
    if let Some(v) = sel
        && !out.iter().any(|o| o.value == v)
    {
        out.push(SelectOption {
            value: v.clone(),
            text: v,
            selected: true,
        });
    }
    out
}

pub(super) fn doc_href(id: &str, instance: Option<&str>, own: CountryCode) -> String {
    let base = format!("/documents/{}", crate::api::path_segment(id));
    match instance {
        Some(i) if i != own.as_str() => {
            format!("{base}?{}", query_string(&[("instance", i.to_string())]))
        }
        _ => base,
    }
}

fn results(s: &AppState, q: &DocQuery, page: Page, federated: bool, page_size: u32) -> Results {
    let own = s.settings.instance;
    let facet =
        |title: &'static str, key: &str, m: &std::collections::BTreeMap<String, u64>| FacetGroup {
            title,
            entries: m
                .iter()
                .filter(|(k, _)| key != "coi" || k.as_str() != "(none)")
                .map(|(k, c)| FacetEntry {
                    text: match key {
                        "classification" => {
                            serde_json::from_value::<Clearance>(Value::String(k.clone()))
                                .map(|c| c.marking().to_string())
                                .unwrap_or_else(|_| k.clone())
                        }
                        _ => k.clone(),
                    },
                    count: *c,
                    href: q.href_with(key, Some(k)),
                })
                .collect(),
        };
    let facets = vec![
        facet(
            "Classification",
            "classification",
            &page.facets.classification,
        ),
        facet("Releasable to", "country", &page.facets.country),
        facet("Community of interest", "coi", &page.facets.coi),
        facet("File type", "type", &page.facets.file_type),
    ];
    let items = page
        .items
        .iter()
        .map(|d| DocRow {
            title: d.title.clone(),
            href: doc_href(&d.id, d.instance.as_deref(), own),
            marking: d.marking.clone(),
            classification: d.label.classification.as_str().to_string(),
            mime_type: d.mime_type.clone(),
            created: d.created_at.chars().take(10).collect(),
            instance: d.instance.clone().unwrap_or_else(|| own.to_string()),
        })
        .collect();
    let next_href = (!federated)
        .then_some(page.next_cursor.as_ref())
        .flatten()
        .map(|c| q.href_with("cursor", Some(c)));
    Results {
        federated,
        total: page.total,
        items,
        facets,
        partial: page.partial,
        instances: page.instances,
        federation_error: page.federation_error,
        first_href: nonempty(&q.cursor).map(|_| q.href_with("cursor", None)),
        next_href,
        page_size,
    }
}

fn search_form(q: &DocQuery, page: Option<&Page>) -> SearchForm {
    let facets = page.map(|p| p.facets.clone()).unwrap_or_default();
    SearchForm {
        q: q.q.clone().unwrap_or_default(),
        classifications: options(
            Clearance::ALL
                .iter()
                .map(|c| (c.as_str().to_string(), c.marking().to_string())),
            &q.classification,
        ),
        countries: options(
            facets.country.keys().map(|k| (k.clone(), k.clone())),
            &q.country,
        ),
        cois: options(
            facets
                .coi
                .keys()
                .filter(|k| k.as_str() != "(none)")
                .map(|k| (k.clone(), k.clone())),
            &q.coi,
        ),
        types: options(
            facets.file_type.keys().map(|k| (k.clone(), k.clone())),
            &q.file_type,
        ),
        from: q.from.clone().unwrap_or_default(),
        to: q.to.clone().unwrap_or_default(),
        federated: q.federated(),
        per_page: crate::api::PAGE_SIZES
            .iter()
            .map(|n| SelectOption {
                value: n.to_string(),
                text: n.to_string(),
                selected: nonempty(&q.per_page).as_deref().unwrap_or("20") == n.to_string(),
            })
            .collect(),
    }
}

pub(super) async fn documents(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<DocQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error_page(
                &s,
                Some(&u),
                StatusCode::BAD_REQUEST,
                "Bad search",
                e.body_text(),
            );
        }
    };
    let filters = match q.filters() {
        Ok(f) => f,
        Err(e) => {
            return with_status(
                StatusCode::BAD_REQUEST,
                render(&DocumentsPage {
                    nav: nav(&s, Some(&u), "documents"),
                    form: search_form(&q, None),
                    error: Some(e),
                    results: None,
                }),
            );
        }
    };
    let api = ApiClient::new(s.http.clone(), &s.settings.api_url);
    let federated = q.federated();
    let answer = if federated {
        api.federated_search(&u.token, &filters).await
    } else {
        api.search(&u.token, &filters).await
    };
    match answer {
        Ok(page) => {
            let form = search_form(&q, Some(&page));
            let results = results(&s, &q, page, federated, filters.page_size());
            render(&DocumentsPage {
                nav: nav(&s, Some(&u), "documents"),
                form,
                error: None,
                results: Some(results),
            })
        }
        Err(e) => {
            let status = api_status(&e);
            with_status(
                status,
                render(&DocumentsPage {
                    nav: nav(&s, Some(&u), "documents"),
                    form: search_form(&q, None),
                    error: Some(e.to_string()),
                    results: None,
                }),
            )
        }
    }
}
