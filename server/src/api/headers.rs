//! The security headers every HTTP answer carries.
//!
//! The dashboard is one page with one inline script and one inline style,
//! so its Content-Security-Policy allows exactly those (by their SHA-256,
//! computed from the page the server serves), requests to its own origin,
//! and nothing else: no other script, no framing, no plugin, no form
//! posting elsewhere. JSON answers get the same headers; a policy that
//! allows nothing more costs them nothing.
//!
//! Served over TLS, every answer also carries `Strict-Transport-Security`
//! ([`add_strict_transport`]); over plain HTTP none does.
//!
//! Invariant: the hashes come from the served page itself, so editing the
//! page can never leave its script blocked or a different script allowed.

use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The dashboard page, as served.
pub(super) const DASHBOARD: &str = include_str!("dashboard.html");

/// The text between the first `<tag>` and its closing tag.
fn inline(page: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = page.find(&open)? + open.len();
    let end = start + page[start..].find(&format!("</{tag}>"))?;
    Some(page[start..end].to_string())
}

/// `'sha256-...'` for a CSP source list.
fn source_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    format!("'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// The Content-Security-Policy of every answer.
pub fn content_security_policy() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        let script = inline(DASHBOARD, "script").map_or("'none'".to_string(), |s| source_hash(&s));
        let style = inline(DASHBOARD, "style").map_or("'none'".to_string(), |s| source_hash(&s));
        format!(
            "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; img-src 'self'; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// Adds the security headers to an answer.
pub(super) async fn add(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(content_security_policy()) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// HSTS for a year: a browser that has seen the port over TLS goes there
/// by HTTPS only, so a mistyped `http://` link never makes the dashboard
/// send its bearer token in clear text. Without `includeSubDomains`: the
/// other hosts under the server's name are not ours to bind.
pub(super) const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// Adds `Strict-Transport-Security` to an answer; the port layers it on
/// its router only when it serves TLS (browsers ignore the header over
/// plain HTTP, and it would promise what that port does not keep).
pub(super) async fn add_strict_transport(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(STRICT_TRANSPORT_SECURITY));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_pages_own_script_and_style_only() {
        let csp = content_security_policy();
        let script = inline(DASHBOARD, "script").expect("the dashboard has its script inline");
        assert!(csp.contains(&format!("script-src {};", source_hash(&script))), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        // One script and one style: a second would be blocked by the policy.
        assert_eq!(DASHBOARD.matches("<script").count(), 1);
        assert_eq!(DASHBOARD.matches("<style").count(), 1);
    }
}
