//! The gateway's own error answers. Every one is an [`ErrorCode`], which
//! fixes its status, its kind and its machine-readable `code`; the body is
//! written by the client dialect's one error renderer
//! (`llm::translate::error_body`), so a client of `/v1/messages` gets
//! Anthropic's envelope and everyone else OpenAI's.

use crate::llm::translate::{self, ErrorBody, ErrorKind, TranslateError};
use crate::llm::{BodyError, ClientDialect, Dialect};

/// Declares [`ErrorCode`] from one table: each error's variant, its `code`,
/// its status and its kind.
macro_rules! error_codes {
    ($($(#[$meta:meta])* $variant:ident = ($code:literal, $status:literal, $kind:ident),)+) => {
        /// Every error the gateway answers itself.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $($(#[$meta])* $variant,)+
        }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The HTTP status the error is answered with.
            pub fn status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)+
                }
            }

            /// What went wrong, in the terms every dialect's envelope has a
            /// type for.
            pub fn kind(self) -> ErrorKind {
                match self {
                    $(ErrorCode::$variant => ErrorKind::$kind,)+
                }
            }

            /// The stable `code` of the error body.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }
        }
    };
}

error_codes! {
    // The request itself.
    InvalidPath = ("invalid_path", 400, InvalidRequest),
    AmbiguousFraming = ("ambiguous_framing", 400, InvalidRequest),
    InvalidContentLength = ("invalid_request", 400, InvalidRequest),
    MalformedBody = ("malformed_body", 400, InvalidRequest),
    MalformedRequest = ("malformed_request", 400, InvalidRequest),
    BadRequest = ("bad_request", 400, InvalidRequest),
    InvalidJson = ("invalid_json", 400, InvalidRequest),
    MissingModel = ("missing_model", 400, InvalidRequest),
    InvalidModel = ("invalid_model", 400, InvalidRequest),
    UnsupportedParameter = ("unsupported_parameter", 400, InvalidRequest),
    InvalidParameter = ("invalid_parameter", 400, InvalidRequest),
    UnknownParameter = ("unknown_parameter", 400, InvalidRequest),
    UnknownUrl = ("unknown_url", 404, NotFound),
    NotTranslated = ("unsupported_endpoint", 404, NotFound),
    MethodNotAllowed = ("method_not_allowed", 405, InvalidRequest),
    RequestTimeout = ("request_timeout", 408, InvalidRequest),
    LengthRequired = ("length_required", 411, InvalidRequest),
    RequestTooLarge = ("request_too_large", 413, TooLarge),
    HeaderFieldsTooLarge = ("header_fields_too_large", 431, InvalidRequest),
    // The caller.
    MissingCredentials = ("missing_credentials", 401, Authentication),
    InvalidCredentials = ("invalid_credentials", 401, Authentication),
    InvalidAdminToken = ("invalid_admin_token", 401, Authentication),
    ModelNotAllowed = ("model_not_allowed", 403, Permission),
    InsufficientScope = ("insufficient_scope", 403, Permission),
    ModelNotFound = ("model_not_found", 404, NotFound),
    UnknownRule = ("unknown_rule", 404, NotFound),
    // Limits.
    RateLimitExceeded = ("rate_limit_exceeded", 429, RateLimit),
    BudgetExceeded = ("budget_exceeded", 429, RateLimit),
    RateLimitUnavailable = ("rate_limit_unavailable", 503, Overloaded),
    SpendUnavailable = ("spend_unavailable", 503, Overloaded),
    // Upstreams and the gateway.
    NoHealthyUpstream = ("no_healthy_upstream", 503, Overloaded),
    UpstreamCredentials = ("upstream_credentials_unavailable", 503, Overloaded),
    UpstreamError = ("upstream_error", 502, Server),
    UpstreamTimeout = ("upstream_timeout", 504, Server),
    Internal = ("internal_error", 500, Server),
}

impl From<&BodyError> for ErrorCode {
    fn from(e: &BodyError) -> Self {
        match e {
            BodyError::InvalidJson(_) | BodyError::NotAnObject => ErrorCode::InvalidJson,
            BodyError::MissingModel => ErrorCode::MissingModel,
            BodyError::ModelNotAString | BodyError::ModelTooLong => ErrorCode::InvalidModel,
        }
    }
}

impl From<&TranslateError> for ErrorCode {
    fn from(e: &TranslateError) -> Self {
        match e {
            TranslateError::Unsupported { .. } => ErrorCode::UnsupportedParameter,
            TranslateError::Invalid { .. } => ErrorCode::InvalidParameter,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    /// The code's status; an upstream's own for a failure passed on.
    pub status: u16,
    pub message: String,
    /// `WWW-Authenticate` challenge, for 401s.
    pub challenge: Option<&'static str>,
    /// The request parameter at fault, when there is one.
    pub param: Option<Box<str>>,
    /// Further headers (`Retry-After`, `x-ratelimit-*` on 429s).
    pub extra_headers: Vec<(&'static str, String)>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status: code.status(),
            message: message.into(),
            challenge: None,
            param: None,
            extra_headers: Vec::new(),
        }
    }

    /// A body the gateway could not use, as the client's 400.
    pub fn of_body(e: &BodyError) -> Self {
        Self::new(e.into(), e.to_string())
    }

    /// A request that cannot be translated for the target, naming the parameter.
    pub fn of_translation(e: &TranslateError) -> Self {
        let mut error = Self::new(e.into(), e.to_string());
        error.param = Some(e.param().into());
        error
    }

    /// `path` is not chat, and `model`'s pool speaks `upstream`.
    pub fn not_translated(path: &str, model: &str, upstream: Dialect) -> Self {
        Self::new(
            ErrorCode::NotTranslated,
            format!(
                "`{path}` is not served for `{model}`: its provider speaks the {} API, and only chat requests are translated between APIs.",
                upstream.as_str()
            ),
        )
    }

    pub fn unknown_path(method: &str, path: &str) -> Self {
        Self::new(
            ErrorCode::UnknownUrl,
            format!("Invalid URL ({method} {})", truncate(path, 200)),
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            ErrorCode::ModelNotFound,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            ErrorCode::RequestTooLarge,
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    pub fn no_healthy_backend(route: &str) -> Self {
        Self::new(
            ErrorCode::NoHealthyUpstream,
            format!("No healthy upstream is available for route `{route}`."),
        )
    }

    pub fn bad_gateway(detail: &str) -> Self {
        Self::new(
            ErrorCode::UpstreamError,
            format!("The upstream failed: {detail}."),
        )
    }

    /// An upstream's failure status, passed on to the client.
    pub fn upstream_status(status: u16) -> Self {
        let mut error = Self::new(ErrorCode::UpstreamError, "The upstream failed.");
        error.status = status;
        error
    }

    pub fn gateway_timeout() -> Self {
        Self::new(
            ErrorCode::UpstreamTimeout,
            "The upstream did not answer in time.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            ErrorCode::Internal,
            "The gateway failed to handle the request.",
        )
    }

    /// The body in OpenAI's shape (the admin port, and clients of every
    /// path but the Messages API).
    pub fn body(&self) -> Vec<u8> {
        self.body_for(ClientDialect::OpenAi)
    }

    /// The body in a client dialect's shape.
    pub fn body_for(&self, dialect: ClientDialect) -> Vec<u8> {
        translate::error_body(
            dialect,
            &ErrorBody {
                kind: self.code.kind(),
                message: &self.message,
                code: Some(self.code.as_str()),
                param: self.param.as_deref(),
            },
        )
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
        assert_eq!(v["error"]["param"], serde_json::Value::Null);
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
                serde_json::from_slice(&error.body_for(ClientDialect::Anthropic)).unwrap();
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{error:?}");
            assert_eq!(v["error"]["message"], error.message.as_str());
        }
    }

    /// Each code's kind agrees with its status, as every client reads them.
    #[test]
    fn kinds_agree_with_statuses() {
        for &code in ErrorCode::ALL {
            assert_eq!(code.kind(), ErrorKind::of_status(code.status()), "{code:?}");
            assert!(!code.as_str().is_empty());
        }
    }

    #[test]
    fn long_paths_are_cut() {
        let e = ApiError::unknown_path("GET", &"é".repeat(300));
        assert!(e.message.len() < 230);
    }
}
