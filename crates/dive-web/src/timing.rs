//! `Server-Timing: app;dur=<ms>` on every response: the time the UI spent on the request (its
//! calls to the IdP, API and KAS included, the network to the browser excluded), readable in a
//! browser's developer tools and by `dive bench web`.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub async fn server_timing(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let mut resp = next.run(req).await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.2}")) {
        resp.headers_mut().insert("server-timing", v);
    }
    resp
}
