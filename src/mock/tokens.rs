//! The token endpoints of the clouds, as strict as theirs: Microsoft
//! Entra ID's client-credentials exchange of a federated assertion
//! (`POST /{tenant}/oauth2/v2.0/token`), Google's JWT-bearer grant of a
//! service account's signed assertion (`POST /token`, the signature checked
//! against the account's public key), and the GCE/GKE metadata server's
//! token (`GET /computeMetadata/v1/instance/service-accounts/default/token`,
//! which demands `Metadata-Flavor: Google`).

use http::{Response, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::json;

use super::responses::{full, Body};
use super::state::MockState;

/// The route this module serves, if `path` is one of its.
pub fn handle(
    state: &MockState,
    parts: &http::request::Parts,
    body: &[u8],
) -> Option<Response<Body>> {
    let path = parts.uri.path();
    let answer = if path == "/computeMetadata/v1/instance/service-accounts/default/token" {
        metadata(state, parts)
    } else if path == "/token" && parts.method == http::Method::POST {
        google(state, parts, body)
    } else if path.ends_with("/oauth2/v2.0/token") && parts.method == http::Method::POST {
        entra(state, parts, body)
    } else {
        return None;
    };
    Some(answer)
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn is_form(parts: &http::request::Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    full(
        status,
        "application/json",
        json!({"error": error, "error_description": description}).to_string(),
    )
}

fn token(state: &MockState, kind: &'static str) -> Response<Body> {
    let (token, ttl) = state.cloud.issue(kind);
    full(
        StatusCode::OK,
        "application/json",
        json!({"token_type": "Bearer", "expires_in": ttl, "access_token": token}).to_string(),
    )
}

fn down(state: &MockState) -> Option<Response<Body>> {
    state
        .cloud
        .tokens_down
        .load(std::sync::atomic::Ordering::Relaxed)
        .then(|| {
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "mock: down",
            )
        })
}

fn entra(state: &MockState, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
    if let Some(down) = down(state) {
        return down;
    }
    if !is_form(parts) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: the request body must be a form",
        );
    }
    let form = form(body);
    let assertion = field(&form, "client_assertion").unwrap_or("");
    let checks = [
        (
            field(&form, "grant_type") == Some("client_credentials"),
            "AADSTS70003: unsupported grant_type",
        ),
        (
            field(&form, "client_assertion_type")
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            "AADSTS700024: unsupported client_assertion_type",
        ),
        (
            assertion.split('.').count() == 3,
            "AADSTS50027: the client assertion is not a JWT",
        ),
        (
            field(&form, "client_id").is_some_and(|id| !id.is_empty()),
            "AADSTS900144: client_id is missing",
        ),
        (
            field(&form, "scope").is_some_and(|s| s.ends_with("/.default")),
            "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
        ),
        (
            field(&form, "client_secret").is_none(),
            "AADSTS7000218: a secret and an assertion",
        ),
    ];
    if let Some((_, why)) = checks.iter().find(|(ok, _)| !ok) {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why);
    }
    token(state, "entra")
}

#[derive(Deserialize)]
struct Assertion {
    scope: String,
    aud: String,
    iat: u64,
    exp: u64,
}

fn google(state: &MockState, parts: &http::request::Parts, body: &[u8]) -> Response<Body> {
    if let Some(down) = down(state) {
        return down;
    }
    let Some(account) = &state.cloud.google else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "mock: no service account configured",
        );
    };
    let form = form(body);
    if !is_form(parts)
        || field(&form, "grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type.",
        );
    }
    let assertion = field(&form, "assertion").unwrap_or("");
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid JWT.");
    };
    if header.alg != Algorithm::RS256 || header.kid.as_deref() != Some(account.key_id.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT Signature.",
        );
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.set_issuer(&[&account.email]);
    let claims = match jsonwebtoken::decode::<Assertion>(
        assertion,
        &account.public_key,
        &validation,
    ) {
        Ok(data) => data.claims,
        Err(e) => {
            let why = match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
                }
                _ => "Invalid JWT Signature.",
            };
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
        }
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let lifetime_ok = claims.exp > claims.iat && claims.exp - claims.iat <= 3600;
    let fresh = claims.iat <= now + 300 && claims.iat + 300 >= now.saturating_sub(3600);
    if !lifetime_ok || !fresh {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.",
        );
    }
    let audience_ok = claims.aud == "https://oauth2.googleapis.com/token"
        || claims.aud == format!("http://{host}/token");
    if !audience_ok
        || !claims
            .scope
            .split(' ')
            .any(|s| s == "https://www.googleapis.com/auth/cloud-platform")
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "Invalid audience or scope.",
        );
    }
    token(state, "google")
}

fn metadata(state: &MockState, parts: &http::request::Parts) -> Response<Body> {
    let flavor = parts
        .headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok());
    if flavor != Some("Google") {
        return full(
            StatusCode::FORBIDDEN,
            "text/plain",
            "Missing Metadata-Flavor:Google header.",
        );
    }
    if let Some(down) = down(state) {
        return down;
    }
    let mut answer = token(state, "metadata");
    answer
        .headers_mut()
        .insert("metadata-flavor", http::HeaderValue::from_static("Google"));
    answer
}
