//! No credential in any log line, at any level, from any crate. Every line
//! the logger writes (the gateway's, Pingora's, the Redis client's) passes
//! through [`redact`] first, which masks:
//!
//! - the value after a credential header name (`Authorization`,
//!   `Proxy-Authorization`, `x-api-key`, `api-key`, `Cookie`, `Set-Cookie`),
//!   in a raw header block (`\r\n` printed escaped or not) and in a
//!   `Debug`-printed header map (`"authorization": "..."`);
//! - `Bearer <token>` and `Basic <token>` anywhere;
//! - the value of query parameters that carry keys (`key=`, `api_key=`,
//!   `token=`, ...), which some clients send in the URL;
//! - anything shaped like a JWT (`eyJ...` in three dotted parts);
//! - every secret the config holds (provider keys, API keys given as `key`,
//!   JWT secrets, header values, the Redis URL and its password), as
//!   written and in their percent-encoded and escaped forms.
//!
//! Pingora, for one, prints the raw request header buffer at debug level
//! when a header fails to parse, and the whole request header at trace.

use std::borrow::Cow;
use std::sync::RwLock;

const MASK: &str = "[REDACTED]";

/// Query parameters clients put credentials in.
const CREDENTIAL_PARAMETERS: [&str; 8] = [
    "key=",
    "api_key=",
    "api-key=",
    "apikey=",
    "token=",
    "access_token=",
    "password=",
    "secret=",
];

const CREDENTIAL_HEADERS: [&str; 6] = [
    "proxy-authorization",
    "authorization",
    "x-api-key",
    "api-key",
    "set-cookie",
    "cookie",
];

/// Secrets from config, in every form they could be printed in.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Adds a configured secret to what every log line is scrubbed of. Short
/// values are skipped: masking every `1` would make logs unreadable and
/// protect nothing.
pub fn register_secret(secret: &str) {
    if secret.len() < 6 {
        return;
    }
    let forms = [
        secret.to_string(),
        percent_encoded(secret),
        secret.escape_debug().to_string(),
        secret.escape_default().to_string(),
    ];
    let mut secrets = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    for form in forms {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The line with every credential masked.
pub fn redact(line: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(line);
    for name in CREDENTIAL_HEADERS {
        if let Some(masked) = mask_header_values(&out, name) {
            out = Cow::Owned(masked);
        }
    }
    for scheme in ["bearer ", "basic "] {
        if let Some(masked) = mask_after(&out, scheme) {
            out = Cow::Owned(masked);
        }
    }
    for parameter in CREDENTIAL_PARAMETERS {
        for separator in ["?", "&"] {
            if let Some(masked) = mask_after(&out, &format!("{separator}{parameter}")) {
                out = Cow::Owned(masked);
            }
        }
    }
    if let Some(masked) = mask_jwts(&out) {
        out = Cow::Owned(masked);
    }
    let secrets = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), MASK));
        }
    }
    out
}

/// Where a value ends: a quote, a line end, or an escape (`\r` printed as
/// two characters).
fn value_end(text: &str, from: usize) -> usize {
    text[from..]
        .find(['"', '\r', '\n', '\\'])
        .map_or(text.len(), |at| from + at)
}

/// The line with each span (in order, not overlapping) replaced by the
/// mask; `None` when there is none.
fn mask_spans(line: &str, spans: &[std::ops::Range<usize>]) -> Option<String> {
    if spans.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(line.len());
    let mut copied = 0;
    for span in spans {
        out.push_str(&line[copied..span.start]);
        out.push_str(MASK);
        copied = span.end;
    }
    out.push_str(&line[copied..]);
    Some(out)
}

/// Masks the value after each `name:` (any case, optional quotes).
fn mask_header_values(line: &str, name: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let bytes = line.as_bytes();
    let mut spans = Vec::new();
    let mut search = 0;
    while let Some(found) = lower[search..].find(name) {
        let mut at = search + found + name.len();
        search = at;
        // `name: value`, `name:value`, `"name": "value"`.
        if bytes.get(at) == Some(&b'"') {
            at += 1;
        }
        while bytes.get(at) == Some(&b' ') {
            at += 1;
        }
        if bytes.get(at) != Some(&b':') {
            continue;
        }
        at += 1;
        while matches!(bytes.get(at), Some(b' ') | Some(b'"')) {
            at += 1;
        }
        let end = value_end(line, at);
        if end > at {
            spans.push(at..end);
            search = end;
        }
    }
    mask_spans(line, &spans)
}

/// Masks the word after each `prefix` (any case): `Bearer <token>`.
fn mask_after(line: &str, prefix: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let mut spans = Vec::new();
    let mut search = 0;
    while let Some(found) = lower[search..].find(prefix) {
        let at = search + found + prefix.len();
        let end = line[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\\' | ',' | ';' | ')' | '&'))
            .map_or(line.len(), |e| at + e);
        search = end.max(at);
        if end > at && !line[at..end].starts_with(MASK) {
            spans.push(at..end);
        }
    }
    mask_spans(line, &spans)
}

/// Masks anything shaped like a compact JWT: `eyJ` base64url, a dot,
/// base64url, a dot, and an optional signature.
fn mask_jwts(line: &str) -> Option<String> {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=';
    let mut spans = Vec::new();
    let mut search = 0;
    while let Some(found) = line[search..].find("eyJ") {
        let start = search + found;
        let mut end = start;
        let mut dots = 0;
        for (i, c) in line[start..].char_indices() {
            if is_b64(c) {
                end = start + i + c.len_utf8();
            } else if c == '.' && dots < 2 {
                dots += 1;
                end = start + i + 1;
            } else {
                break;
            }
        }
        search = end.max(start + 3);
        if dots == 2 {
            spans.push(start..end);
        }
    }
    mask_spans(line, &spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_in_every_spelling() {
        let raw = r#"Fail to proxy: Downstream InvalidHTTPHeader context: buf: POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-live-123\r\nX-Api-Key:sk-other-456\r\n\r\n"#;
        let out = redact(raw);
        assert!(!out.contains("sk-live-123"), "{out}");
        assert!(!out.contains("sk-other-456"), "{out}");
        assert!(out.contains("Host: x"), "{out}");
        let debug = r#"headers: {"authorization": "Bearer abc.def", "api-key": "k-789xyz", "accept": "*/*"}"#;
        let out = redact(debug);
        assert!(
            !out.contains("abc.def") && !out.contains("k-789xyz"),
            "{out}"
        );
        assert!(out.contains(r#""accept": "*/*""#), "{out}");
    }

    #[test]
    fn bearer_tokens_and_jwts_anywhere() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl";
        let line = format!("token={jwt} and bearer opaque-token-1 end");
        let out = redact(&line);
        assert!(
            !out.contains(jwt) && !out.contains("opaque-token-1"),
            "{out}"
        );
        assert!(out.ends_with(" end"), "{out}");
        assert_eq!(redact("nothing to see"), "nothing to see");
        let out = redact("uri: /v1/x?model=m&api_key=sk-q-1&b=2, version");
        assert_eq!(out, "uri: /v1/x?model=m&api_key=[REDACTED]&b=2, version");
    }

    #[test]
    fn configured_secrets_in_their_encoded_forms() {
        register_secret("s3cr3t/with+chars");
        for line in [
            "url redis://:s3cr3t/with+chars@h",
            "q=s3cr3t%2Fwith%2Bchars",
            "a short one: 1234",
        ] {
            let out = redact(line);
            assert!(!out.contains("s3cr3t"), "{out}");
        }
        assert_eq!(redact("a short one: 1234"), "a short one: 1234");
    }
}
