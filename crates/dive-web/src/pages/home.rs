//! Home: who I am to the policy, and what I can reach.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use dive_core::{Clearance, Equivalency, SubjectAttributes};
use serde_json::{Map, Value};

use super::*;

fn me(claims: &Map<String, Value>) -> Result<Me, String> {
    let v = Value::Object(claims.clone());
    let a = SubjectAttributes::from_claims(&v, Equivalency::builtin())
        .map_err(|e| format!("your sign-in carries no usable coalition attributes: {e}"))?;
    let amr = a.authentication.amr.join(", ");
    Ok(Me {
        unique_id: a.unique_id,
        clearance_label: a.clearance_original,
        clearance_level: a.clearance.marking().to_string(),
        clearance_rank: a.clearance.rank(),
        country: a.country_of_affiliation.to_string(),
        cois: a.acp_coi,
        organization_type: claims
            .get("organizationType")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string(),
        aal: serde_json::to_value(a.authentication.aal)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        acr: a.authentication.acr.unwrap_or_else(|| "-".into()),
        amr: if amr.is_empty() { "-".into() } else { amr },
        home_issuer: claims
            .get("home_issuer")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

fn reach(page: &Page) -> Reach {
    let by_classification = Clearance::ALL
        .iter()
        .map(|c| {
            (
                c.as_str().to_string(),
                c.marking().to_string(),
                page.facets
                    .classification
                    .get(c.as_str())
                    .copied()
                    .unwrap_or(0),
            )
        })
        .collect();
    Reach {
        total: page.total,
        by_classification,
    }
}

pub(super) async fn home(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let me = match me(&u.claims) {
        Ok(m) => m,
        Err(e) => return error_page(&s, Some(&u), StatusCode::FORBIDDEN, "No attributes", e),
    };
    let api = ApiClient::new(s.http.clone(), &s.settings.api_url);
    // Only the total and the facets are shown: one item keeps the API's answer small.
    let counts = Filters {
        per_page: 1,
        ..Filters::default()
    };
    let reach = match api.search(&u.token, &counts).await {
        Ok(p) => Ok(reach(&p)),
        Err(e) => Err(e.to_string()),
    };
    render(&HomePage {
        nav: nav(&s, Some(&u), "home"),
        me,
        reach,
    })
}
