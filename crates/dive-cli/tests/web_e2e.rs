//! The web UI over HTTP, end to end: the real hub (IdP, KAS, API, web, seed job) deployed by the
//! `dive` binary into a temporary DIVE_HOME with a small seed, then driven like a browser — with
//! a cookie jar for the UI and the IdP's real login pages (password, TOTP) — through sign-in,
//! home, search (local and federated, with an unreachable partner), opening documents of each
//! rendered kind, a denial with its reason, the ZTDF inspector and download, the security
//! headers, CSRF refusal, and sign-out at the IdP.
//!
//! It lives in dive-cli because it needs the `dive` binary (the stack runs it).

mod support;
use support::instance::{Env, wait_for_fresh_totp_step};
use support::{args, port_flags, ports, text};

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Small: every content type still appears (the seed's weights), and the deploy stays quick.
const SEED_COUNT: &str = "120";

/// A response as a browser sees it.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
    bytes: Vec<u8>,
}

impl Page {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    fn location(&self) -> String {
        self.header("location")
    }
}

/// A browser for the UI's origin: keeps the UI's cookies, follows nothing by itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    jar: Mutex<HashMap<String, String>>,
    /// Every Set-Cookie line seen (attributes included).
    set_cookies: Mutex<Vec<String>>,
}

impl Browser {
    fn new(http: &reqwest::Client, base: &str) -> Browser {
        Browser {
            http: http.clone(),
            base: base.to_string(),
            jar: Mutex::new(HashMap::new()),
            set_cookies: Mutex::new(Vec::new()),
        }
    }

    fn url(&self, p: &str) -> String {
        if p.starts_with("https://") {
            p.to_string()
        } else {
            format!("{}{p}", self.base)
        }
    }

    fn cookie_header(&self) -> String {
        self.jar
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Page {
        let r = rb
            .header(reqwest::header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        for v in r.headers().get_all(reqwest::header::SET_COOKIE) {
            let line = v.to_str().unwrap().to_string();
            let (kv, attrs) = line.split_once(';').unwrap_or((&line, ""));
            let (k, val) = kv.split_once('=').unwrap();
            let mut jar = self.jar.lock().unwrap();
            if attrs.contains("Max-Age=0") {
                jar.remove(k);
            } else {
                jar.insert(k.to_string(), val.to_string());
            }
            self.set_cookies.lock().unwrap().push(line);
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap().to_vec();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        }
    }

    async fn get(&self, p: &str) -> Page {
        self.send(self.http.get(self.url(p))).await
    }

    async fn post(&self, p: &str, form: &[(&str, &str)]) -> Page {
        self.send(self.http.post(self.url(p)).form(form)).await
    }

    /// A multipart form post (as a browser sends a form with a file input).
    async fn post_multipart(
        &self,
        p: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &str, &[u8])>,
    ) -> Page {
        let boundary = "----web-e2e-boundary-4d1f";
        let mut body = Vec::new();
        for (k, v) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                )
                .as_bytes(),
            );
        }
        if let Some((name, ct, data)) = file {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {ct}\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let rb = self
            .http
            .post(self.url(p))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        self.send(rb).await
    }
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&#60;", "<")
        .replace("&gt;", ">")
        .replace("&#62;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .replace("&#38;", "&")
}

/// The text between `start` and the next `end` after it.
fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let i = s.find(start)? + start.len();
    let j = s[i..].find(end)?;
    Some(&s[i..i + j])
}

/// Document ids linked from a documents page.
fn doc_ids(html: &str) -> Vec<String> {
    html.split("<td><a href=\"/documents/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .map(|s| s.split('?').next().unwrap_or(s).to_string())
        .collect()
}

/// Sign in through the UI: its redirect to the IdP, the IdP's real pages, the callback.
async fn sign_in(
    b: &Browser,
    issuer: &str,
    user: &str,
    password: &str,
    totp: Option<&str>,
    return_to: &str,
) {
    let start = b
        .get(&format!(
            "/auth/login?return_to={}",
            return_to.replace('/', "%2F")
        ))
        .await;
    assert_eq!(start.status, 303, "{}", start.body);
    let authorize = start.location();
    for part in [
        "/authorize?",
        "client_id=dive-web",
        "code_challenge_method=S256",
        "nonce=",
        "state=",
    ] {
        assert!(authorize.contains(part), "{authorize}");
    }
    let pages = dive_idp::login_helper::login_at(&b.http, issuer, &authorize, user, password, totp)
        .await
        .unwrap_or_else(|e| panic!("login as {user}: {e}"));
    assert!(
        pages
            .location
            .starts_with(&format!("{}/auth/callback?", b.base)),
        "{}",
        pages.location
    );
    let done = b.get(&pages.location).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), return_to);
}

/// A page of the signed-in UI: 200, no script, no token.
fn assert_clean(p: &Page, what: &str) {
    assert_eq!(p.status, 200, "{what}: {}", p.body);
    assert!(!p.body.contains("<script"), "{what} has a script");
    assert!(!p.body.contains("style=\""), "{what} has an inline style");
    assert!(!has_jwt(&p.body), "{what} shows a token");
}

/// Whether `s` contains a token of an IdP: something JWT-shaped whose claims name an `iss`
/// (ZTDF assertion signatures are JWS too, but carry no issuer).
fn has_jwt(s: &str) -> bool {
    use base64::Engine;
    s.match_indices("eyJ").any(|(i, _)| {
        let tail: String = s[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .collect();
        let parts: Vec<&str> = tail.split('.').collect();
        parts.len() >= 3
            && base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(parts[1])
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|c| c.get("iss").is_some())
    })
}

/// The first seeded document of a search as `b` (verify's uploads are not in the seed record).
async fn first_doc(b: &Browser, query: &str, seed: &Value) -> String {
    let p = b.get(&format!("/documents?{query}")).await;
    assert_clean(&p, query);
    doc_ids(&p.body)
        .into_iter()
        .find(|id| seed["plaintext_sha256"].get(id).is_some())
        .unwrap_or_else(|| panic!("no seeded document for {query}: {}", p.body))
}

#[test]
fn web_ui_signs_in_searches_explains_and_opens_documents() {
    let env = Env::new();
    let p = ports();
    let flags = port_flags(&p);
    let issuer = format!("https://localhost:{}", p[0]);
    let web = format!("https://localhost:{}", p[3]);

    let out = env.run(&args(
        &["hub", "deploy", "--seed-count", SEED_COUNT],
        &flags,
    ));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!("web UI  {web}/")),
        "the deploy prints the UI's URL: {t}"
    );
    let verify = env.json("instances/usa/last-verify.json");
    assert_eq!(verify["failed"], 0, "{verify:#}");
    let seed = env.json("instances/usa/seed.json");
    let passwords = env.json("instances/usa/test-users.json");
    let totp = env.json("instances/usa/test-users-totp.json");
    let pw = |u: &str| passwords[u].as_str().unwrap().to_string();
    let top_totp = totp["testuser-usa-5"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let http = dive_http::https_client_trusting(&env.home.join("pki/ca/cert.pem")).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // No session: every page sends the browser to sign in, and back afterwards.
        let anon = Browser::new(&http, &web);
        let r = anon.get("/documents?q=port").await;
        assert_eq!(r.status, 303);
        assert_eq!(r.location(), "/signin?return_to=%2Fdocuments%3Fq%3Dport");
        assert_eq!(anon.get("/").await.location(), "/signin?return_to=%2F");
        assert_eq!(anon.get("/documents/x/open").await.status, 303);
        let r = anon.post("/auth/logout", &[]).await;
        assert_eq!((r.status, r.location().as_str()), (303, "/signin"));

        // The landing page and the headers every page carries.
        let signin = anon.get("/signin").await;
        assert_eq!(signin.status, 200, "{}", signin.body);
        assert!(signin.body.contains("Sign in with USA (this instance)"), "{}", signin.body);
        let csp = signin.header("content-security-policy");
        for part in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            &format!("form-action 'self' {issuer}"),
        ] {
            assert!(csp.contains(part), "CSP {csp:?} lacks {part}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(signin.header("x-frame-options"), "DENY");
        assert_eq!(signin.header("x-content-type-options"), "nosniff");
        assert_eq!(signin.header("referrer-policy"), "no-referrer");
        assert_eq!(signin.header("cache-control"), "no-store");
        let css = anon.get("/static/dive.css").await;
        assert_eq!(css.status, 200);
        assert!(css.header("content-type").starts_with("text/css"));

        // A cleared user: password and TOTP at the IdP's pages; the browser gets only the
        // session cookie.
        wait_for_fresh_totp_step(&env.home, "USA", "testuser-usa-5").await;
        let top = Browser::new(&http, &web);
        sign_in(&top, &issuer, "testuser-usa-5", &pw("testuser-usa-5"), Some(&top_totp), "/documents").await;
        let cookies = top.set_cookies.lock().unwrap().clone();
        let session = cookies
            .iter()
            .find(|c| c.starts_with("__Host-dive_web_usa="))
            .unwrap_or_else(|| panic!("{cookies:?}"));
        for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Lax"] {
            assert!(session.contains(attr), "{session}");
        }
        assert!(!session.contains("Domain"), "{session}");
        assert!(cookies.iter().all(|c| !has_jwt(c)), "no token in a cookie: {cookies:?}");

        // Home: who I am and what I can reach.
        let home = top.get("/").await;
        assert_clean(&home, "home");
        for part in ["TOP SECRET", "level 4 of 4", "AAL2", "USA", "NATO"] {
            assert!(home.body.contains(part), "home lacks {part}: {}", home.body);
        }
        let reach: u64 = between(&home.body, "<p>", " document(s) on this instance")
            .unwrap_or_else(|| panic!("{}", home.body))
            .parse()
            .unwrap();
        assert!(reach > 0 && reach <= 120, "{reach}");

        // Documents: search, facets, filters, pagination.
        let docs = top.get("/documents").await;
        assert_clean(&docs, "documents");
        assert!(docs.body.contains(&format!("{reach} document(s) you may read")), "{}", docs.body);
        assert_eq!(doc_ids(&docs.body).len(), 20, "one page of 20");
        assert!(docs.body.contains("rel=\"next\""), "a next page link");
        let before_next = &docs.body[..docs.body.find("\" rel=\"next\"").unwrap()];
        let next = &before_next[before_next.rfind("href=\"").unwrap() + 6..];
        assert!(next.starts_with("/documents?cursor="), "{next}");
        let page2 = top.get(&unescape(next)).await;
        assert_clean(&page2, "page 2");
        let (p1, p2) = (doc_ids(&docs.body), doc_ids(&page2.body));
        assert!(!p2.is_empty() && p2.iter().all(|id| !p1.contains(id)), "page 2 differs");
        let fifty = top.get("/documents?per_page=50").await;
        assert_clean(&fifty, "50 per page");
        assert_eq!(doc_ids(&fifty.body).len() as u64, reach.min(50), "50 per page");
        assert!(fifty.body.contains("<option value=\"50\" selected>"), "the choice stays");
        let next50 = next_link(&fifty.body).unwrap();
        assert!(next50.contains("per_page=50"), "the next page keeps the size: {next50}");
        let bad = top.get("/documents?per_page=7").await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(
            unescape(&bad.body).contains("per_page \"7\": choose one of 20, 50, 100"),
            "{}",
            bad.body
        );
        let secret = top.get("/documents?classification=SECRET").await;
        assert_clean(&secret, "SECRET filter");
        assert!(secret.body.contains("<option value=\"SECRET\" selected>"), "the filter stays selected");
        let chips = secret.body.matches("<span class=\"chip cls-").count();
        let secret_chips = secret.body.matches("<span class=\"chip cls-SECRET\">").count();
        assert!(secret_chips > 0 && chips == secret_chips, "only SECRET rows: {}", secret.body);
        let bad = top.get("/documents?classification=ULTRA").await;
        assert_eq!(bad.status, 400);
        assert!(bad.body.contains("not a known level"), "{}", bad.body);
        let future = top.get("/documents?from=2100-01-01").await;
        assert_clean(&future, "date filter");
        assert!(future.body.contains(">0 document(s) you may read"), "{}", future.body);
        assert!(future.body.contains("value=\"2100-01-01\""), "the date stays in the form");
        let bad = top.get("/documents?to=yesterday").await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(bad.body.contains("to: "), "the API names the parameter: {}", bad.body);

        // Open a text document: KAS rewrap with the user's token, decrypt, show — the exact bytes.
        let id = first_doc(&top, "type=text%2Fplain", &seed).await;
        let doc = top.get(&format!("/documents/{id}")).await;
        assert_clean(&doc, "document");
        assert_eq!(doc.body.matches("<div class=\"banner cls-").count(), 2, "banner top and bottom");
        assert!(doc.body.contains("clearance: passed"), "{}", doc.body);
        let open = top.get(&format!("/documents/{id}/open")).await;
        assert_clean(&open, "open text");
        let shown = unescape(between(&open.body, "<pre class=\"text\">", "</pre>").unwrap());
        assert_eq!(
            seed["plaintext_sha256"][&id],
            hex::encode(Sha256::digest(shown.as_bytes())),
            "the page shows the seeded plaintext"
        );

        // Markdown is rendered, never as raw HTML from the document.
        let md = first_doc(&top, "type=text%2Fmarkdown", &seed).await;
        let open = top.get(&format!("/documents/{md}/open")).await;
        assert_clean(&open, "open markdown");
        assert!(open.body.contains("<article class=\"markdown\">"), "{}", open.body);

        // HTML only in a sandboxed frame, its bytes served under a sandbox CSP.
        let html = first_doc(&top, "type=text%2Fhtml", &seed).await;
        let open = top.get(&format!("/documents/{html}/open")).await;
        assert_clean(&open, "open html");
        assert!(
            open.body.contains(&format!("<iframe class=\"doc-html\" sandbox src=\"/documents/{html}/content\"")),
            "{}",
            open.body
        );
        let raw = top.get(&format!("/documents/{html}/content")).await;
        assert_eq!(raw.status, 200);
        let csp = raw.header("content-security-policy");
        assert!(csp.starts_with("sandbox;") && !csp.contains("allow-scripts"), "{csp}");
        assert!(csp.contains("frame-ancestors 'self'"), "{csp}");
        assert_eq!(seed["plaintext_sha256"][&html], hex::encode(Sha256::digest(&raw.bytes)));

        // An image through the same-origin content endpoint.
        let png = first_doc(&top, "type=image%2Fpng", &seed).await;
        let open = top.get(&format!("/documents/{png}/open")).await;
        assert!(open.body.contains("<img class=\"doc-image\""), "{}", open.body);
        let img = top.get(&format!("/documents/{png}/content")).await;
        assert_eq!(img.header("content-type"), "image/png");
        assert_eq!(seed["plaintext_sha256"][&png], hex::encode(Sha256::digest(&img.bytes)));

        // CSV as a table, JSON pretty-printed.
        let csv = first_doc(&top, "type=text%2Fcsv", &seed).await;
        let open = top.get(&format!("/documents/{csv}/open")).await;
        assert!(open.body.contains("<table class=\"csv\">"), "{}", open.body);
        let json = first_doc(&top, "type=application%2Fjson", &seed).await;
        let open = top.get(&format!("/documents/{json}/open")).await;
        assert!(open.body.contains("<pre class=\"json\">"), "{}", open.body);

        // The inspector (no wrapped key shown) and the ZTDF download.
        let ins = top.get(&format!("/documents/{id}/inspect")).await;
        assert_clean(&ins, "inspector");
        assert!(ins.body.contains("segment hashes: every stored GCM tag matches"), "{}", ins.body);
        let keys = ins.body.matches("wrappedKey").count();
        assert!(keys > 0, "{}", ins.body);
        assert_eq!(
            ins.body.matches("wrappedKey&#34;: &#34;(not shown)").count(),
            keys,
            "no wrapped key is shown: {}",
            ins.body
        );
        let z = top.get(&format!("/documents/{id}/download")).await;
        assert_eq!(z.status, 200);
        assert_eq!(z.header("content-type"), "application/zip");
        assert!(z.bytes.starts_with(b"PK"), "a ZIP container");

        // Upload: the label is checked first (marking preview, coherence problems), then the
        // file goes to the API, and the new document is found by search and opens.
        let csrf = between(&top.get("/upload").await.body, "name=\"csrf\" value=\"", "\"").unwrap().to_string();
        let label = |coi: &str, action: &'static str| -> Vec<(&'static str, String)> {
            vec![
                ("csrf", csrf.clone()),
                ("action", action.to_string()),
                ("title", "Harbour survey <b>web</b> zq7upload".to_string()),
                ("classification", "SECRET".to_string()),
                ("releasable_to", "USA, GBR".to_string()),
                ("coi", coi.to_string()),
                ("coi_operator", "ALL".to_string()),
            ]
        };
        let post = |fields: Vec<(&'static str, String)>, file: Option<(&'static str, &'static str, &'static [u8])>| {
            let top = &top;
            async move {
                let f: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                top.post_multipart("/upload", &f, file).await
            }
        };
        let no_csrf: Vec<(&'static str, String)> = label("FVEY", "upload").into_iter().filter(|(k, _)| *k != "csrf").collect();
        let r = post(no_csrf, Some(("a.txt", "text/plain", b"x"))).await;
        assert_eq!(r.status, 403, "upload without the CSRF token: {}", r.body);
        let r = post(label("US-ONLY, NATO", "preview"), None).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(r.body.contains("US-ONLY cannot be combined with another COI"), "{}", r.body);
        let r = post(label("FVEY", "preview"), None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.contains("SECRET//FVEY//REL TO USA, GBR</div>"), "the marking preview: {}", r.body);
        const UPLOADED: &[u8] = b"Harbour survey notes\n<script>alert('x')</script>\n";
        let r = post(label("FVEY", "upload"), Some(("survey.txt", "text/plain", UPLOADED))).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let new_doc = r.location();
        assert!(new_doc.starts_with("/documents/"), "{new_doc}");
        let shown = top.get(&new_doc).await;
        assert_clean(&shown, "uploaded document");
        assert!(shown.body.contains("Harbour survey &#60;b&#62;web&#60;/b&#62; zq7upload"), "escaped title: {}", shown.body);
        let found = top.get("/documents?q=zq7upload").await;
        assert_clean(&found, "search for the upload");
        assert_eq!(doc_ids(&found.body), vec![new_doc.trim_start_matches("/documents/").to_string()]);
        let open = top.get(&format!("{new_doc}/open")).await;
        assert_clean(&open, "open the upload");
        assert!(open.body.contains("&#60;script&#62;alert("), "the text is escaped: {}", open.body);

        // A TOP SECRET document, for the denial below.
        let ts = first_doc(&top, "classification=TOP_SECRET", &seed).await;

        // An UNCLASSIFIED user (no second factor) is told why not, check by check.
        let low = Browser::new(&http, &web);
        sign_in(&low, &issuer, "testuser-usa-1", &pw("testuser-usa-1"), None, "/").await;
        let home = low.get("/").await;
        assert!(home.body.contains("AAL1"), "{}", home.body);
        let denied = low.get(&format!("/documents/{ts}")).await;
        assert_eq!(denied.status, 403, "{}", denied.body);
        assert!(denied.body.contains("Insufficient clearance"), "{}", denied.body);
        assert!(denied.body.contains("<li class=\"fail\"><span class=\"mark\" aria-hidden=\"true\">✗</span> clearance: failed"), "{}", denied.body);
        assert!(denied.body.contains("What would be needed"), "{}", denied.body);
        let open = low.get(&format!("/documents/{ts}/open")).await;
        assert_eq!(open.status, 403, "{}", open.body);
        assert!(!low.get("/documents").await.body.contains(&ts), "not listed");

        // A federation partner: offered on the landing page with the IdP hint; searched
        // federated, and when it does not answer the results say they are partial.
        let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let partners = env.home.join("instances/usa/federation/partners.json");
        std::fs::create_dir_all(partners.parent().unwrap()).unwrap();
        std::fs::write(
            &partners,
            format!(r#"{{"partners": [{{"code": "FRA", "apiUrl": "https://localhost:{dead_port}", "status": "active"}}]}}"#),
        )
        .unwrap();
        let signin = anon.get("/signin").await;
        assert!(signin.body.contains("Sign in with FRA (federated partner)"), "{}", signin.body);
        let r = anon.get("/auth/login?idp=fra-idp").await;
        assert_eq!(r.status, 303);
        assert!(r.location().contains("idp_hint=fra-idp"), "{}", r.location());
        let r = anon.get("/auth/login?idp=evil-idp").await;
        assert_eq!(r.status, 401);
        assert!(r.body.contains("is not an identity provider of an active federation partner"), "{}", r.body);
        // The API re-reads the partners file within a second or so.
        let mut fed = top.get("/documents?scope=federated").await;
        for _ in 0..30 {
            if fed.body.contains("Partial results") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            fed = top.get("/documents?scope=federated").await;
        }
        assert_clean(&fed, "federated");
        assert!(fed.body.contains("Partial results"), "{}", fed.body);
        assert!(fed.body.contains("<td>FRA</td><td><span class=\"status status-"), "{}", fed.body);
        // This instance's documents (and the upload above) are all there.
        let fed_total = reach + 1;
        assert!(fed.body.contains(&format!("{fed_total} document(s) you may read")), "{}", fed.body);

        // CSRF: a post without the session's token, or with another, is refused.
        let r = top.post("/auth/logout", &[]).await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = top.post("/auth/logout", &[("csrf", "forged-token-value")]).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert_eq!(top.get("/").await.status, 200, "still signed in");

        // Sign out: RP-initiated logout at the IdP, which returns to the UI.
        let csrf = between(&top.get("/").await.body, "name=\"csrf\" value=\"", "\"").unwrap().to_string();
        let r = top.post("/auth/logout", &[("csrf", &csrf)]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let to = r.location();
        assert!(to.starts_with(&format!("{issuer}/logout?")) && to.contains("id_token_hint="), "{to}");
        let back = top.http.get(&to).send().await.unwrap();
        assert_eq!(back.status().as_u16(), 303);
        assert_eq!(back.headers()["location"].to_str().unwrap(), format!("{web}/"));
        assert_eq!(top.get("/").await.status, 303, "signed out");
    });
}

/// The `href` of the link with `rel="next"` on a page.
fn next_link(html: &str) -> Option<String> {
    let end = html.find("\" rel=\"next\"")?;
    let before = &html[..end];
    Some(unescape(&before[before.rfind("href=\"")? + 6..]))
}

#[test]
fn operations_pages_are_for_administrators_and_show_the_instance() {
    let env = Env::new();
    let p = ports();
    let flags = port_flags(&p);
    let issuer = format!("https://localhost:{}", p[0]);
    let web = format!("https://localhost:{}", p[3]);
    let out = env.run(&args(&["hub", "deploy", "--seed-count", "20"], &flags));
    assert!(out.status.success(), "{}", text(&out));
    let passwords = env.json("instances/usa/test-users.json");
    let totp = env.json("instances/usa/test-users-totp.json");
    let pw = |u: &str| passwords[u].as_str().unwrap().to_string();
    let admin_totp = totp["admin-usa"]["secret"].as_str().unwrap().to_string();
    let http = dive_http::https_client_trusting(&env.home.join("pki/ca/cert.pem")).unwrap();
    let pages = [
        "/ops",
        "/ops/federation",
        "/ops/deployments",
        "/ops/audit",
        "/ops/keys",
    ];

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // No session: sign in first.
        let anon = Browser::new(&http, &web);
        for p in pages {
            let r = anon.get(p).await;
            assert_eq!(r.status, 303, "{p}");
            assert!(
                r.location().starts_with("/signin?return_to=%2Fops"),
                "{p}: {}",
                r.location()
            );
        }

        // A user without the admin role: 403 on every operations page, no nav entry, and the
        // verify action refused even with the session's CSRF token.
        let user = Browser::new(&http, &web);
        sign_in(
            &user,
            &issuer,
            "testuser-usa-1",
            &pw("testuser-usa-1"),
            None,
            "/",
        )
        .await;
        let home = user.get("/").await;
        assert_clean(&home, "home");
        assert!(
            !home.body.contains("href=\"/ops\""),
            "no operations entry for a user"
        );
        for p in pages {
            let r = user.get(p).await;
            assert_eq!(r.status, 403, "{p}: {}", r.body);
            assert!(r.body.contains("Administrators only"), "{p}: {}", r.body);
        }
        let csrf = between(&home.body, "name=\"csrf\" value=\"", "\"")
            .unwrap()
            .to_string();
        let r = user
            .post(
                "/ops/federation/verify",
                &[("csrf", &csrf), ("partner", "FRA")],
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("Administrators only"), "{}", r.body);
        // Decisions for the audit log: every seeded document asked for, most of them denied to
        // an UNCLASSIFIED user.
        let seed = env.json("instances/usa/seed.json");
        let mut denials = 0;
        for id in seed["plaintext_sha256"].as_object().unwrap().keys() {
            let r = user.get(&format!("/documents/{id}")).await;
            assert!(r.status == 200 || r.status == 403, "{}", r.body);
            denials += usize::from(r.status == 403);
        }
        assert!(
            denials > 0,
            "an UNCLASSIFIED user is denied some of 20 documents"
        );

        // The administrator (SECRET: password and TOTP).
        wait_for_fresh_totp_step(&env.home, "USA", "admin-usa").await;
        let admin = Browser::new(&http, &web);
        sign_in(
            &admin,
            &issuer,
            "admin-usa",
            &pw("admin-usa"),
            Some(&admin_totp),
            "/ops",
        )
        .await;
        let status = admin.get("/ops").await;
        assert_clean(&status, "status");
        assert!(
            status.body.contains("href=\"/ops\" aria-current=\"page\""),
            "the nav entry"
        );
        for svc in ["idp", "kas", "api", "web"] {
            assert!(
                status
                    .body
                    .contains(&format!("<th scope=\"row\">{svc}<br>")),
                "service {svc}: {}",
                status.body
            );
        }
        assert!(status.body.contains(">running"), "{}", status.body);
        assert!(status.body.contains("healthy"), "{}", status.body);
        assert!(
            status.body.contains("checks passed"),
            "the last verification: {}",
            status.body
        );

        // Deployment history: the deploy, its duration charted, its report.
        let deps = admin.get("/ops/deployments").await;
        assert_clean(&deps, "deployments");
        assert!(deps.body.contains(">COMPLETE<"), "{}", deps.body);
        assert!(
            deps.body.contains(
                "<svg role=\"img\" aria-labelledby=\"deploy-durations-title deploy-durations-desc\""
            ),
            "{}",
            deps.body
        );
        assert_eq!(
            deps.body.matches("<rect class=\"bar-ok\"").count(),
            1,
            "one finished deployment: {}",
            deps.body
        );
        assert!(
            deps.body.contains("The last deployment's report"),
            "{}",
            deps.body
        );
        assert!(
            deps.body.contains("<article class=\"report markdown\">"),
            "{}",
            deps.body
        );

        // Federation on a hub without links; verify refused without the CSRF token, and an
        // unknown partner explained.
        let fed = admin.get("/ops/federation").await;
        assert_clean(&fed, "federation");
        assert!(fed.body.contains("No federation links"), "{}", fed.body);
        let csrf = between(&fed.body, "name=\"csrf\" value=\"", "\"")
            .unwrap()
            .to_string();
        let r = admin
            .post("/ops/federation/verify", &[("partner", "FRA")])
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("CSRF"), "{}", r.body);
        let r = admin
            .post(
                "/ops/federation/verify",
                &[("csrf", "wrong"), ("partner", "FRA")],
            )
            .await;
        assert_eq!(r.status, 403, "{}", r.body);
        let r = admin
            .post(
                "/ops/federation/verify",
                &[("csrf", &csrf), ("partner", "FRA")],
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains("The verification could not run") && r.body.contains("FRA"),
            "{}",
            r.body
        );

        // The audit log: the user's denial, filters, the chart, pagination.
        let audit = admin.get("/ops/audit").await;
        assert_clean(&audit, "audit");
        assert!(
            audit.body.contains("decisions-per-minute-title"),
            "{}",
            audit.body
        );
        assert!(
            audit.body.contains("<rect class=\"bar-ok\""),
            "decisions this hour: {}",
            audit.body
        );
        let denied = admin
            .get("/ops/audit?decision=deny&subject=testuser-usa-1%40usa")
            .await;
        assert_clean(&denied, "denied filter");
        assert!(
            denied.body.contains("<option value=\"deny\" selected>"),
            "the filter stays"
        );
        assert!(
            denied.body.contains("class=\"bad\">denied<")
                && !denied.body.contains("class=\"ok\">allowed<"),
            "{}",
            denied.body
        );
        let mine = admin
            .get("/ops/audit?subject=admin-usa%40usa&action=audit.read")
            .await;
        assert_clean(&mine, "audit reads");
        assert!(
            mine.body.contains(">audit.read<") && !mine.body.contains(">search<"),
            "{}",
            mine.body
        );
        let bad = admin.get("/ops/audit?since=yesterday").await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(
            bad.body.contains("from: expected a date and time"),
            "{}",
            bad.body
        );
        let future = admin.get("/ops/audit?since=2100-01-01T00%3A00").await;
        assert_clean(&future, "future");
        assert!(future.body.contains("none match"), "{}", future.body);
        // Key releases, read from the KAS: the deployment's verification decrypted documents.
        let keys = admin.get("/ops/keys").await;
        assert_clean(&keys, "key releases");
        assert!(
            keys.body.contains("class=\"ok\">released<")
                && keys.body.contains("key-releases-per-minute-title"),
            "{}",
            keys.body
        );
        let refused = admin
            .get("/ops/keys?decision=fail&since=2100-01-01T00%3A00")
            .await;
        assert_clean(&refused, "key releases, future");
        assert!(refused.body.contains("none match"), "{}", refused.body);
        let bad = admin.get("/ops/keys?decision=deny").await;
        assert_eq!(bad.status, 400, "{}", bad.body);
        assert!(
            bad.body.contains("decision: expected permit"),
            "{}",
            bad.body
        );
        // More than a page of decisions (each home page is a search), then page 2.
        for _ in 0..45 {
            assert_eq!(admin.get("/").await.status, 200);
        }
        let first = admin.get("/ops/audit?subject=admin-usa%40usa").await;
        assert_clean(&first, "page 1");
        let next = next_link(&first.body).unwrap_or_else(|| panic!("a next page: {}", first.body));
        assert!(
            next.starts_with("/ops/audit?subject=admin-usa%40usa&cursor="),
            "{next}"
        );
        let second = admin.get(&next).await;
        assert_clean(&second, "page 2");
        assert!(second.body.contains("First page"), "{}", second.body);
        let rows = |h: &str| h.matches("<tr class=\"entry\">").count();
        assert_eq!(rows(&first.body), 50, "a full first page");
        assert!(rows(&second.body) > 0, "{}", second.body);
    });
}
