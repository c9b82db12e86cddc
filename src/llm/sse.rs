//! Server-sent events, framed from bytes that arrive in any pieces: the one
//! framer that both the usage scanner (which passes events on byte for
//! byte) and the stream translator (which reads their fields) use.
//!
//! An event is everything up to and including a blank line; lines end in
//! `\n` or `\r\n`. Nothing is copied while whole events arrive in a piece:
//! only the part of an event that has not fully arrived is held, and at
//! most `max_event` bytes of it.

use std::borrow::Cow;

/// Longest event held while waiting for its end, unless configured.
pub const DEFAULT_MAX_EVENT: usize = 1024 * 1024;

/// One event as it arrived, its terminating blank line included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent<'a> {
    bytes: &'a [u8],
}

impl<'a> RawEvent<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The event's lines, without their line ends; blank ones skipped.
    pub fn lines(&self) -> impl Iterator<Item = &'a [u8]> {
        self.bytes
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
    }

    /// The values of the event's `field:` lines (one leading space dropped).
    fn values(&self, field: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.lines().filter_map(move |line| {
            let rest = line.strip_prefix(field)?;
            let value = match rest.first() {
                None => rest,
                Some(b':') => &rest[1..],
                Some(_) => return None,
            };
            Some(value.strip_prefix(b" ").unwrap_or(value))
        })
    }

    /// Its `data:` lines joined with `\n` (empty when it has none).
    pub fn data(&self) -> Cow<'a, str> {
        let mut values = self.values(b"data");
        let Some(first) = values.next() else {
            return Cow::Borrowed("");
        };
        match values.next() {
            None => String::from_utf8_lossy(first),
            Some(second) => {
                let mut joined = String::from_utf8_lossy(first).into_owned();
                for value in std::iter::once(second).chain(values) {
                    joined.push('\n');
                    joined.push_str(&String::from_utf8_lossy(value));
                }
                Cow::Owned(joined)
            }
        }
    }

    /// Its `event:` name, if it has one.
    pub fn name(&self) -> Option<Cow<'a, str>> {
        self.values(b"event").last().map(String::from_utf8_lossy)
    }
}

/// The part of an event held was longer than the framer's bound.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

/// Splits a byte stream into events, whatever the chunk boundaries.
pub struct Framer {
    /// The start of an event whose end has not arrived.
    pending: Vec<u8>,
    max_event: usize,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_EVENT)
    }
}

impl Framer {
    pub fn new(max_event: usize) -> Self {
        Self {
            pending: Vec::new(),
            max_event,
        }
    }

    /// Hands every event that `chunk` completes to `each`, in order. When
    /// the event still open grows past the bound, the bytes held so far
    /// stay for [`Framer::take_pending`] and `TooLong` is returned.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(RawEvent<'_>),
    ) -> Result<(), TooLong> {
        if self.pending.is_empty() {
            let used = split_events(chunk, 0, &mut each);
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            // The held bytes end inside an event: look for its end from a
            // line back, in case the held part ends in a line end.
            let from = self.pending.len().saturating_sub(2);
            self.pending.extend_from_slice(chunk);
            let used = split_events(&self.pending, from, &mut each);
            self.pending.drain(..used);
        }
        if self.pending.len() > self.max_event {
            return Err(TooLong);
        }
        Ok(())
    }

    /// Part of an event has arrived and its end has not.
    pub fn holds_partial(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The bytes of the event still open, given up by the framer.
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// The stream ended: an event not closed by a blank line still counts.
    pub fn finish(&mut self, mut each: impl FnMut(RawEvent<'_>)) {
        let rest = self.take_pending();
        if !rest.is_empty() {
            each(RawEvent { bytes: &rest });
        }
    }
}

/// Hands out the complete events at the start of `data`, looking for the
/// first one's end from `from` on (the bytes before it hold no blank line);
/// returns how many bytes they took.
fn split_events(data: &[u8], from: usize, each: &mut impl FnMut(RawEvent<'_>)) -> usize {
    let mut start = 0;
    let mut at = from;
    while let Some(found) = data[at..].iter().position(|&b| b == b'\n') {
        let nl = at + found;
        // A blank line follows this line end: `\n` or `\r\n`.
        let end = match &data[nl + 1..] {
            [b'\n', ..] => Some(nl + 2),
            [b'\r', b'\n', ..] => Some(nl + 3),
            _ => None,
        };
        match end {
            Some(end) => {
                each(RawEvent {
                    bytes: &data[start..end],
                });
                start = end;
                at = end;
            }
            None => at = nl + 1,
        }
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event's data and name, and the bytes of all of them.
    fn frame(pieces: &[&[u8]]) -> (Vec<(Option<String>, String)>, Vec<u8>) {
        let mut framer = Framer::default();
        let mut events = Vec::new();
        let mut bytes = Vec::new();
        let mut take = |e: RawEvent<'_>| {
            bytes.extend_from_slice(e.bytes());
            if !e.data().is_empty() || e.name().is_some() {
                events.push((e.name().map(|n| n.into_owned()), e.data().into_owned()));
            }
        };
        for piece in pieces {
            framer.feed(piece, &mut take).unwrap();
        }
        framer.finish(&mut take);
        (events, bytes)
    }

    const TEXT: &[u8] =
        b"event: a\ndata: {\"x\":1}\n\n: comment\ndata: one\r\ndata: two\r\n\r\n\ndata: [DONE]\n\n";

    #[test]
    fn events_at_any_chunking() {
        let (whole, bytes) = frame(&[TEXT]);
        assert_eq!(
            whole,
            vec![
                (Some("a".into()), "{\"x\":1}".into()),
                (None, "one\ntwo".into()),
                (None, "[DONE]".into()),
            ]
        );
        assert_eq!(bytes, TEXT);
        for size in 1..TEXT.len() {
            let pieces: Vec<&[u8]> = TEXT.chunks(size).collect();
            assert_eq!(frame(&pieces), (whole.clone(), TEXT.to_vec()), "{size}");
        }
    }

    #[test]
    fn an_unterminated_last_event_counts_at_the_end() {
        assert_eq!(frame(&[b"data: last"]).0, vec![(None, "last".to_string())]);
    }

    #[test]
    fn data_without_a_space_and_other_fields() {
        let (events, _) = frame(&[b"data:x\nid: 7\nretry: 10\ndatum: no\n\n"]);
        assert_eq!(events, vec![(None, "x".to_string())]);
    }

    #[test]
    fn endless_events_are_refused_and_held_bytes_given_up() {
        let mut framer = Framer::new(100 * 1024);
        let line = vec![b'x'; 64 * 1024];
        assert_eq!(framer.feed(&line, |_| {}), Ok(()));
        assert_eq!(framer.feed(&line, |_| {}), Err(TooLong));
        assert_eq!(framer.take_pending().len(), 128 * 1024);
        assert_eq!(framer.feed(b"data: next\n\n", |_| {}), Ok(()));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Events and bytes do not depend on where a stream is cut, and no
        /// byte is lost or added.
        #[test]
        fn cuts_change_nothing(text in "(data: [a-z]{0,5}\r?\n|event: [a-z]{1,3}\r?\n|\r?\n|: c\n){0,30}",
                               cuts in proptest::collection::vec(any::<usize>(), 0..10)) {
            let bytes = text.as_bytes();
            let run = |points: &[usize]| {
                let mut framer = Framer::default();
                let mut out = Vec::new();
                let mut data = Vec::new();
                let mut last = 0;
                for &p in points.iter().chain(std::iter::once(&bytes.len())) {
                    framer.feed(&bytes[last..p], |e| {
                        out.extend_from_slice(e.bytes());
                        data.push(e.data().into_owned());
                    }).unwrap();
                    last = p;
                }
                framer.finish(|e| {
                    out.extend_from_slice(e.bytes());
                    data.push(e.data().into_owned());
                });
                (out, data)
            };
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
            points.sort_unstable();
            let whole = run(&[]);
            prop_assert_eq!(&whole.0, &bytes.to_vec());
            prop_assert_eq!(run(&points), whole);
        }
    }
}
