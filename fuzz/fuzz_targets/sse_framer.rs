//! The SSE framer: whatever the bytes and however they are cut into chunks,
//! the events it hands out (and what it gives up when one outgrows its
//! bound) are the input, byte for byte, in order; every event but the last
//! ends in a blank line; the events do not depend on the chunking.
//! Input: four chunk sizes (a byte each, plus one), the body.
#![no_main]

use ai_api_gateway::llm::sse::Framer;
use libfuzzer_sys::fuzz_target;

/// Small, so that inputs the fuzzer makes outgrow it.
const MAX_EVENT: usize = 512;

/// The events (with what was given up, marked) and all the bytes out.
fn frame(body: &[u8], sizes: &[usize]) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut framer = Framer::new(MAX_EVENT);
    let mut events = Vec::new();
    let mut rest = body;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = sizes
            .next()
            .copied()
            .unwrap_or(rest.len())
            .clamp(1, rest.len());
        let (chunk, after) = rest.split_at(n);
        let mut pieces = Vec::new();
        let framed = framer.feed(chunk, |e| pieces.push(e.bytes().to_vec()));
        for piece in &pieces {
            assert!(
                piece.ends_with(b"\n\n") || piece.ends_with(b"\n\r\n"),
                "an event handed out before its end"
            );
        }
        events.extend(pieces);
        if framed.is_err() {
            let held = framer.take_pending();
            assert!(held.len() > MAX_EVENT, "gave up an event under the bound");
            events.push(held);
        }
        rest = after;
    }
    framer.finish(|e| events.push(e.bytes().to_vec()));
    let bytes = events.concat();
    (events, bytes)
}

fuzz_target!(|data: &[u8]| {
    let Some((header, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let sizes: Vec<usize> = header.iter().map(|&b| usize::from(b) + 1).collect();
    let (_, whole) = frame(body, &[body.len().max(1)]);
    assert_eq!(whole, body, "bytes lost or added");
    let (_, pieces) = frame(body, &sizes);
    assert_eq!(pieces, body, "bytes lost or added when chunked");
    // Without an over-long event, the events themselves are the same.
    if body.len() <= MAX_EVENT {
        assert_eq!(frame(body, &sizes).0, frame(body, &[body.len().max(1)]).0);
    }
});
