//! The pages' templates (askama, compiled in; every value is HTML-escaped unless a template says
//! otherwise, which only the Markdown renderer's output does) and the plain view models they show.

use askama::Template;

use crate::content::{Inspected, Rendered};

/// The header: instance, and the signed-in user with the sign-out form's CSRF token.
pub struct Nav {
    pub instance: String,
    pub user: Option<NavUser>,
    pub active: &'static str,
}

pub struct NavUser {
    pub unique_id: String,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub nav: Nav,
    pub heading: String,
    pub message: String,
    pub back_href: String,
    pub back_text: String,
}

pub struct IdpChoice {
    pub code: String,
    pub label: String,
    pub href: String,
    pub home: bool,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub nav: Nav,
    pub idps: Vec<IdpChoice>,
    pub error: Option<String>,
    pub partners_error: Option<String>,
}

pub struct Me {
    pub unique_id: String,
    pub clearance_label: String,
    pub clearance_level: String,
    pub clearance_rank: u8,
    pub country: String,
    pub cois: Vec<String>,
    pub organization_type: String,
    pub aal: String,
    pub acr: String,
    pub amr: String,
    pub home_issuer: Option<String>,
}

pub struct Reach {
    pub total: u64,
    /// (classification id, display words, count), lowest first.
    pub by_classification: Vec<(String, String, u64)>,
}

#[derive(Template)]
#[template(path = "home.html")]
pub struct HomePage {
    pub nav: Nav,
    pub me: Me,
    pub reach: Result<Reach, String>,
}

pub struct SelectOption {
    pub value: String,
    pub text: String,
    pub selected: bool,
}

pub struct SearchForm {
    pub q: String,
    pub classifications: Vec<SelectOption>,
    pub countries: Vec<SelectOption>,
    pub cois: Vec<SelectOption>,
    pub types: Vec<SelectOption>,
    /// Creation date bounds as typed (`YYYY-MM-DD`).
    pub from: String,
    pub to: String,
    pub federated: bool,
}

pub struct FacetEntry {
    pub text: String,
    pub count: u64,
    pub href: String,
}

pub struct FacetGroup {
    pub title: &'static str,
    pub entries: Vec<FacetEntry>,
}

pub struct DocRow {
    pub title: String,
    pub href: String,
    pub marking: String,
    pub classification: String,
    pub mime_type: String,
    pub created: String,
    pub instance: String,
}

pub struct Results {
    pub federated: bool,
    pub total: u64,
    pub items: Vec<DocRow>,
    pub facets: Vec<FacetGroup>,
    pub partial: bool,
    pub instances: Vec<crate::api::InstanceStatus>,
    pub federation_error: Option<String>,
    pub first_href: Option<String>,
    pub next_href: Option<String>,
    pub page_size: u32,
}

#[derive(Template)]
#[template(path = "documents.html")]
pub struct DocumentsPage {
    pub nav: Nav,
    pub form: SearchForm,
    pub error: Option<String>,
    pub results: Option<Results>,
}

pub struct AllowedView {
    pub id: String,
    pub instance: String,
    pub title: String,
    pub description: Option<String>,
    pub marking: String,
    pub classification: String,
    pub classification_text: String,
    pub original: Option<String>,
    pub releasability: String,
    pub cois: String,
    pub caveats: String,
    pub industry: bool,
    pub created: String,
    pub creator: String,
    pub file_name: String,
    pub mime_type: String,
    pub size: u64,
    pub ztdf_size: u64,
    pub reason: String,
    pub checks: Vec<(String, bool)>,
    pub aal: Option<String>,
    pub open_href: String,
    pub inspect_href: String,
    pub download_href: String,
}

pub struct DeniedView {
    pub id: String,
    pub instance: String,
    pub reason: String,
    pub checks: Vec<(String, bool)>,
    pub needed: Option<String>,
}

pub enum DocView {
    Allowed(Box<AllowedView>),
    Denied(DeniedView),
}

#[derive(Template)]
#[template(path = "document.html")]
pub struct DocumentPage {
    pub nav: Nav,
    pub page_title: String,
    pub view: DocView,
}

#[derive(Template)]
#[template(path = "open.html")]
pub struct OpenPage {
    pub nav: Nav,
    pub title: String,
    pub marking: String,
    pub classification: String,
    pub mime_type: String,
    pub rendered: Rendered,
    pub back_href: String,
    pub download_href: String,
    pub content_href: String,
    pub content_download_href: String,
}

#[derive(Template)]
#[template(path = "inspect.html")]
pub struct InspectPage {
    pub nav: Nav,
    pub title: String,
    pub marking: String,
    pub classification: String,
    pub back_href: String,
    pub ins: Inspected,
}

/// The upload form's values, echoed back after a check or a refusal.
#[derive(Default)]
pub struct UploadFields {
    pub title: String,
    pub description: String,
    pub classification: String,
    pub releasable_to: String,
    pub coi: String,
    pub coi_operator: String,
    pub caveats: String,
    pub industry: bool,
}

#[derive(Template)]
#[template(path = "upload.html")]
pub struct UploadPage {
    pub nav: Nav,
    pub csrf: String,
    pub f: UploadFields,
    pub classifications: Vec<SelectOption>,
    /// (classification id, display marking) of the checked label.
    pub preview: Option<(String, String)>,
    pub problems: Vec<String>,
    pub error: Option<String>,
}
