//! Each dialect's stream decoder and each client dialect's encoder, through
//! the stream translator: whatever an upstream streams, cut into chunks
//! however, the client gets events it can read (every `data` JSON, or
//! `[DONE]`), ending in exactly one end (its dialect's completion marker or
//! one error event) with nothing after it; the output, usage and fault do
//! not depend on the chunking.
//! Input: a flags byte (bits 0-1: the upstream's dialect, OpenAI, Anthropic,
//! Gemini; bit 2: an Anthropic client, else OpenAI; bit 3: include_usage),
//! four chunk sizes (a byte each, plus one), the upstream's body.
#![no_main]

use ai_api_gateway::llm::translate::StreamTranslator;
use ai_api_gateway::llm::{AnswerFault, ClientDialect, Dialect, Usage};
use libfuzzer_sys::fuzz_target;

const MAX_EVENT: usize = 4096;

fn run(
    mut t: StreamTranslator,
    body: &[u8],
    sizes: &[usize],
) -> (Vec<u8>, Option<Usage>, Option<AnswerFault>) {
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        out.extend_from_slice(&t.feed(chunk));
        rest = after;
    }
    out.extend_from_slice(&t.finish());
    (out, t.usage(), t.fault())
}

/// The client's stream reads, and ends exactly once.
fn check_well_formed(to: ClientDialect, out: &[u8]) {
    let text = std::str::from_utf8(out).expect("the client's stream is UTF-8");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    let mut ends = 0;
    for (i, event) in events.iter().enumerate() {
        let data = event
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("every event has data");
        let is_end = match to {
            ClientDialect::OpenAi => {
                data == "[DONE]" || {
                    let v: serde_json::Value = serde_json::from_str(data).expect("data is JSON");
                    v.get("error").is_some()
                }
            }
            ClientDialect::Anthropic => {
                let v: serde_json::Value = serde_json::from_str(data).expect("data is JSON");
                matches!(v["type"].as_str(), Some("message_stop" | "error"))
            }
        };
        if is_end {
            ends += 1;
            assert_eq!(i, events.len() - 1, "events after the end");
        }
    }
    assert_eq!(ends, 1, "a stream ends exactly once: {text}");
}

fuzz_target!(|data: &[u8]| {
    let Some((header, body)) = data.split_first_chunk::<5>() else {
        return;
    };
    let from = match header[0] & 3 {
        1 => Dialect::Anthropic,
        2 => Dialect::Gemini,
        _ => Dialect::OpenAi,
    };
    let to = if header[0] & 4 == 4 {
        ClientDialect::Anthropic
    } else {
        ClientDialect::OpenAi
    };
    let include_usage = header[0] & 8 == 8;
    let sizes: Vec<usize> = header[1..].iter().map(|&b| usize::from(b) + 1).collect();
    // Made together, so that both stamp the same creation time.
    let (a, b) = (
        StreamTranslator::new(from, to, include_usage, MAX_EVENT),
        StreamTranslator::new(from, to, include_usage, MAX_EVENT),
    );
    let whole = run(a, body, &[body.len().max(1)]);
    let pieces = run(b, body, &sizes);
    check_well_formed(to, &whole.0);
    if body.len() <= MAX_EVENT {
        // (An over-long event is found where the bound is crossed, which
        // depends on the chunking only in what came before it.)
        assert_eq!(whole, pieces, "the translation depends on chunking");
    } else {
        check_well_formed(to, &pieces.0);
    }
});
