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
    /// Shows the operations entry (the pages check the role again themselves).
    pub admin: bool,
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
    /// The flag emoji (decorative: the country's name is beside it).
    pub flag: String,
    /// The country's English name.
    pub country: String,
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
    /// Documents per page.
    pub per_page: Vec<SelectOption>,
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

// ---------------------------------------------------------------------------------------------
// Operations pages (admin role)

pub struct ServiceRow {
    pub name: String,
    pub class: String,
    pub description: String,
    pub state: String,
    /// Running (or a completed job): shown as good.
    pub good: bool,
    pub health: String,
    pub pid: String,
    pub uptime: String,
    pub restarts: u32,
    pub last_exit: String,
    pub note: String,
}

pub struct StackView {
    pub supervisor_pid: u32,
    pub supervisor_up: String,
    pub services: Vec<ServiceRow>,
}

pub struct VerifyView {
    pub ok: bool,
    pub started_at: String,
    pub summary: String,
    /// (check id, what is wrong) of each failed check.
    pub failed: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "ops_status.html")]
pub struct OpsStatusPage {
    pub nav: Nav,
    pub role: String,
    pub urls: Vec<(String, String)>,
    pub services: Result<StackView, String>,
    pub last_deployment: Option<String>,
    pub verify: Option<VerifyView>,
}

pub struct CheckView {
    pub id: String,
    pub ok: bool,
    pub detail: String,
}

pub struct VerifyResult {
    pub ok: bool,
    pub passed: usize,
    pub checks: Vec<CheckView>,
}

pub struct LinkView {
    pub partner: String,
    pub flag: String,
    pub name: String,
    pub status: String,
    pub since: String,
    pub hub_trusts: String,
    pub spoke_trusts: String,
    /// (up, detail) of each side right now.
    pub hub_health: (bool, String),
    pub spoke_health: (bool, String),
    pub last_verified: String,
    pub last_result: Option<VerifyResult>,
    pub breaker: String,
    pub verifiable: bool,
    pub changes: usize,
}

#[derive(Template)]
#[template(path = "ops_federation.html")]
pub struct OpsFederationPage {
    pub nav: Nav,
    pub csrf: String,
    pub hub: bool,
    pub links: Vec<LinkView>,
    pub note: Option<String>,
    pub error: Option<String>,
    /// The verification just run: (partner, its result or why it could not run).
    pub verified: Option<(String, Result<VerifyResult, String>)>,
}

pub struct DeploymentRow {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub ok: bool,
    pub finished: bool,
    pub started: String,
    pub duration: String,
    pub duration_ms: Option<i64>,
}

#[derive(Template)]
#[template(path = "ops_deployments.html")]
pub struct OpsDeploymentsPage {
    pub nav: Nav,
    pub chart: crate::charts::Chart,
    pub rows: Vec<DeploymentRow>,
    /// The newest deployment's id and its rendered report, or why it cannot be read.
    pub report: Option<Result<(String, crate::content::SafeHtml), String>>,
    pub error: Option<String>,
}

pub struct AuditFilters {
    pub subject: String,
    pub decision: String,
    pub action: String,
    pub resource: String,
    pub since: String,
    pub until: String,
}

pub struct AuditRow {
    pub at: String,
    pub subject: String,
    pub action: String,
    pub resource: String,
    pub allow: bool,
    pub reason: String,
    pub latency: String,
}

pub struct KeyFilters {
    pub subject: String,
    pub decision: String,
    pub object: String,
    pub since: String,
    pub until: String,
}

pub struct KeyRow {
    pub at: String,
    pub subject: String,
    pub object: String,
    pub kao: String,
    pub algorithm: String,
    pub transport: String,
    pub released: bool,
    pub decision: String,
    pub reason: String,
    pub latency: String,
}

#[derive(Template)]
#[template(path = "ops_keys.html")]
pub struct OpsKeysPage {
    pub nav: Nav,
    pub form: KeyFilters,
    pub error: Option<String>,
    pub rows: Vec<KeyRow>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
    pub chart: Option<crate::charts::Chart>,
    pub minutes: Vec<MinuteRow>,
}

pub struct MinuteRow {
    pub minute: String,
    pub allowed: u64,
    pub denied: u64,
}

#[derive(Template)]
#[template(path = "ops_audit.html")]
pub struct OpsAuditPage {
    pub nav: Nav,
    pub form: AuditFilters,
    pub error: Option<String>,
    pub rows: Vec<AuditRow>,
    pub next_href: Option<String>,
    pub first_href: Option<String>,
    pub chart: Option<crate::charts::Chart>,
    pub minutes: Vec<MinuteRow>,
}
