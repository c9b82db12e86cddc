//! Token usage from responses, read in passing: JSON bodies (their `usage`
//! member), and event streams without holding them back. Which fields say
//! what is the upstream's wire's business (`Wire::usage_in_*`); the
//! scanner keeps, for each, the largest value any piece reported. When the
//! gateway asked the upstream for a usage chunk the client did not ask for,
//! that one event is cut out.

use bytes::Bytes;

use super::sse::{Framer, RawEvent};
use super::wire::UpstreamWire;
use super::Dialect;

/// How much of the end of a JSON answer is kept: providers put `usage` last.
const JSON_TAIL: usize = 16 * 1024;

/// An answer's tokens, the same whatever the dialect: `input` counts every
/// prompt token, those read from or written to the provider's prompt cache
/// included (OpenAI's `prompt_tokens`; Anthropic's `input_tokens` plus its
/// cache reads and writes); `cache_read` and `cache_write` say how many of
/// them were read from and written to the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

/// How the body the scanner reads is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON answer.
    Json,
    /// An event stream. `cut_usage_chunk`: remove OpenAI's usage-only chunk
    /// (the gateway asked for it; the client did not).
    EventStream { cut_usage_chunk: bool },
}

/// Reads usage from a response body as it passes.
pub struct UsageScanner {
    wire: &'static dyn UpstreamWire,
    framing: Framing,
    /// The last bytes of a JSON answer.
    json_tail: Vec<u8>,
    events: Framer,
    usage: Option<Usage>,
}

impl UsageScanner {
    /// For an answer in `dialect`; `max_event`: the longest event held
    /// while waiting for its end.
    pub fn new(dialect: Dialect, framing: Framing, max_event: usize) -> Self {
        Self {
            wire: dialect.upstream(),
            framing,
            json_tail: Vec::new(),
            events: Framer::new(max_event),
            usage: None,
        }
    }

    /// It reads an event stream (not one JSON answer).
    pub fn is_event_stream(&self) -> bool {
        matches!(self.framing, Framing::EventStream { .. })
    }

    /// Feeds one chunk. Returns the bytes to send on in its place when
    /// they differ from it, else `None`. An event stream passes on whole
    /// events only: the part of one still arriving is held until its end
    /// (so a stream cut mid-event never hands the client half an event),
    /// and, when cutting, the usage chunk is left out.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<Bytes> {
        let cut = match self.framing {
            Framing::Json => {
                let keep = chunk.len().min(JSON_TAIL);
                let overflow = (self.json_tail.len() + keep).saturating_sub(JSON_TAIL);
                self.json_tail.drain(..overflow);
                self.json_tail
                    .extend_from_slice(&chunk[chunk.len() - keep..]);
                return None;
            }
            Framing::EventStream { cut_usage_chunk } => cut_usage_chunk,
        };
        // With nothing held, the events the framer hands out are the
        // chunk's own bytes, in order: unless one is cut or the chunk ends
        // inside one, it goes on as it came, with no copy. Held bytes mean
        // the first event began in an earlier chunk: what goes on is built.
        let mut built = self
            .events
            .holds_partial()
            .then(|| Vec::with_capacity(chunk.len()));
        let mut passed = 0;
        let mut cuts: Vec<(usize, usize)> = Vec::new();
        let (wire, mut usage) = (self.wire, self.usage);
        let framed = self.events.feed(chunk, |event| {
            let bytes = event.bytes();
            let usage_only = scan_event(wire, event, &mut usage);
            if cut && usage_only {
                cuts.push((passed, bytes.len()));
            } else if let Some(built) = built.as_mut() {
                built.extend_from_slice(bytes);
            }
            passed += bytes.len();
        });
        self.usage = usage;
        // Not an event stream we understand: what is held goes on untouched.
        let given_up = if framed.is_err() {
            self.events.take_pending()
        } else {
            Vec::new()
        };
        let mut out = match built {
            Some(built) => built,
            None if cuts.is_empty() && passed + given_up.len() == chunk.len() => return None,
            None => {
                let mut out = Vec::with_capacity(passed);
                let mut from = 0;
                for (at, len) in cuts {
                    out.extend_from_slice(&chunk[from..at]);
                    from = at + len;
                }
                out.extend_from_slice(&chunk[from..passed]);
                out
            }
        };
        out.extend_from_slice(&given_up);
        Some(Bytes::from(out))
    }

    /// The usage once the body ended, if the upstream reported one, and
    /// the bytes of an event stream still held (a last event without a
    /// blank line).
    pub fn finish(&mut self) -> (Option<Usage>, Option<Bytes>) {
        let mut tail = None;
        match self.framing {
            Framing::EventStream { .. } => {
                let (wire, mut usage) = (self.wire, self.usage);
                let mut rest = Vec::new();
                self.events.finish(|event| {
                    scan_event(wire, event, &mut usage);
                    rest.extend_from_slice(event.bytes());
                });
                self.usage = usage;
                if !rest.is_empty() {
                    tail = Some(Bytes::from(rest));
                }
            }
            Framing::Json => {
                let found = usage_member(&self.json_tail)
                    .and_then(|member| self.wire.usage_in_member(member));
                if let Some(found) = found {
                    merge(&mut self.usage, found);
                }
            }
        }
        (self.usage, tail)
    }
}

/// Reads the usage an event carries into `usage`; true for OpenAI's
/// usage-only chunk.
fn scan_event(wire: &dyn UpstreamWire, event: RawEvent<'_>, usage: &mut Option<Usage>) -> bool {
    let mut usage_only = false;
    for line in event.lines() {
        let Some(data) = line.strip_prefix(b"data:") else {
            continue;
        };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if !contains(data, b"\"usage\"") {
            continue;
        }
        if let Some(reading) = wire.usage_in_event(data) {
            usage_only |= reading.usage_only;
            merge(usage, reading.usage);
        }
    }
    usage_only
}

/// Keeps, field by field, the largest value reported so far.
fn merge(usage: &mut Option<Usage>, found: Usage) {
    let usage = usage.get_or_insert_with(Usage::default);
    usage.input = usage.input.max(found.input);
    usage.output = usage.output.max(found.output);
    usage.cache_read = usage.cache_read.max(found.cache_read);
    usage.cache_write = usage.cache_write.max(found.cache_write);
}

/// Where the value of the last `"usage"` member of a JSON text starts (what
/// follows it too): the rest of the answer (the completion itself) is never
/// parsed. Inside JSON strings the quotes would be escaped, so the match is
/// a real member.
fn usage_member(tail: &[u8]) -> Option<&[u8]> {
    let needle = b"\"usage\"";
    let at = tail.windows(needle.len()).rposition(|w| w == needle)?;
    let rest = &tail[at + needle.len()..];
    let colon = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[colon] != b':' {
        return None;
    }
    Some(&rest[colon + 1..])
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A scanner of an event stream (`sse`) or a JSON answer, for tests.
#[cfg(test)]
fn scanner(dialect: Dialect, sse: bool, cut_usage_chunk: bool) -> UsageScanner {
    let framing = if sse {
        Framing::EventStream { cut_usage_chunk }
    } else {
        Framing::Json
    };
    UsageScanner::new(dialect, framing, super::sse::DEFAULT_MAX_EVENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAI_STREAM: &str = concat!(
        "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7,\"total_tokens\":18}}\n\n",
        "data: [DONE]\n\n"
    );

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"x\"}}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
    );

    fn scan_in_pieces(text: &str, sizes: &[usize], strip: bool) -> (Option<Usage>, String) {
        let dialect = if text.starts_with("event:") {
            Dialect::Anthropic
        } else {
            Dialect::OpenAi
        };
        let mut scanner = scanner(dialect, true, strip);
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < bytes.len() {
            let n = sizes[i % sizes.len()].min(bytes.len() - at);
            match scanner.feed(&bytes[at..at + n]) {
                Some(replaced) => out.extend_from_slice(&replaced),
                None => out.extend_from_slice(&bytes[at..at + n]),
            }
            at += n;
            i += 1;
        }
        let (usage, tail) = scanner.finish();
        if let Some(tail) = tail {
            out.extend_from_slice(&tail);
        }
        (usage, String::from_utf8(out).unwrap())
    }

    #[test]
    fn openai_stream_usage_at_any_chunking() {
        for sizes in [&[1usize][..], &[3, 7], &[64], &[10_000]] {
            let (usage, out) = scan_in_pieces(OPENAI_STREAM, sizes, false);
            assert_eq!(
                usage,
                Some(Usage {
                    input: 11,
                    output: 7,
                    cache_read: 0,
                    cache_write: 0,
                }),
                "{sizes:?}"
            );
            assert_eq!(out, OPENAI_STREAM);
        }
    }

    #[test]
    fn the_usage_chunk_is_cut_when_the_client_did_not_ask() {
        for sizes in [&[1usize][..], &[5, 13], &[10_000]] {
            let (usage, out) = scan_in_pieces(OPENAI_STREAM, sizes, true);
            assert_eq!(
                usage,
                Some(Usage {
                    input: 11,
                    output: 7,
                    cache_read: 0,
                    cache_write: 0,
                })
            );
            assert!(!out.contains("usage"), "{out}");
            assert!(out.ends_with("data: [DONE]\n\n"));
            assert_eq!(out.matches("data:").count(), 3);
        }
    }

    #[test]
    fn anthropic_stream_usage() {
        for sizes in [&[1usize][..], &[9], &[10_000]] {
            let (usage, out) = scan_in_pieces(ANTHROPIC_STREAM, sizes, false);
            assert_eq!(
                usage,
                Some(Usage {
                    input: 25,
                    output: 15,
                    cache_read: 0,
                    cache_write: 0,
                })
            );
            assert_eq!(out, ANTHROPIC_STREAM);
        }
    }

    #[test]
    fn cache_reads_are_part_of_input_in_both_dialects() {
        let mut s = scanner(Dialect::OpenAi, false, false);
        s.feed(br#"{"usage":{"prompt_tokens":100,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":60}}}"#);
        let openai = s.finish().0;
        assert_eq!(
            openai,
            Some(Usage {
                input: 100,
                output: 4,
                cache_read: 60,
                cache_write: 0,
            })
        );
        // Anthropic counts cache reads and writes apart from input_tokens.
        let mut s = scanner(Dialect::Anthropic, true, false);
        s.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":30,\"cache_read_input_tokens\":60,\"cache_creation_input_tokens\":10,\"output_tokens\":1}}}\n\n");
        s.feed(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":4}}\n\n");
        assert_eq!(
            s.finish().0,
            Some(Usage {
                input: 100,
                output: 4,
                cache_read: 60,
                cache_write: 10,
            })
        );
    }

    #[test]
    fn json_bodies() {
        let mut s = scanner(Dialect::OpenAi, false, false);
        s.feed(br#"{"id":"x","usage":{"prompt_tokens":3,"#);
        s.feed(br#""completion_tokens":4}}"#);
        assert_eq!(
            s.finish().0,
            Some(Usage {
                input: 3,
                output: 4,
                cache_read: 0,
                cache_write: 0,
            })
        );
        let mut s = scanner(Dialect::Anthropic, false, false);
        s.feed(br#"{"usage":{"input_tokens":5,"output_tokens":6}}"#);
        assert_eq!(
            s.finish().0,
            Some(Usage {
                input: 5,
                output: 6,
                cache_read: 0,
                cache_write: 0,
            })
        );
        let mut s = scanner(Dialect::OpenAi, false, false);
        s.feed(b"not json");
        assert_eq!(s.finish().0, None);
        // A long answer: only its tail is kept, and "usage" in the content is not it.
        let mut s = scanner(Dialect::OpenAi, false, false);
        s.feed(br#"{"choices":[{"message":{"content":"say \"usage\": {\"prompt_tokens\": 99}"#);
        s.feed(&vec![b'x'; 100_000]);
        s.feed(br#""}}],"usage":{"prompt_tokens":8,"completion_tokens":9}}"#);
        assert_eq!(
            s.finish().0,
            Some(Usage {
                input: 8,
                output: 9,
                cache_read: 0,
                cache_write: 0,
            })
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// An OpenAI stream with `n` content chunks and a usage chunk.
    fn stream(n: usize, input: u64, output: u64) -> String {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!(
                "data: {{\"choices\":[{{\"delta\":{{\"content\":\"w{i} \\\"usage\\\"\"}}}}]}}\n\n"
            ));
        }
        s.push_str(&format!(
            "data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":{input},\"completion_tokens\":{output}}}}}\n\ndata: [DONE]\n\n"
        ));
        s
    }

    fn run(text: &str, cuts: &[usize], strip: bool) -> (Option<Usage>, Vec<u8>) {
        let bytes = text.as_bytes();
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut scanner = scanner(Dialect::OpenAi, true, strip);
        let mut out = Vec::new();
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            let piece = &bytes[last..p];
            match scanner.feed(piece) {
                Some(replaced) => out.extend_from_slice(&replaced),
                None => out.extend_from_slice(piece),
            }
            last = p;
        }
        let (usage, tail) = scanner.finish();
        if let Some(tail) = tail {
            out.extend_from_slice(&tail);
        }
        (usage, out)
    }

    proptest! {
        /// Random chunk boundaries give the same usage as the whole stream,
        /// and pass the bytes through unchanged.
        #[test]
        fn chunking_never_changes_usage(n in 0usize..20, input in 0u64..100_000, output in 0u64..100_000,
                                        cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
            let text = stream(n, input, output);
            let (whole, _) = run(&text, &[], false);
            let (usage, out) = run(&text, &cuts, false);
            prop_assert_eq!(usage, whole);
            prop_assert_eq!(usage, Some(Usage { input, output, cache_read: 0, cache_write: 0 }));
            prop_assert_eq!(out, text.as_bytes().to_vec());
        }

        /// Stripping removes exactly the usage chunk, wherever the cuts fall.
        #[test]
        fn stripping_removes_only_the_usage_chunk(n in 0usize..20, cuts in proptest::collection::vec(any::<usize>(), 0..40)) {
            let text = stream(n, 7, 9);
            let (usage, out) = run(&text, &cuts, true);
            prop_assert_eq!(usage, Some(Usage { input: 7, output: 9, cache_read: 0, cache_write: 0 }));
            let expected = text.replace("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9}}\n\n", "");
            prop_assert_eq!(String::from_utf8(out).unwrap(), expected);
        }

        /// Arbitrary bytes never panic the scanner.
        #[test]
        fn garbage_is_harmless(data in proptest::collection::vec(any::<u8>(), 0..2000), sse in any::<bool>(), strip in any::<bool>()) {
            let mut scanner = scanner(Dialect::OpenAi, sse, strip);
            scanner.feed(&data);
            let _ = scanner.finish();
        }
    }
}
