//! The upload page: a file, a title and a security label built from form fields. "Check label"
//! shows the display marking the label produces and every coherence problem (with the built-in
//! COI registry and equivalency tables) without uploading; "Upload" sends the file to the
//! resource API, which checks everything again under the instance's policy data, asks the PDP,
//! encrypts to the KAS and stores it.

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use dive_core::{Clearance, CoiOperator, CoiRegistry, CountryCode, Equivalency, SecurityLabel};
use serde_json::Value;

use crate::api::{ApiClient, ApiError, NewUpload, UploadRefused};
use crate::content::MAX_PLAINTEXT;
use crate::pages::{Shared, User, error_page, nav, redirect, render, require_user, with_status};
use crate::security;
use crate::templates::{SelectOption, UploadFields, UploadPage};

/// The request body limit of the upload route: the largest file plus the form's text fields.
pub const MAX_BODY: usize = MAX_PLAINTEXT as usize + (64 << 10);

/// A comma- or space-separated list, upper-cased (country codes, COI tags and caveats are).
fn list(s: &str) -> Vec<String> {
    s.split([',', ' ', ';'])
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_ascii_uppercase)
        .collect()
}

/// The label the fields describe, or what is wrong with them (each naming the field).
pub fn label_of(f: &UploadFields) -> Result<SecurityLabel, Vec<String>> {
    let mut errors = Vec::new();
    let classification =
        serde_json::from_value::<Clearance>(Value::String(f.classification.clone()));
    if classification.is_err() {
        errors.push(format!(
            "Classification: {:?} is not a level; choose one",
            f.classification
        ));
    }
    let mut countries = Vec::new();
    for c in list(&f.releasable_to) {
        match CountryCode::new(&c) {
            Ok(code) => countries.push(code),
            Err(e) => errors.push(format!("Releasable to: {c}: {e}")),
        }
    }
    let operator = match f.coi_operator.as_str() {
        "ANY" => CoiOperator::Any,
        _ => CoiOperator::All,
    };
    let Ok(classification) = classification else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut label = SecurityLabel::new(classification, countries);
    label.coi = list(&f.coi);
    label.coi_operator = operator;
    label.caveats = list(&f.caveats);
    label.releasable_to_industry = f.industry;
    Ok(label)
}

/// Every coherence problem under the built-in registry and tables (the API re-checks with the
/// instance's policy data, whose strict mode may add more).
pub fn problems(label: &SecurityLabel) -> Vec<String> {
    label
        .coherence(CoiRegistry::builtin(), Equivalency::builtin(), false)
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn classifications(selected: &str) -> Vec<SelectOption> {
    Clearance::ALL
        .iter()
        .map(|c| SelectOption {
            value: c.as_str().to_string(),
            text: c.marking().to_string(),
            selected: c.as_str() == selected,
        })
        .collect()
}

struct Outcome {
    preview: Option<(String, String)>,
    problems: Vec<String>,
    error: Option<String>,
}

fn page(s: &Shared, u: &User, f: UploadFields, o: Outcome) -> Response {
    render(&UploadPage {
        nav: nav(s, Some(u), "upload"),
        csrf: u.csrf.clone(),
        classifications: classifications(&f.classification),
        f,
        preview: o.preview,
        problems: o.problems,
        error: o.error,
    })
}

pub async fn form(State(s): State<Shared>, headers: HeaderMap, uri: Uri) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    // A sensible start: the lowest level, releasable to one's own country.
    let country = u
        .claims
        .get("countryOfAffiliation")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let f = UploadFields {
        classification: Clearance::Unclassified.as_str().to_string(),
        releasable_to: country,
        coi_operator: "ALL".into(),
        ..UploadFields::default()
    };
    page(
        &s,
        &u,
        f,
        Outcome {
            preview: None,
            problems: vec![],
            error: None,
        },
    )
}

/// The posted form: text fields, the CSRF token, the button pressed, and the file.
#[derive(Default)]
struct Posted {
    f: UploadFields,
    csrf: Option<String>,
    action: String,
    file: Option<(String, Option<String>, Vec<u8>)>,
}

async fn read(mut mp: Multipart) -> Result<Posted, String> {
    let mut p = Posted::default();
    while let Some(field) = mp.next_field().await.map_err(|e| e.body_text())? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_string();
            let ct = field.content_type().map(str::to_string);
            let bytes = field.bytes().await.map_err(|e| e.body_text())?;
            if !file_name.is_empty() || !bytes.is_empty() {
                p.file = Some((file_name, ct, bytes.to_vec()));
            }
            continue;
        }
        let value = field.text().await.map_err(|e| e.body_text())?;
        match name.as_str() {
            "csrf" => p.csrf = Some(value),
            "action" => p.action = value,
            "title" => p.f.title = value,
            "description" => p.f.description = value,
            "classification" => p.f.classification = value,
            "releasable_to" => p.f.releasable_to = value,
            "coi" => p.f.coi = value,
            "coi_operator" => p.f.coi_operator = value,
            "caveats" => p.f.caveats = value,
            "industry" => p.f.industry = value == "on",
            other => return Err(format!("unknown form field {other:?}")),
        }
    }
    Ok(p)
}

pub async fn submit(
    State(s): State<Shared>,
    headers: HeaderMap,
    uri: Uri,
    mp: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let u = match require_user(&s, &headers, &uri).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let posted = match mp {
        Ok(mp) => read(mp).await,
        Err(e) => Err(e.body_text()),
    };
    let posted = match posted {
        Ok(p) => p,
        Err(e) => {
            return error_page(&s, Some(&u), StatusCode::BAD_REQUEST, "Upload refused", e);
        }
    };
    if !security::csrf_ok(&u.csrf, posted.csrf.as_deref()) {
        return crate::pages::csrf_refused(&s, &u);
    }
    let Posted {
        f, action, file, ..
    } = posted;
    let label = match label_of(&f) {
        Ok(l) => l,
        Err(errors) => {
            return with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                page(
                    &s,
                    &u,
                    f,
                    Outcome {
                        preview: None,
                        problems: errors,
                        error: None,
                    },
                ),
            );
        }
    };
    let preview = Some((label.classification.as_str().to_string(), label.marking()));
    let problems = problems(&label);
    if action != "upload" || !problems.is_empty() {
        let status = if problems.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return with_status(
            status,
            page(
                &s,
                &u,
                f,
                Outcome {
                    preview,
                    problems,
                    error: None,
                },
            ),
        );
    }
    let Some((file_name, content_type, bytes)) = file else {
        return with_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            page(
                &s,
                &u,
                f,
                Outcome {
                    preview,
                    problems: vec![],
                    error: Some("Choose a file to upload.".into()),
                },
            ),
        );
    };
    let nonempty = |v: &str| Some(v.trim().to_string()).filter(|t| !t.is_empty());
    let up = NewUpload {
        file_name,
        content_type,
        bytes,
        label: serde_json::to_value(&label).unwrap_or(Value::Null),
        title: nonempty(&f.title),
        description: nonempty(&f.description),
    };
    let api = ApiClient::new(s.http.clone(), &s.settings.api_url);
    let (status, error, problems) = match api.upload(&u.token, &up).await {
        Ok(id) => return redirect(&format!("/documents/{}", crate::api::path_segment(&id))),
        Err(UploadRefused::Rejected(r)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, r.message, r.violations)
        }
        Err(UploadRefused::Api(ApiError::Forbidden(d))) => (
            StatusCode::FORBIDDEN,
            format!("The policy refused the upload: {}", d.reason),
            vec![],
        ),
        Err(UploadRefused::Api(e)) => (StatusCode::BAD_GATEWAY, e.to_string(), vec![]),
    };
    with_status(
        status,
        page(
            &s,
            &u,
            f,
            Outcome {
                preview,
                problems,
                error: Some(error),
            },
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(cls: &str, rel: &str, coi: &str) -> UploadFields {
        UploadFields {
            classification: cls.into(),
            releasable_to: rel.into(),
            coi: coi.into(),
            coi_operator: "ALL".into(),
            ..UploadFields::default()
        }
    }

    #[test]
    fn fields_make_a_label_with_its_marking() {
        let l = label_of(&fields("SECRET", "usa, gbr", "fvey")).unwrap();
        assert_eq!(l.marking(), "SECRET//FVEY//REL TO USA, GBR");
        assert!(problems(&l).is_empty());
    }

    #[test]
    fn bad_fields_and_incoherent_labels_are_explained() {
        let e = label_of(&fields("ULTRA", "USA, XXX", "")).unwrap_err();
        assert!(e.iter().any(|m| m.starts_with("Classification")), "{e:?}");
        assert!(
            e.iter().any(|m| m.starts_with("Releasable to: XXX")),
            "{e:?}"
        );
        let l = label_of(&fields("SECRET", "USA", "US-ONLY, NATO")).unwrap();
        let p = problems(&l);
        assert!(
            p.iter().any(|m| m.contains("US-ONLY cannot be combined")),
            "{p:?}"
        );
        let l = label_of(&fields("SECRET", "", "")).unwrap();
        assert!(
            problems(&l)
                .iter()
                .any(|m| m.contains("releasable to no one"))
        );
    }
}
