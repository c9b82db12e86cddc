//! Admission: everything decided about a request before an upstream is
//! picked, in one place and in this order: the header limits, the route by
//! path, the caller (before any body is read, so an anonymous client cannot
//! make the gateway buffer megabytes), the body and the route by model, the
//! caller's rights to the model and the route, the body sent upstream, and
//! the limits. The result is one [`Admitted`] value or one answer.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use pingora::proxy::Session;

use super::body;

use super::context::{Admitted, ModelRequest, Refusal};
use crate::auth::{ClientCertificate, Failure, Identity};
use crate::config::AuthMethod;
use crate::error::{ApiError, ErrorCode};
use crate::limits::{Admission, Charge, Limiter, Refused, RequestFacts};
use crate::llm::{self, translate, ClientDialect, Dialect, Usage};
use crate::observability::metrics::metrics;
use crate::routing::{PathMatch, RouteEntry};
use crate::state::GatewayState;

/// What the request's head must be before anything else: within the
/// header limits, and a path that normalizes (rewritten in place).
pub fn check_head(state: &GatewayState, session: &mut Session) -> Result<(), ApiError> {
    header_limits(state, session)?;
    super::path::apply(session).map_err(|e| ApiError::new(ErrorCode::InvalidPath, e.to_string()))
}

/// 400 for ambiguous framing, 431 for requests over the configured header
/// count or size.
fn header_limits(state: &GatewayState, session: &Session) -> Result<(), ApiError> {
    let headers = &session.req_header().headers;
    // RFC 9112 6.1: a request with both is a smuggling attempt or a broken
    // client; answer and close rather than guess which framing is meant.
    // Pingora drops Content-Length when Transfer-Encoding is present, so
    // look at the raw header block (only for the rare chunked request).
    if headers.contains_key(http::header::TRANSFER_ENCODING) && raw_has_content_length(session) {
        return Err(ApiError::new(
            ErrorCode::AmbiguousFraming,
            "A request may not carry both Content-Length and Transfer-Encoding.",
        ));
    }
    let size: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let limits = &state.request;
    if headers.len() > limits.max_headers || size > limits.max_header_bytes {
        return Err(ApiError::new(
            ErrorCode::HeaderFieldsTooLarge,
            format!(
                "The request headers exceed the limits ({} headers, {} bytes).",
                limits.max_headers, limits.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// Decides whether the request goes upstream, and with what. `dialect` is
/// the client's; `client_ip` the client's address (see `client.rs`).
pub async fn admit(
    state: &GatewayState,
    session: &mut Session,
    dialect: ClientDialect,
    client_ip: Option<IpAddr>,
) -> Result<Admitted, Refusal> {
    let path = session.req_header().uri.path().to_string();
    let (first, by_model) = match state.routes.match_path(&path) {
        PathMatch::None => {
            let method = session.req_header().method.as_str();
            return Err(ApiError::unknown_path(method, &path).into());
        }
        PathMatch::Direct(route) => (route.clone(), false),
        PathMatch::ByModel(route) => (route.clone(), true),
    };
    let identity = authenticate(state, session, &first.auth).await?;
    if !by_model {
        authorize_route(&first, identity.as_deref())?;
        return charge_limits(state, client_ip, first, identity, None, dialect).await;
    }
    let body = body::read_body(session, state.request.max_body_bytes).await?;
    let inspected = llm::inspect(&body).map_err(|e| ApiError::of_body(&e))?;
    let route = state
        .routes
        .match_model(&path, &inspected.model)
        .cloned()
        .ok_or_else(|| ApiError::model_not_found(&inspected.model))?;
    // The model's route may take other credentials than the path's first.
    let identity = if route.auth == first.auth {
        identity
    } else {
        authenticate(state, session, &route.auth).await?
    };
    authorize_route(&route, identity.as_deref())?;
    if identity
        .as_ref()
        .is_some_and(|id| !id.may_use(&inspected.model))
    {
        return Err(refuse(Failure::ForbiddenModel, Some(&inspected.model)).into());
    }
    let headers = &session.req_header().headers;
    if let Some(estimate) = estimate_tokens(&route, &path, &body) {
        return Err(Refusal::Estimated {
            body: estimate,
            route: route.label,
        });
    }
    let model_request = prepare(&route, &path, headers, body, inspected, dialect)?;
    charge_limits(
        state,
        client_ip,
        route,
        identity,
        Some(model_request),
        dialect,
    )
    .await
}

/// Anthropic's token count (`POST /v1/messages/count_tokens`, which Claude
/// Code calls) for a model whose pool speaks another API, which has no
/// such endpoint: answered by the gateway with its own estimate, the one
/// its token reservations use (a quarter of the request's bytes), as
/// `{"input_tokens": n}` with `x-gateway-estimate: true`. `None` for every
/// other request, and for pools that count themselves.
fn estimate_tokens(route: &RouteEntry, path: &str, body: &[u8]) -> Option<Vec<u8>> {
    let counts_itself = route.pool.dialects().contains(&Dialect::Anthropic);
    if path != COUNT_TOKENS_PATH || counts_itself {
        return None;
    }
    let estimate = body.len().div_ceil(4).max(1);
    Some(format!("{{\"input_tokens\":{estimate}}}").into_bytes())
}

/// Anthropic's token-count endpoint.
const COUNT_TOKENS_PATH: &str = "/v1/messages/count_tokens";

/// Admits the request to the fallback `model`, as it was admitted itself:
/// a route serves the model on the client's path, the caller passes that
/// route's credentials and scopes and may use the model, the body
/// translates for its pool, and its limit rules accept a reservation. What
/// `current` was charged is given back first (a concurrency slot or a last
/// request held by the spent model must not refuse its own fallback), so
/// the model that answers is the one charged. The error says why the
/// fallback was skipped.
pub async fn admit_fallback(
    state: &GatewayState,
    session: &Session,
    dialect: ClientDialect,
    client_ip: Option<IpAddr>,
    current: &mut Admitted,
    model: &str,
) -> Result<Admitted, String> {
    let path = session.req_header().uri.path();
    let route = state
        .routes
        .match_model(path, model)
        .cloned()
        .ok_or("no route serves it on this path")?;
    let identity = if route.auth == current.route.auth {
        current.identity.clone()
    } else {
        // Quietly: a caller without the fallback's credentials is not an
        // authentication failure of the request.
        state
            .auth
            .authenticate(
                &session.req_header().headers,
                client_certificate(session),
                &route.auth,
            )
            .await
            .map_err(|failure| format!("the caller lacks its credentials ({})", failure.reason()))?
    };
    authorize_route(&route, identity.as_deref())
        .map_err(|_| "the caller lacks the scopes of its route".to_string())?;
    if identity.as_deref().is_some_and(|id| !id.may_use(model)) {
        return Err("the caller may not use it".into());
    }
    let client_body = &current
        .model_request
        .as_ref()
        .ok_or("not a model request")?
        .client_body;
    let body =
        Bytes::from(llm::rewrite(client_body, Some(model), false).map_err(|e| e.to_string())?);
    let inspected = llm::inspect(&body).map_err(|e| e.to_string())?;
    let headers = &session.req_header().headers;
    let model_request = prepare(&route, path, headers, body, inspected, dialect)
        .map_err(|e| format!("its provider cannot take the request: {}", e.message))?;
    if let Some((limiter, admission)) = current.limits.take() {
        limiter.release(admission).await;
    }
    let limits = reserve(
        state,
        client_ip,
        &route,
        identity.as_deref(),
        Some(&model_request),
    )
    .await
    .map_err(|refused| format!("limit `{}` refused it", refused.rule))?;
    Ok(Admitted {
        route,
        identity,
        model_request: Some(model_request),
        limits,
    })
}

/// What goes upstream, for each dialect the route's pool speaks: in the
/// client's own dialect its body with the alias rewritten and, for streams
/// from OpenAI-style pools that did not ask for usage, usage asked for (the
/// extra chunk is cut out on the way back); in the other dialect a
/// translation, refused with 400 when the target cannot honour it. Only
/// chat requests translate: another endpoint (embeddings, token counts)
/// of a pool that speaks another dialect is refused with 404.
fn prepare(
    route: &RouteEntry,
    path: &str,
    headers: &http::HeaderMap,
    body: Bytes,
    inspected: llm::Inspected,
    client: ClientDialect,
) -> Result<ModelRequest, ApiError> {
    let chat = ClientDialect::of_path(path) == Some(client);
    if let Some(other) = route
        .pool
        .dialects()
        .iter()
        .find(|d| **d != client && !chat)
    {
        return Err(ApiError::not_translated(path, &inspected.model, *other));
    }
    let new_model = route.upstream_model(&inspected.model);
    let cap = route
        .pool
        .max_output_tokens(new_model.unwrap_or(&inspected.model));
    let (body, inspected) = match (cap, inspected.max_tokens) {
        (Some(cap), Some(asked)) if asked > cap => {
            let capped = Bytes::from(llm::cap_max_tokens(&body, cap).map_err(body_error)?);
            let inspected = llm::Inspected {
                max_tokens: Some(cap),
                ..inspected
            };
            (capped, inspected)
        }
        _ => (body, inspected),
    };
    let mut bodies: [Option<Bytes>; Dialect::COUNT] = Default::default();
    let mut dropped: [llm::Dropped; Dialect::COUNT] = Default::default();
    let mut strip_usage_event = false;
    for &dialect in route.pool.dialects() {
        let prepared = if dialect == client {
            let add_include_usage =
                client == ClientDialect::OpenAi && inspected.stream && !inspected.include_usage;
            strip_usage_event |= add_include_usage;
            if new_model.is_some() || add_include_usage {
                Bytes::from(llm::rewrite(&body, new_model, add_include_usage).map_err(body_error)?)
            } else {
                body.clone()
            }
        } else {
            let source = match new_model {
                Some(model) => {
                    Bytes::from(llm::rewrite(&body, Some(model), false).map_err(body_error)?)
                }
                None => body.clone(),
            };
            let options = translate::Options {
                drop_unsupported: route.drop_unsupported_params,
                default_max_tokens: cap.map_or(route.default_max_tokens, |cap| {
                    cap.min(route.default_max_tokens)
                }),
                max_output_tokens: cap,
            };
            let translated = translate::request(client, dialect, &source, &options)
                .map_err(|e| ApiError::of_translation(&e))?;
            let mut hints = translated.dropped;
            if headers.contains_key("anthropic-beta") && client == ClientDialect::Anthropic {
                // Betas of Anthropic's API; a translated request goes
                // without them (`own_headers`).
                hints.add(llm::Hint::AnthropicBeta);
            }
            dropped[dialect.index()] = hints;
            Bytes::from(translated.body)
        };
        bodies[dialect.index()] = Some(prepared);
    }
    Ok(ModelRequest {
        model_label: route.model_label(&inspected.model),
        model: inspected.model,
        stream: inspected.stream,
        max_tokens: inspected.max_tokens,
        include_usage: inspected.include_usage,
        bodies,
        dropped,
        strip_usage_event,
        client_body: body,
    })
}

fn body_error(e: llm::BodyError) -> ApiError {
    ApiError::of_body(&e)
}

/// Charges the route's, the caller's and the global limit rules.
async fn charge_limits(
    state: &GatewayState,
    client_ip: Option<IpAddr>,
    route: Arc<RouteEntry>,
    identity: Option<Arc<Identity>>,
    model_request: Option<ModelRequest>,
    dialect: ClientDialect,
) -> Result<Admitted, Refusal> {
    match reserve(
        state,
        client_ip,
        &route,
        identity.as_deref(),
        model_request.as_ref(),
    )
    .await
    {
        Ok(limits) => Ok(Admitted {
            route,
            identity,
            model_request,
            limits,
        }),
        Err(refused) => Err(Refusal::Answer {
            error: super::limiting::refusal_error(&refused, dialect),
            route: Some(route.label),
        }),
    }
}

/// Reserves what the request may use under every rule that applies to it:
/// one request, and for a model request its prompt size / 4 plus the most
/// its answer may take. `None` when no rule applies.
async fn reserve(
    state: &GatewayState,
    client_ip: Option<IpAddr>,
    route: &RouteEntry,
    identity: Option<&Identity>,
    model_request: Option<&ModelRequest>,
) -> Result<Option<(Arc<Limiter>, Admission)>, Refused> {
    let limiter = &state.limiter;
    let caller_limits = identity.iter().flat_map(|i| i.limits.iter());
    let rules = limiter.rules_for(route.limits.iter().chain(caller_limits));
    if rules.is_empty() {
        return Ok(None);
    }
    let facts = RequestFacts {
        api_key: identity
            .filter(|i| i.method == AuthMethod::ApiKey)
            .map(|i| i.id.as_str()),
        subject: identity
            .filter(|i| matches!(i.method, AuthMethod::Jwt | AuthMethod::ClientCert))
            .map(|i| i.id.as_str()),
        team: identity.and_then(|i| i.team.as_deref()),
        model: model_request.map(|m| m.model.as_str()),
        route: &route.name,
        client_ip,
    };
    let reservation = model_request.map_or(Charge::default(), |m| {
        let worst_case = Usage {
            input: (m.client_body.len() as u64).div_ceil(4),
            output: m.max_tokens.unwrap_or(route.default_max_tokens),
            // The worst case: nothing comes from the prompt cache.
            ..Usage::default()
        };
        Charge {
            input_tokens: worst_case.input,
            output_tokens: worst_case.output,
            cost_micro_usd: state
                .pricing
                .cost_nano_usd(&m.model, worst_case)
                .map_or(0, llm::micro_usd),
        }
    });
    let admission = limiter.admit(&rules, &facts, reservation).await?;
    Ok(Some((limiter.clone(), admission)))
}

/// Checks the request's credentials against `methods`; a failure is counted
/// and becomes the client's answer.
async fn authenticate(
    state: &GatewayState,
    session: &Session,
    methods: &[AuthMethod],
) -> Result<Option<Arc<Identity>>, ApiError> {
    let headers = &session.req_header().headers;
    state
        .auth
        .authenticate(headers, client_certificate(session), methods)
        .await
        .map_err(|failure| refuse(failure, None))
}

/// The verified client certificate of the request's connection (mTLS).
fn client_certificate(session: &Session) -> Option<&ClientCertificate> {
    let tls = session.digest()?.ssl_digest.as_ref()?;
    tls.extension.get::<ClientCertificate>()
}

/// The caller holds every scope the route requires.
fn authorize_route(route: &RouteEntry, identity: Option<&Identity>) -> Result<(), ApiError> {
    match identity {
        Some(id) if !id.has_scopes(&route.scopes) => Err(refuse(Failure::InsufficientScope, None)),
        _ => Ok(()),
    }
}

/// Counts an authentication or authorization failure; returns its answer.
fn refuse(failure: Failure, model: Option<&str>) -> ApiError {
    metrics()
        .auth_failures
        .with_label_values(&[failure.reason()])
        .inc();
    failure.to_api_error(model)
}

fn raw_has_content_length(session: &Session) -> bool {
    let Some(h1) = session.as_downstream().as_http1() else {
        return session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH);
    };
    h1.get_headers_raw_bytes()
        .split(|&b| b == b'\n')
        .any(|line| {
            line.len() >= 15
                && line[..14].eq_ignore_ascii_case(b"content-length")
                && line[14..].iter().find(|b| !b.is_ascii_whitespace()) == Some(&b':')
        })
}

/// Admission without a socket: each request is a Pingora session over a
/// scripted stream, the state is built from config text.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    const CONFIG: &str = r#"
auth:
  api_keys:
    - {id: alice, key: sk-alice, models: ["gpt-*", "claude-*"], limits: [two-a-day]}
    - {id: bob, key: sk-bob, models: ["gpt-*"]}
limits:
  rules:
    - {name: two-a-day, key: [api_key], counts: requests, limit: 2, window: day}
upstreams:
  openai: {backends: [{base_url: "http://127.0.0.1:9", provider: openai}]}
  anthropic: {backends: [{base_url: "http://127.0.0.1:9", provider: anthropic}]}
routes:
  - name: gpt
    paths: [/v1/chat/completions]
    models: ["gpt-*"]
    upstream: openai
    model_aliases: {gpt-alias: gpt-real}
  - {name: claude, paths: [/v1/messages], models: ["claude-*"], upstream: anthropic}
"#;

    fn state() -> GatewayState {
        let settings = crate::settings::load_str(CONFIG, "test.yaml", |_| None).unwrap();
        GatewayState::new(&settings, None).unwrap()
    }

    /// A session that has read the head of `path` with `key` and `body`.
    async fn session(path: &str, key: Option<&str>, body: &str) -> Session {
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: gw\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let io = tokio_test::io::Builder::new()
            .read(request.as_bytes())
            .build();
        let mut session = Session::new_h1(Box::new(io));
        assert!(session.read_request().await.unwrap());
        session
    }

    async fn admit_on(
        state: &GatewayState,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> Result<Admitted, Refusal> {
        let mut session = session(path, key, body).await;
        let dialect = ClientDialect::of_api_path(path);
        admit(state, &mut session, dialect, None).await
    }

    fn refused(result: Result<Admitted, Refusal>) -> ApiError {
        match result {
            Err(Refusal::Answer { error, .. }) => error,
            Err(Refusal::ClientGone(e)) => panic!("client gone: {e}"),
            Err(Refusal::Estimated { .. }) => panic!("answered with an estimate"),
            Ok(admitted) => panic!("admitted on route {}", admitted.route.name),
        }
    }

    const CHAT: &str = r#"{"model":"gpt-alias","messages":[{"role":"user","content":"hi"}]}"#;

    #[tokio::test]
    async fn an_alias_is_rewritten_for_the_pool_and_the_other_dialect_translated() {
        let state = state();
        let admitted = admit_on(&state, "/v1/chat/completions", Some("sk-alice"), CHAT)
            .await
            .unwrap_or_else(|r| panic!("{:?}", refused(Err(r))));
        assert_eq!(admitted.route.name, "gpt");
        let request = admitted.model_request.as_ref().unwrap();
        assert_eq!(request.model, "gpt-alias");
        let upstream: serde_json::Value =
            serde_json::from_slice(request.body_for(Dialect::OpenAi).unwrap()).unwrap();
        assert_eq!(upstream["model"], "gpt-real");
        assert!(admitted.limits.is_some(), "alice's rule is charged");

        let to_claude = CHAT.replace("gpt-alias", "claude-x");
        let admitted = admit_on(&state, "/v1/chat/completions", Some("sk-alice"), &to_claude)
            .await
            .unwrap_or_else(|r| panic!("{:?}", refused(Err(r))));
        assert_eq!(admitted.route.name, "claude");
        let body = admitted.model_request.as_ref().unwrap();
        let translated: serde_json::Value =
            serde_json::from_slice(body.body_for(Dialect::Anthropic).unwrap()).unwrap();
        assert_eq!(translated["model"], "claude-x");
        assert_eq!(
            translated["max_tokens"], 512,
            "the default, Anthropic requires it"
        );
        assert!(body.body_for(Dialect::OpenAi).is_none());
    }

    #[tokio::test]
    async fn each_refusal_has_its_code_and_status() {
        let state = state();
        let claude = CHAT.replace("gpt-alias", "claude-x");
        let seeded = CHAT
            .replace("gpt-alias", "claude-x")
            .replace('}', r#","seed":7}"#);
        for (path, key, body, code) in [
            ("/v2/nothing", Some("sk-alice"), "", ErrorCode::UnknownUrl),
            (
                "/v1/chat/completions",
                None,
                "",
                ErrorCode::MissingCredentials,
            ),
            (
                "/v1/chat/completions",
                Some("sk-eve"),
                "",
                ErrorCode::InvalidCredentials,
            ),
            (
                "/v1/chat/completions",
                Some("sk-bob"),
                "{nope",
                ErrorCode::InvalidJson,
            ),
            (
                "/v1/chat/completions",
                Some("sk-bob"),
                r#"{"messages":[]}"#,
                ErrorCode::MissingModel,
            ),
            (
                "/v1/chat/completions",
                Some("sk-bob"),
                r#"{"model":"mistral","messages":[]}"#,
                ErrorCode::ModelNotFound,
            ),
            (
                "/v1/chat/completions",
                Some("sk-bob"),
                &claude,
                ErrorCode::ModelNotAllowed,
            ),
            (
                "/v1/chat/completions",
                Some("sk-alice"),
                &seeded,
                ErrorCode::UnsupportedParameter,
            ),
        ] {
            let error = refused(admit_on(&state, path, key, body).await);
            assert_eq!(error.code, code, "{path} {key:?} {body}: {error:?}");
            assert_eq!(error.status, code.status());
        }
    }

    #[tokio::test]
    async fn a_limit_refuses_with_its_rule_and_headers() {
        let state = state();
        for _ in 0..2 {
            assert!(
                admit_on(&state, "/v1/chat/completions", Some("sk-alice"), CHAT)
                    .await
                    .is_ok()
            );
        }
        let result = admit_on(&state, "/v1/chat/completions", Some("sk-alice"), CHAT).await;
        let Err(Refusal::Answer { error, route }) = result else {
            panic!("the third request of the day is admitted");
        };
        assert_eq!(route, Some("gpt"), "a limit's refusal counts on its route");
        assert_eq!(error.code, ErrorCode::RateLimitExceeded);
        assert!(error.message.contains("two-a-day"), "{}", error.message);
        let header = |name: &str| {
            error
                .extra_headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert!(header("retry-after").is_some());
        assert_eq!(
            header("x-ratelimit-remaining-requests").as_deref(),
            Some("0")
        );
        // Bob's key has no rule: he is not refused.
        assert!(
            admit_on(&state, "/v1/chat/completions", Some("sk-bob"), CHAT)
                .await
                .is_ok()
        );
    }
}
