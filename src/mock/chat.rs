//! Chat answers of the OpenAI and Anthropic endpoints, whole or as event
//! streams sent as the knobs say; the clouds' modules answer through them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::mpsc;

use super::checks;
use super::faults::{self, Step};
use super::responses::{self, Body, Dialect, Knobs};
use super::state::MockState;

pub fn completion(
    state: &Arc<MockState>,
    headers: &http::HeaderMap,
    body: &Bytes,
    knobs: &Knobs,
    dialect: Dialect,
) -> Response<Body> {
    let request: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return responses::error(StatusCode::BAD_REQUEST, dialect),
    };
    if let Err(problem) = checks::check(dialect, headers, &request) {
        return responses::error_with(
            StatusCode::BAD_REQUEST,
            dialect,
            &format!("mock: {problem}"),
        );
    }
    let prompt_tokens = (body.len() / 4).max(1) as u64;
    // A hostile upstream's pace: the chunk delay, or a tenth of a second.
    let pace = Some(knobs.chunk_delay)
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_millis(100));
    if !request["stream"].as_bool().unwrap_or(false) {
        let value = match dialect {
            Dialect::OpenAi => responses::chat_completion(&request, knobs, prompt_tokens),
            Dialect::Anthropic => responses::anthropic_message(&request, knobs, prompt_tokens),
        };
        return match knobs.fault {
            Some(fault) => {
                let steps = faults::whole(fault, dialect, value, pace);
                streamed(state, knobs, steps, "application/json")
            }
            None => responses::full(StatusCode::OK, "application/json", value.to_string()),
        };
    }
    let events = match dialect {
        Dialect::OpenAi => responses::chat_stream(&request, knobs, prompt_tokens),
        Dialect::Anthropic => responses::anthropic_stream(&request, knobs, prompt_tokens),
    };
    match knobs.fault {
        Some(fault) => {
            let steps = faults::stream(fault, dialect, events, pace);
            streamed(state, knobs, steps, "text/event-stream")
        }
        None => event_stream(state, knobs, events),
    }
}

/// An event stream of `events`, sent as the knobs say (delays, a hold
/// after the first, a connection dropped midway).
pub fn event_stream(state: &Arc<MockState>, knobs: &Knobs, events: Vec<String>) -> Response<Body> {
    let steps = events
        .into_iter()
        .map(|e| Step::Send(Bytes::from(e)))
        .collect();
    streamed(state, knobs, steps, "text/event-stream")
}

/// A body sent step by step as the knobs say.
fn streamed(
    state: &Arc<MockState>,
    knobs: &Knobs,
    steps: Vec<Step>,
    content_type: &'static str,
) -> Response<Body> {
    let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(16);
    let hold = knobs.hold.as_deref().map(|key| state.hold(key));
    let (delay, drop_after) = (knobs.chunk_delay, knobs.drop_after);
    let reset = || Err(std::io::Error::other("mock: dropping the connection"));
    tokio::spawn(async move {
        for (i, step) in steps.into_iter().enumerate() {
            if drop_after == Some(i) {
                // Let hyper flush the events already sent, then break the connection.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(reset()).await;
                return;
            }
            let bytes = match step {
                Step::Send(bytes) => bytes,
                Step::Reset => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let _ = tx.send(reset()).await;
                    return;
                }
                // Until the gateway gives up on the answer.
                Step::Hang => return tx.closed().await,
                Step::Forever(bytes, pace) => loop {
                    tokio::time::sleep(pace).await;
                    if tx.send(Ok(Frame::data(bytes.clone()))).await.is_err() {
                        return;
                    }
                },
            };
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(Frame::data(bytes))).await.is_err() {
                return;
            }
            if i == 0 {
                if let Some(hold) = &hold {
                    hold.notified().await;
                }
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    resp
}
