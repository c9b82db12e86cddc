//! The usage scanner: the usage read from a response, and the bytes passed on
//! when the usage-only chunk is cut out, do not depend on how the response was
//! cut into chunks.
#![no_main]

use ai_api_gateway::llm::{Usage, UsageScanner};
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    sse: bool,
    strip: bool,
    cuts: Vec<u16>,
    body: Vec<u8>,
}

fn scan(input: &Input, chunk_sizes: &[usize]) -> (Option<Usage>, Vec<u8>) {
    let mut scanner = UsageScanner::new(input.sse, input.strip);
    let mut out = Vec::new();
    let mut rest = input.body.as_slice();
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

fuzz_target!(|input: Input| {
    let whole = scan(&input, &[input.body.len().max(1)]);
    let sizes: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c) + 1).collect();
    let pieces = scan(&input, if sizes.is_empty() { &[1] } else { &sizes });
    assert_eq!(whole.0, pieces.0, "usage depends on chunking");
    assert_eq!(whole.1, pieces.1, "passed-on bytes depend on chunking");
    if !input.strip || !input.sse {
        assert_eq!(whole.1, input.body, "a scan-only pass changed the body");
    }
});
