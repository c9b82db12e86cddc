//! The gateway's own error responses, in the client's dialect: OpenAI's
//! `{"error":{"message":"...","type":"...","code":"...","param":...}}`, or
//! Anthropic's `{"type":"error","error":{"type":"...","message":"..."}}`
//! for clients of `/v1/messages`.

use serde::Serialize;

use crate::llm::translate::{self, ErrorKind};
use crate::llm::Dialect;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// `WWW-Authenticate` challenge, for 401s.
    pub challenge: Option<&'static str>,
    /// The request parameter at fault, when there is one.
    pub param: Option<Box<str>>,
    /// Further headers (`Retry-After`, `x-ratelimit-*` on 429s).
    pub extra_headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: u16,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            challenge: None,
            param: None,
            extra_headers: Vec::new(),
        }
    }

    pub fn invalid_request(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, "invalid_request_error", code, message)
    }

    pub fn unknown_path(method: &str, path: &str) -> Self {
        Self::invalid_request(
            404,
            "unknown_url",
            format!("Invalid URL ({method} {})", truncate(path, 200)),
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::invalid_request(
            404,
            "model_not_found",
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::invalid_request(
            413,
            "request_too_large",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    pub fn no_healthy_backend(route: &str) -> Self {
        Self::new(
            503,
            "server_error",
            "no_healthy_upstream",
            format!("No healthy upstream is available for route `{route}`."),
        )
    }

    pub fn bad_gateway(detail: &str) -> Self {
        Self::new(
            502,
            "server_error",
            "upstream_error",
            format!("The upstream failed: {detail}."),
        )
    }

    pub fn gateway_timeout() -> Self {
        Self::new(
            504,
            "server_error",
            "upstream_timeout",
            "The upstream did not answer in time.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            500,
            "server_error",
            "internal_error",
            "The gateway failed to handle the request.",
        )
    }

    pub fn body(&self) -> Vec<u8> {
        self.body_for(Dialect::OpenAi)
    }

    /// The body in a client dialect's shape.
    pub fn body_for(&self, dialect: Dialect) -> Vec<u8> {
        match dialect {
            Dialect::OpenAi => {
                let envelope = Envelope {
                    error: Inner {
                        message: &self.message,
                        kind: self.kind,
                        code: self.code,
                        param: self.param.as_deref(),
                    },
                };
                // Serializing plain strings cannot fail; keep a fallback anyway.
                serde_json::to_vec(&envelope).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
            }
            Dialect::Anthropic => {
                translate::error_body(dialect, ErrorKind::of_status(self.status), &self.message)
            }
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped() {
        let body = ApiError::model_not_found("x\"y").body();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(
            v["error"]["message"],
            "The model `x\"y` does not exist or you do not have access to it."
        );
    }

    #[test]
    fn anthropic_clients_get_anthropic_shapes() {
        for (error, kind) in [
            (ApiError::model_not_found("m"), "not_found_error"),
            (ApiError::gateway_timeout(), "api_error"),
            (ApiError::no_healthy_backend("r"), "overloaded_error"),
            (ApiError::body_too_large(1), "request_too_large"),
        ] {
            let v: serde_json::Value =
                serde_json::from_slice(&error.body_for(Dialect::Anthropic)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{error:?}");
            assert_eq!(v["error"]["message"], error.message.as_str());
        }
    }

    #[test]
    fn long_paths_are_cut() {
        let e = ApiError::unknown_path("GET", &"é".repeat(300));
        assert!(e.message.len() < 230);
    }
}
