//! A streamed answer translated event by event as it passes: upstream bytes
//! in any pieces → events → the client dialect's events. Nothing is held
//! back but the part of an event that has not fully arrived.

use bytes::Bytes;

use crate::llm::ir::{ErrorKind, StreamEvent, Usage};
use crate::llm::sse::Framer;
use crate::llm::wire::{StreamDecoder, StreamEncoder};
use crate::llm::{ClientDialect, Dialect};

pub struct StreamTranslator {
    framer: Framer,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    usage: Option<Usage>,
    done: bool,
    failed: bool,
    events: Vec<StreamEvent>,
}

impl StreamTranslator {
    /// From the upstream's `from` to the client's `to`; `include_usage`:
    /// an OpenAI client asked for the final usage chunk; `max_event`: the
    /// longest upstream event held while waiting for its end.
    pub fn new(from: Dialect, to: ClientDialect, include_usage: bool, max_event: usize) -> Self {
        Self {
            framer: Framer::new(max_event),
            decoder: from.upstream().stream_decoder(),
            encoder: to.client().stream_encoder(include_usage),
            usage: None,
            done: false,
            failed: false,
            events: Vec::new(),
        }
    }

    /// The usage the upstream reported, once it has.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Translates the events a piece of the upstream's body completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        if self.failed {
            return Bytes::new();
        }
        let (decoder, done, events) = (&mut *self.decoder, self.done, &mut self.events);
        let framed = self
            .framer
            .feed(chunk, |event| decode(decoder, done, &event.data(), events));
        if framed.is_err() {
            self.failed = true;
            self.framer.take_pending();
            self.events.push(StreamEvent::Error {
                kind: ErrorKind::Server,
                message: "The upstream sent an event longer than the gateway's limit.".into(),
            });
        }
        self.encode()
    }

    /// The upstream's body ended. A stream the upstream ended properly is
    /// closed in the client's dialect; a cut one stays cut (no `[DONE]`),
    /// so the client never mistakes it for a complete answer.
    pub fn finish(&mut self) -> Bytes {
        if !self.failed {
            let (decoder, done, events) = (&mut *self.decoder, self.done, &mut self.events);
            self.framer
                .finish(|event| decode(decoder, done, &event.data(), events));
            if !self.done {
                self.decoder.finish(&mut self.events);
            }
        }
        self.encode()
    }

    fn encode(&mut self) -> Bytes {
        let mut out = Vec::new();
        for event in self.events.drain(..) {
            if self.done {
                break;
            }
            match &event {
                StreamEvent::Usage(usage) => self.usage = Some(*usage),
                StreamEvent::Done | StreamEvent::Error { .. } => self.done = true,
                _ => {}
            }
            self.encoder.event(&event, &mut out);
        }
        Bytes::from(out)
    }
}

/// One upstream event's data into stream events (none once the stream is
/// done).
fn decode(decoder: &mut dyn StreamDecoder, done: bool, data: &str, out: &mut Vec<StreamEvent>) {
    if done || data.is_empty() {
        return;
    }
    decoder.event(data, out);
}
