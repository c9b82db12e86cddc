//! A streamed answer translated event by event as it passes: upstream bytes
//! in any pieces → events → the client dialect's events. Nothing is held
//! back but the part of an event that has not fully arrived.

use bytes::Bytes;

use super::ir::{ErrorKind, StreamEvent, Usage};
use super::sse::Parser;
use super::{anthropic, openai};
use crate::llm::Dialect;

enum Decoder {
    OpenAi(openai::Decoder),
    Anthropic(anthropic::Decoder),
}

enum Encoder {
    OpenAi(openai::Encoder),
    Anthropic(anthropic::Encoder),
}

pub struct StreamTranslator {
    parser: Parser,
    decoder: Decoder,
    encoder: Encoder,
    usage: Option<Usage>,
    done: bool,
    failed: bool,
    events: Vec<StreamEvent>,
}

impl StreamTranslator {
    /// From the upstream's `from` to the client's `to`; `include_usage`:
    /// an OpenAI client asked for the final usage chunk.
    pub fn new(from: Dialect, to: Dialect, include_usage: bool) -> Self {
        Self {
            parser: Parser::default(),
            decoder: match from {
                Dialect::OpenAi => Decoder::OpenAi(Default::default()),
                Dialect::Anthropic => Decoder::Anthropic(Default::default()),
            },
            encoder: match to {
                Dialect::OpenAi => Encoder::OpenAi(openai::Encoder::new(include_usage)),
                Dialect::Anthropic => Encoder::Anthropic(Default::default()),
            },
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
        match self.parser.feed(chunk) {
            Ok(events) => {
                for event in events {
                    self.decode(&event.data);
                }
            }
            Err(_) => {
                self.failed = true;
                self.events.push(StreamEvent::Error {
                    kind: ErrorKind::Server,
                    message: "The upstream sent an event over 1 MiB.".into(),
                });
            }
        }
        self.encode()
    }

    /// The upstream's body ended. A stream the upstream ended properly is
    /// closed in the client's dialect; a cut one stays cut (no `[DONE]`),
    /// so the client never mistakes it for a complete answer.
    pub fn finish(&mut self) -> Bytes {
        if !self.failed {
            for event in self.parser.finish() {
                self.decode(&event.data);
            }
        }
        self.encode()
    }

    fn decode(&mut self, data: &str) {
        if self.done || data.is_empty() {
            return;
        }
        match &mut self.decoder {
            Decoder::OpenAi(d) => d.event(data, &mut self.events),
            Decoder::Anthropic(d) => d.event(data, &mut self.events),
        }
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
            match &mut self.encoder {
                Encoder::OpenAi(e) => e.event(&event, &mut out),
                Encoder::Anthropic(e) => e.event(&event, &mut out),
            }
        }
        Bytes::from(out)
    }
}
