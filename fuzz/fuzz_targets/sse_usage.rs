//! The usage scanner: the usage read from a response, and the bytes passed on
//! when the usage-only chunk is cut out, do not depend on how the response was
//! cut into chunks, and a scan that cuts nothing passes every byte on.
//! Input: a flags byte (bit 0: an event stream, bit 1: cut the usage chunk,
//! bits 2-3: OpenAI's, Anthropic's or Gemini's usage fields), four chunk
//! sizes (a byte each, plus one), the body.
#![no_main]

use ai_api_gateway::llm::sse::DEFAULT_MAX_EVENT;
use ai_api_gateway::llm::{Dialect, Framing, Usage, UsageScanner};
use libfuzzer_sys::fuzz_target;

fn scan(
    dialect: Dialect,
    sse: bool,
    strip: bool,
    body: &[u8],
    chunk_sizes: &[usize],
) -> (Option<Usage>, Vec<u8>) {
    let framing = if sse {
        Framing::EventStream {
            cut_usage_chunk: strip,
        }
    } else {
        Framing::Json
    };
    let mut scanner = UsageScanner::new(dialect, framing, DEFAULT_MAX_EVENT);
    let mut out = Vec::new();
    let mut rest = body;
    let mut sizes = chunk_sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        match scanner.feed(chunk) {
            Some(replaced) => out.extend_from_slice(&replaced),
            None => out.extend_from_slice(chunk),
        }
        rest = after;
    }
    let (usage, tail) = scanner.finish();
    if let Some(tail) = tail {
        out.extend_from_slice(&tail);
    }
    (usage, out)
}

fuzz_target!(|data: &[u8]| {
    let Some((header, body)) = data.split_first_chunk::<5>() else {
        return;
    };
    let sse = header[0] & 1 == 1;
    let strip = header[0] & 2 == 2;
    let dialect = match (header[0] >> 2) & 3 {
        1 => Dialect::Anthropic,
        2 => Dialect::Gemini,
        _ => Dialect::OpenAi,
    };
    let sizes: Vec<usize> = header[1..].iter().map(|&b| usize::from(b) + 1).collect();
    let whole = scan(dialect, sse, strip, body, &[body.len().max(1)]);
    let pieces = scan(dialect, sse, strip, body, &sizes);
    assert_eq!(whole.0, pieces.0, "usage depends on chunking");
    assert_eq!(whole.1, pieces.1, "passed-on bytes depend on chunking");
    if !strip || !sse {
        assert_eq!(whole.1, body, "a scan-only pass changed the body");
    }
});
