//! The upstream's answer as it passes to the client: the moment it starts,
//! time to first token, usage read in passing (with the usage chunk the
//! client did not ask for cut out), and, when the upstream speaks the other
//! dialect, the answer translated. Streams are never held back; a whole
//! JSON answer to translate is held until it ends (`answers.*` bound both).
//!
//! Once the headers are out, an upstream that misbehaves ([`AnswerFault`])
//! can no longer change the status: the client's answer is ended well
//! instead, with an error event in its dialect for a stream and an error
//! JSON for a translated answer ([`ending`]).

use std::time::Instant;

use bytes::Bytes;
use pingora::http::ResponseHeader;

use super::context::Translation;
use super::RequestCtx;
use crate::llm::fault::plausible;
use crate::llm::ir::StreamEvent;
use crate::llm::translate::{self, ErrorBody, ErrorKind, StreamTranslator, Untranslatable};
use crate::llm::{AnswerDetails, AnswerFault, ClientDialect, Framing, Usage, UsageScanner};

/// The answer's headers are going to the client.
pub fn started(ctx: &mut RequestCtx, response: &mut ResponseHeader) -> pingora::Result<()> {
    ctx.response.first_byte_at = Some(Instant::now());
    ctx.plan.answered();
    let status = response.status.as_u16();
    let client = ctx.dialect;
    let upstream = ctx.upstream.dialect.unwrap_or(client.dialect());
    let recording = ctx.trace.as_ref().is_some_and(|t| t.is_recording());
    if recording && ctx.model_request().is_some() && (200..300).contains(&status) {
        ctx.response.details = Some(AnswerDetails::new(upstream));
    }
    let (Some(request), Some(backend)) = (ctx.model_request(), &ctx.upstream.backend) else {
        return Ok(());
    };
    let sse = backend.provider.streams(response);
    if upstream != client {
        let translation = match (status, sse) {
            (200..=299, true) => Translation::Stream(Box::new(StreamTranslator::new(
                upstream,
                client,
                request.include_usage,
                ctx.response.bounds.max_event_bytes,
            ))),
            (200..=299, false) => Translation::Whole {
                body: Vec::new(),
                from: upstream,
            },
            _ => Translation::Error {
                body: Vec::new(),
                from: upstream,
                status,
                provider: backend.provider.clone(),
            },
        };
        ctx.response.translation = Some(translation);
        // The translation has another length.
        response.remove_header(&http::header::CONTENT_LENGTH);
        if !sse {
            response.insert_header(http::header::CONTENT_TYPE, "application/json")?;
        }
        return Ok(());
    }
    if !(200..300).contains(&status) {
        return Ok(());
    }
    let strip = request.strip_usage_event;
    let framing = if sse {
        Framing::EventStream {
            cut_usage_chunk: strip,
        }
    } else {
        Framing::Json
    };
    let max_event = ctx.response.bounds.max_event_bytes;
    ctx.response.usage_scanner = Some(UsageScanner::new(upstream, framing, max_event));
    if sse && strip {
        // Events are cut out, so the upstream's length no longer holds.
        response.remove_header(&http::header::CONTENT_LENGTH);
    }
    Ok(())
}

/// A piece of the answer's body (`None` at the end). `Err`: a fault ended
/// the client's answer before the upstream's ended; the bytes that end it
/// wait in `ctx.response.ending` for `fail_to_proxy`, and the upstream is
/// let go.
pub fn body(
    ctx: &mut RequestCtx,
    body: &mut Option<Bytes>,
    end_of_stream: bool,
) -> Result<(), AnswerFault> {
    if !ctx.response.body_started && body.as_ref().is_some_and(|b| !b.is_empty()) {
        ctx.response.body_started = true;
        if let Some(route) = ctx.route() {
            route
                .metrics
                .ttft
                .observe(ctx.started.elapsed().as_secs_f64());
        }
    }
    if let (Some(details), Some(piece)) = (ctx.response.details.as_mut(), body.as_ref()) {
        details.feed(piece);
    }
    let client = ctx.dialect;
    let max_whole = ctx.response.bounds.max_translated_bytes;
    if let Some(translation) = ctx.response.translation.as_mut() {
        let is_answer = !matches!(translation, Translation::Error { .. });
        let piece = translate_piece(translation, client, max_whole, body.take(), end_of_stream);
        if let Some(usage) = piece.usage {
            record_usage(ctx, usage);
        }
        if let Some(fault) = piece.fault {
            ctx.response.fault.get_or_insert(fault);
        }
        if piece.ends_early {
            ctx.response.ending = Some(piece.out);
            return Err(ctx.response.fault.unwrap_or(AnswerFault::Invalid));
        }
        *body = (!piece.out.is_empty() || end_of_stream).then_some(piece.out);
        if end_of_stream && is_answer {
            expect_usage(ctx);
        }
        return Ok(());
    }
    let Some(scanner) = ctx.response.usage_scanner.as_mut() else {
        return Ok(());
    };
    if let Some(chunk) = body.as_ref() {
        if let Some(replaced) = scanner.feed(chunk) {
            *body = Some(replaced);
        }
    }
    if end_of_stream {
        let (usage, tail) = scanner.finish();
        if let Some(tail) = tail {
            let mut whole = body.take().map(|b| b.to_vec()).unwrap_or_default();
            whole.extend_from_slice(&tail);
            *body = Some(Bytes::from(whole));
        }
        if let Some(usage) = usage {
            record_usage(ctx, usage);
        }
        expect_usage(ctx);
    }
    Ok(())
}

/// Usage as the upstream reported it, unless no answer could report it:
/// then the request's reservation stands in its place.
fn record_usage(ctx: &mut RequestCtx, usage: Usage) {
    if plausible(&usage) {
        ctx.response.usage = Some(usage);
    } else {
        ctx.response.usage = None;
        ctx.response.fault.get_or_insert(AnswerFault::InvalidUsage);
    }
}

/// A complete model answer reports its usage; one that did not is told.
fn expect_usage(ctx: &mut RequestCtx) {
    if ctx.response.usage.is_none() && ctx.response.fault.is_none() && ctx.model_request().is_some()
    {
        ctx.response.fault = Some(AnswerFault::NoUsage);
    }
}

/// What translating one piece of the body gave.
struct Piece {
    out: Bytes,
    usage: Option<Usage>,
    fault: Option<AnswerFault>,
    /// The client's answer ended before the upstream's.
    ends_early: bool,
}

/// Translates what a piece of the body allows: a stream event by event, a
/// whole answer or an error at its end.
fn translate_piece(
    translation: &mut Translation,
    client: ClientDialect,
    max_whole: usize,
    piece: Option<Bytes>,
    end: bool,
) -> Piece {
    let done = |out: Bytes, usage, fault, ends_early| Piece {
        out,
        usage,
        fault,
        ends_early,
    };
    match translation {
        Translation::Stream(stream) => {
            let mut out = piece.map_or_else(Bytes::new, |p| stream.feed(&p));
            if end {
                let tail = stream.finish();
                if !tail.is_empty() {
                    let mut whole = out.to_vec();
                    whole.extend_from_slice(&tail);
                    out = Bytes::from(whole);
                }
            }
            // The translator ended the client's stream on a fault of the
            // upstream's: nothing it sends now would reach the client.
            let ends_early = !end
                && stream.is_done()
                && stream
                    .fault()
                    .is_some_and(|f| f != AnswerFault::TrailingData);
            done(out, stream.usage(), stream.fault(), ends_early)
        }
        Translation::Whole { body, from } => {
            if let Some(piece) = piece {
                if body.len() + piece.len() > max_whole {
                    let fault = AnswerFault::AnswerTooLarge;
                    return done(fault_body(client, fault), None, Some(fault), true);
                }
                body.extend_from_slice(&piece);
            }
            if !end {
                return done(Bytes::new(), None, None, false);
            }
            match translate::response(*from, client, body) {
                Ok(translated) => {
                    let fault = translated.trailing.then_some(AnswerFault::TrailingData);
                    done(Bytes::from(translated.body), translated.usage, fault, false)
                }
                Err(Untranslatable::UpstreamError(kind, message)) => done(
                    Bytes::from(translate::error_body(
                        client,
                        &ErrorBody::new(kind, &message),
                    )),
                    None,
                    Some(AnswerFault::UpstreamError),
                    false,
                ),
                Err(Untranslatable::Invalid) => {
                    let fault = AnswerFault::Invalid;
                    done(fault_body(client, fault), None, Some(fault), false)
                }
            }
        }
        Translation::Error {
            body,
            from,
            status,
            provider,
        } => {
            if let Some(piece) = piece {
                // An error's message is in its first bytes: the rest of an
                // endless one is not kept.
                let room = max_whole.saturating_sub(body.len());
                body.extend_from_slice(&piece[..piece.len().min(room)]);
            }
            if !end {
                return done(Bytes::new(), None, None, false);
            }
            let bytes =
                translate::error(*from, client, *status, body, &|v| provider.parse_error(v));
            done(Bytes::from(bytes), None, None, false)
        }
    }
}

/// A translated answer's error JSON for `fault`.
fn fault_body(client: ClientDialect, fault: AnswerFault) -> Bytes {
    Bytes::from(translate::error_body(
        client,
        &ErrorBody::new(ErrorKind::Server, fault.message()),
    ))
}

/// The exchange failed after the answer's headers reached the client
/// (`timed_out`: a read or total timeout; else the connection broke): the
/// bytes that end the client's answer well, or `None` when it can only be
/// cut (a JSON answer passed on as it came, whose length the client knows).
pub fn ending(ctx: &mut RequestCtx, timed_out: bool) -> Option<Bytes> {
    if let Some(ending) = ctx.response.ending.take() {
        return Some(ending);
    }
    let fault = if timed_out {
        AnswerFault::Timeout
    } else {
        AnswerFault::Cut
    };
    let client = ctx.dialect;
    match ctx.response.translation.as_mut() {
        Some(Translation::Stream(stream)) => {
            let already_done = stream.is_done();
            let out = stream.fail(fault);
            if !already_done {
                ctx.response.fault = Some(fault);
            }
            Some(out)
        }
        Some(Translation::Whole { .. } | Translation::Error { .. }) => {
            ctx.response.fault = Some(fault);
            Some(fault_body(client, fault))
        }
        None => {
            let scanner = ctx.response.usage_scanner.as_ref()?;
            if !scanner.is_event_stream() {
                return None;
            }
            ctx.response.fault = Some(fault);
            // The scanner passes whole events only: the error event follows
            // the last of them.
            let mut out = Vec::new();
            let error = StreamEvent::Error {
                kind: ErrorKind::Server,
                message: fault.message().into(),
            };
            client
                .client()
                .stream_encoder(false)
                .event(&error, &mut out);
            Some(Bytes::from(out))
        }
    }
}
