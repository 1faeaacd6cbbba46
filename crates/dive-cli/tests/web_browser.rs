//! The web UI in a real browser: headless Chromium (Debian's `chromium`) driven over the W3C
//! WebDriver protocol by `chromedriver`, against a hub deployed by the `dive` binary. A user
//! signs in through the IdP's pages (password, then TOTP enrolment with its QR code), sees home,
//! searches, opens a document, uploads an HTML file whose script must not run in the sandboxed
//! frame, is denied a TOP SECRET document with the reason, inspects a ZTDF and signs out; then,
//! with a FRA spoke deployed and linked, a French user signs in at the hub's UI through the
//! French IdP, opens a hub document releasable to France and searches both instances.
//! Screenshots of each page are saved under `$CARGO_TARGET_TMPDIR/ui-screenshots/` (the path is
//! printed).
//!
//! `scripts/ensure-test-deps` installs chromium and chromium-driver. Without them the test says
//! so and passes only outside CI; under CI (`CI` set) their absence fails it.
//!
//! The browser trusts the installation's certificates through WebDriver's `acceptInsecureCerts`
//! (importing the CA into Chromium's NSS store would need more tools); the UI's `__Host-` cookies
//! still require HTTPS, which they get.

mod support;
use support::instance::{Env, login, wait_for_fresh_totp_step, wait_for_unused_current_totp_step};
use support::{args, port_flags, ports, text};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

const SEED_COUNT: &str = "120";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `chromedriver` on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// A WebDriver session (W3C protocol over HTTP): just the commands this test uses.
struct Browser {
    http: reqwest::Client,
    base: String,
}

impl Browser {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert!(status.is_success(), "WebDriver {path}: {status} {v}");
        v["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.cmd(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.cmd(reqwest::Method::GET, path, None).await
    }

    async fn go(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    async fn url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_string()
    }

    /// Wait (up to 15 s) until the current URL satisfies `f`: a click that submits a form may
    /// return before the browser has navigated.
    async fn wait_url(&self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        loop {
            let u = self.url().await;
            if f(&u) {
                return u;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(15),
                "waiting for {what}: at {u}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().unwrap().to_string()
    }

    async fn find_all(&self, css: &str) -> Vec<String> {
        self.post("/elements", json!({"using": "css selector", "value": css}))
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[ELEMENT].as_str().unwrap().to_string())
            .collect()
    }

    /// Click a link or submit button and wait until the browser has loaded the next page: the
    /// click may return before a form post navigates, so wait for the old document to go stale
    /// and the new one to be complete.
    async fn click(&self, css: &str) {
        let old = self.find("html").await;
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
        let t0 = Instant::now();
        loop {
            let r = self
                .http
                .get(format!("{}/element/{old}/name", self.base))
                .send()
                .await
                .unwrap();
            if r.status() == reqwest::StatusCode::NOT_FOUND {
                break; // stale element reference: a new document
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no navigation after clicking {css}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            let state = self
                .post(
                    "/execute/sync",
                    json!({"script": "return document.readyState", "args": []}),
                )
                .await;
            if state == "complete" {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "page load after {css}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Choose an `<option>` of a select (no navigation follows).
    async fn choose(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/click"), json!({})).await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{e}/clear"), json!({})).await;
        self.post(&format!("/element/{e}/value"), json!({ "text": text }))
            .await;
    }

    async fn text_of(&self, css: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/text"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        let e = self.find(css).await;
        self.get(&format!("/element/{e}/attribute/{name}"))
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    async fn body_text(&self) -> String {
        self.text_of("body").await
    }

    async fn screenshot(&self, dir: &Path, name: &str) {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn frame(&self, css: Option<&str>) {
        let id = match css {
            Some(c) => json!({ ELEMENT: self.find(c).await }),
            None => Value::Null,
        };
        self.post("/frame", json!({ "id": id })).await;
    }
}

/// Start chromedriver and a headless Chromium session (flags for this machine's closed network).
async fn start_browser(profile: &Path) -> (Driver, Browser) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let t0 = Instant::now();
    while http
        .get(format!("{}/status", driver.url))
        .send()
        .await
        .is_err()
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "goog:chromeOptions": {
            "binary": which("chromium").unwrap().display().to_string(),
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync",
                     "--window-size=1280,1000",
                     format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let r: Value = http
        .post(format!("{}/session", driver.url))
        .json(&caps)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sid = r["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
        .to_string();
    let base = format!("{}/session/{sid}", driver.url);
    (driver, Browser { http, base })
}

/// A TOP SECRET document's id, asked of the API as the TOP SECRET test user.
async fn top_secret_doc(env: &Env, issuer: &str, api: &str) -> String {
    let http = dive_http::https_client_trusting(&env.home.join("pki/ca/cert.pem")).unwrap();
    let passwords = env.json("instances/usa/test-users.json");
    let totp = env.json("instances/usa/test-users-totp.json");
    let user = "testuser-usa-5";
    wait_for_fresh_totp_step(&env.home, "USA", user).await;
    let (token, _) = login(
        &http,
        issuer,
        user,
        passwords[user].as_str().unwrap(),
        totp[user]["secret"].as_str().map(str::to_string),
    )
    .await;
    let list: Value = http
        .get(format!(
            "{api}/api/resources?classification=TOP_SECRET&limit=1"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["items"][0]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_user_works_through_the_ui_in_chromium() {
    if which("chromium").is_none() || which("chromedriver").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are required under CI (scripts/ensure-test-deps installs them)"
        );
        eprintln!(
            "SKIPPED: chromium or chromedriver is not installed (run scripts/ensure-test-deps)"
        );
        return;
    }
    let env = Env::new();
    let p = ports();
    let flags = port_flags(&p);
    let issuer = format!("https://localhost:{}", p[0]);
    let api = format!("https://localhost:{}", p[1]);
    let web = format!("https://localhost:{}", p[3]);
    let out = env.run(&args(
        &["hub", "deploy", "--seed-count", SEED_COUNT],
        &flags,
    ));
    assert!(out.status.success(), "{}", text(&out));
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    eprintln!("screenshots: {}", shots.display());
    let passwords = env.json("instances/usa/test-users.json");
    let user = "testuser-usa-4";
    let password = passwords[user].as_str().unwrap().to_string();
    // verify enrolled every test user; forget this one's TOTP so that the browser goes through
    // the enrolment page (QR code) as a new user would.
    let out = env.run(&["idp", "users", "reset-otp", "--instance", "USA", user]);
    assert!(out.status.success(), "{}", text(&out));

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The UI answers before the browser starts (a failure here names the service state).
        let ca_http = dive_http::https_client_trusting(&env.home.join("pki/ca/cert.pem")).unwrap();
        let ready = ca_http.get(format!("{web}/ready")).send().await;
        assert!(
            ready.as_ref().is_ok_and(|r| r.status().is_success()),
            "web /ready: {ready:?}; {}",
            text(&env.run(&["hub", "status"]))
        );
        let ts_doc = top_secret_doc(&env, &issuer, &api).await;
        let (_driver, b) = start_browser(&env.dir.join("chrome-profile")).await;

        // Without a session: the sign-in page.
        b.go(&format!("{web}/documents")).await;
        assert!(b.url().await.contains("/signin?return_to=%2Fdocuments"), "{}", b.url().await);
        assert!(b.body_text().await.contains("Sign in with USA (this instance)"));
        b.screenshot(&shots, "01-signin").await;

        // The IdP's pages: password, then TOTP enrolment (QR code) or the code.
        b.click("ul.idps a.primary").await;
        assert!(b.url().await.starts_with(&issuer), "{}", b.url().await);
        b.screenshot(&shots, "02-idp-login").await;
        b.type_into("input[name=username]", user).await;
        b.type_into("input[name=password]", &password).await;
        b.click("button[type=submit]").await;
        assert_eq!(b.find_all("svg").await.len(), 1, "the enrolment page shows a QR code");
        b.screenshot(&shots, "03-idp-totp-enrolment").await;
        let secret = b.attribute("#totp-secret", "data-secret").await;
        let code = dive_idp::totp::code_at(&secret, dive_idp::util::now()).unwrap();
        b.type_into("input[name=code]", &code).await;
        b.click("button[type=submit]").await;
        let back = format!("{web}/documents");
        b.wait_url("the return to the UI", |u| u == back).await;

        // Home.
        b.click("header nav a[href='/']").await;
        let home = b.body_text().await;
        assert!(home.contains("SECRET") && home.contains("AAL2"), "{home}");
        b.screenshot(&shots, "04-home").await;

        // Documents: search, facets, federated switch.
        b.go(&format!("{web}/documents")).await;
        b.screenshot(&shots, "05-documents").await;
        b.type_into("#q", "report").await;
        b.click("form.search button[type=submit]").await;
        b.wait_url("the search", |u| u.contains("q=report")).await;

        // A text document: details with the decision, then opened.
        b.go(&format!("{web}/documents?type=text%2Fplain")).await;
        b.click("table.docs tbody tr a").await;
        assert_eq!(b.find_all("div.banner").await.len(), 2, "banner top and bottom");
        assert!(b.body_text().await.contains("clearance: passed"));
        b.screenshot(&shots, "06-document").await;
        b.click("p.actions a.primary").await;
        let shown = b.text_of("pre.text").await;
        assert!(shown.len() > 20, "{shown}");
        b.screenshot(&shots, "07-open-text").await;

        // Upload an HTML file whose script would change its text: in the sandboxed frame it
        // must not run.
        let html_file = env.dir.join("sandbox-check.html");
        std::fs::write(
            &html_file,
            "<!DOCTYPE html><html><body><p id=\"t\">static text</p>\
             <script>document.getElementById('t').textContent = 'SCRIPT RAN';</script></body></html>",
        )
        .unwrap();
        b.click("header nav a[href='/upload']").await;
        b.type_into("#title", "Sandbox check page").await;
        let f = b.find("#file").await;
        b.post(
            &format!("/element/{f}/value"),
            json!({ "text": html_file.display().to_string() }),
        )
        .await;
        b.type_into("#releasable_to", "USA, GBR").await;
        b.type_into("#coi", "FVEY").await;
        b.click("button[value=preview]").await;
        b.wait_url("the label check", |u| u.ends_with("/upload")).await;
        assert_eq!(b.text_of("div.banner").await, "UNCLASSIFIED//FVEY//REL TO USA, GBR");
        b.screenshot(&shots, "08-upload-check").await;
        let f = b.find("#file").await;
        b.post(
            &format!("/element/{f}/value"),
            json!({ "text": html_file.display().to_string() }),
        )
        .await;
        b.click("button[value=upload]").await;
        b.wait_url("the new document", |u| u.contains("/documents/")).await;
        assert!(b.body_text().await.contains("Sandbox check page"));
        b.click("p.actions a.primary").await;
        b.screenshot(&shots, "09-open-html-sandboxed").await;
        b.frame(Some("iframe.doc-html")).await;
        assert_eq!(b.text_of("#t").await, "static text", "the document's script did not run");
        b.frame(None).await;

        // The inspector.
        b.click("p.actions a.button").await;
        b.go(&format!("{}/inspect", b.url().await)).await;
        assert!(b.body_text().await.contains("segment hashes"));
        b.screenshot(&shots, "10-inspect").await;

        // A TOP SECRET document: denied, with the reason and the failed check.
        b.go(&format!("{web}/documents/{ts_doc}")).await;
        let denied = b.body_text().await;
        assert!(denied.contains("Insufficient clearance"), "{denied}");
        assert!(denied.contains("clearance: failed"), "{denied}");
        b.screenshot(&shots, "11-denied").await;

        // Sign out through the IdP, back to the UI, signed out.
        b.click("header form button[type=submit]").await;
        b.wait_url("the IdP's logout to return", |u| u == format!("{web}/signin?return_to=%2F")).await;
        b.go(&format!("{web}/")).await;
        assert!(b.url().await.contains("/signin"), "{}", b.url().await);

        // A spoke, linked with the hub by its deployment: a French user signs in at the hub's UI
        // through the French IdP (brokered, with the IdP hint) and opens a hub document
        // releasable to France.
        let q = ports();
        let out = env.run(&args(
            &["spoke", "deploy", "FRA", "--seed", "--seed-count", "20"],
            &port_flags(&q),
        ));
        assert!(out.status.success(), "{}", text(&out));
        let fra_issuer = format!("https://localhost:{}", q[0]);
        let fra_passwords = env.json("instances/fra/test-users.json");
        b.go(&format!("{web}/signin")).await;
        assert!(b.body_text().await.contains("Sign in with FRA (federated partner)"));
        b.screenshot(&shots, "12-signin-partners").await;
        b.click("a[href*='idp=fra-idp']").await;
        b.wait_url("the French IdP", |u| u.starts_with(&fra_issuer)).await;
        b.type_into("input[name=username]", "testuser-fra-1").await;
        b.type_into(
            "input[name=password]",
            fra_passwords["testuser-fra-1"].as_str().unwrap(),
        )
        .await;
        b.click("button[type=submit]").await;
        b.wait_url("the return to the hub's UI", |u| u == format!("{web}/")).await;
        let home = b.body_text().await;
        assert!(home.contains("FRA") && home.contains(&fra_issuer), "{home}");
        b.screenshot(&shots, "13-home-brokered").await;
        b.go(&format!("{web}/documents?type=text%2Fplain")).await;
        b.click("table.docs tbody tr a").await;
        let doc = b.body_text().await;
        assert!(doc.contains("FRA") && doc.contains("releasability: passed"), "{doc}");
        b.click("p.actions a.primary").await;
        assert!(b.text_of("pre.text").await.len() > 20);
        b.screenshot(&shots, "14-open-brokered").await;
        // Federated search from the hub: both instances answer with the user's hub token.
        b.go(&format!("{web}/documents?scope=federated")).await;
        let fed = b.body_text().await;
        assert!(fed.contains("Instances asked") && !fed.contains("Partial results"), "{fed}");
        assert_eq!(b.find_all("table.instances .status-ok").await.len(), 2, "{fed}");
        b.screenshot(&shots, "15-federated-search").await;

        // Operations are for the hub's administrators: the French user gets 403.
        assert!(b.find_all("header nav a[href='/ops']").await.is_empty(), "no entry for a user");
        b.go(&format!("{web}/ops")).await;
        assert!(b.body_text().await.contains("Administrators only"));
        b.screenshot(&shots, "16-ops-forbidden").await;
        b.click("header form button[type=submit]").await;
        b.wait_url("the sign-out", |u| u.starts_with(&format!("{web}/signin"))).await;

        // The hub's administrator (password and TOTP at the hub's IdP).
        let totp = env.json("instances/usa/test-users-totp.json");
        let secret = totp["admin-usa"]["secret"].as_str().unwrap().to_string();
        wait_for_unused_current_totp_step(&env.home, "USA", "admin-usa").await;
        b.go(&format!("{web}/ops")).await;
        b.click("ul.idps a.primary").await;
        b.type_into("input[name=username]", "admin-usa").await;
        b.type_into("input[name=password]", passwords["admin-usa"].as_str().unwrap()).await;
        b.click("button[type=submit]").await;
        let code = dive_idp::totp::code_at(&secret, dive_idp::util::now()).unwrap();
        b.type_into("input[name=code]", &code).await;
        b.click("button[type=submit]").await;
        b.wait_url("the operations page", |u| u == format!("{web}/ops")).await;
        let status = b.body_text().await;
        assert!(status.contains("running") && status.contains("healthy"), "{status}");
        assert_eq!(b.find_all("header nav a[href='/ops']").await.len(), 1, "the nav entry");
        b.screenshot(&shots, "17-ops-status").await;

        // Federation: the linked spoke, then a verification of the link run from the page.
        b.click("nav.ops a[href='/ops/federation']").await;
        let fed = b.body_text().await;
        assert!(fed.contains("France (FRA)") && fed.contains("active"), "{fed}");
        b.screenshot(&shots, "18-ops-federation").await;
        b.click("form[action='/ops/federation/verify'] button").await;
        b.wait_url("the verification", |u| u.ends_with("/ops/federation/verify")).await;
        let verified = b.body_text().await;
        assert!(verified.contains("Verified:"), "{verified}");
        assert!(verified.contains("USA→FRA.brokered_login: passed"), "{verified}");
        b.screenshot(&shots, "19-ops-federation-verified").await;

        // Deployment history (the hub's deployment, charted) and the audit log with its chart.
        b.click("nav.ops a[href='/ops/deployments']").await;
        assert_eq!(b.find_all("svg.chart rect.bar-ok").await.len(), 1, "one deployment charted");
        assert!(b.body_text().await.contains("The last deployment's report"));
        b.screenshot(&shots, "20-ops-deployments").await;
        b.click("nav.ops a[href='/ops/audit']").await;
        assert!(!b.find_all("svg.chart rect.bar-ok").await.is_empty(), "decisions this hour");
        assert!(!b.find_all("svg.chart rect.bar-bad").await.is_empty(), "the denial");
        b.screenshot(&shots, "21-ops-audit").await;
        b.choose("#decision option[value=deny]").await;
        b.click("form.filters button[type=submit]").await;
        b.wait_url("the filter", |u| u.contains("decision=deny")).await;
        let denied = b.body_text().await;
        assert!(denied.contains("denied") && denied.contains("Insufficient clearance"), "{denied}");
        // Key releases, from the KAS: the documents opened above.
        b.click("nav.ops a[href='/ops/keys']").await;
        assert!(!b.find_all("svg.chart rect.bar-ok").await.is_empty(), "releases this hour");
        assert!(b.body_text().await.contains("released"));
        b.screenshot(&shots, "22-ops-keys").await;
        b.cmd(reqwest::Method::DELETE, "", None).await;
    });
}
