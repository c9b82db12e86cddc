//! A streamed answer translated event by event as it passes: upstream bytes
//! in any pieces → events → the client dialect's events. Nothing is held
//! back but the part of an event that has not fully arrived.

use bytes::Bytes;

use crate::llm::fault::AnswerFault;
use crate::llm::ir::{ErrorKind, StreamEvent, Usage};
use crate::llm::sse::Framer;
use crate::llm::wire::{Malformed, StreamDecoder, StreamEncoder};
use crate::llm::{ClientDialect, Dialect};

pub struct StreamTranslator {
    framer: Framer,
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    usage: Option<Usage>,
    /// The client's stream has ended: its final event, or an error event.
    done: bool,
    /// What went wrong, if anything did.
    fault: Option<AnswerFault>,
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
            fault: None,
            events: Vec::new(),
        }
    }

    /// The usage the upstream reported, once it has.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// What went wrong with the upstream's stream, if anything did.
    pub fn fault(&self) -> Option<AnswerFault> {
        self.fault
    }

    /// The client's stream has ended (completely, or with an error event):
    /// nothing the upstream sends now reaches it.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Translates the events a piece of the upstream's body completes.
    pub fn feed(&mut self, chunk: &[u8]) -> Bytes {
        let mut read = EventReader::new(self.done);
        let (decoder, events) = (&mut *self.decoder, &mut self.events);
        let framed = self
            .framer
            .feed(chunk, |event| read.event(decoder, &event.data(), events));
        if let Some(Malformed(why)) = read.malformed {
            self.end_with(
                AnswerFault::Invalid,
                format!("The upstream sent an event the gateway cannot read: {why}."),
            );
        } else if framed.is_err() {
            self.framer.take_pending();
            if !self.done {
                self.end_with(
                    AnswerFault::EventTooLarge,
                    AnswerFault::EventTooLarge.message().into(),
                );
            }
        }
        let out = self.encode();
        read.tell_trailing(&mut self.fault);
        out
    }

    /// The upstream's body ended. A stream the upstream ended before its
    /// answer did ends with an error event in the client's dialect: it is
    /// closed cleanly, and never mistaken for a complete answer.
    pub fn finish(&mut self) -> Bytes {
        let mut read = EventReader::new(self.done);
        let (decoder, events) = (&mut *self.decoder, &mut self.events);
        // An event without its blank line: complete only if it reads.
        self.framer
            .finish(|event| read.event(decoder, &event.data(), events));
        if !read.ended && read.malformed.is_none() {
            self.decoder.finish(&mut self.events);
        }
        let mut out = self.encode().to_vec();
        if !self.done {
            self.end_with(AnswerFault::Cut, AnswerFault::Cut.message().into());
            out.extend_from_slice(&self.encode());
        }
        read.tell_trailing(&mut self.fault);
        Bytes::from(out)
    }

    /// The exchange failed (`fault`: the connection broke, or a timeout):
    /// the error event that ends the client's stream, unless it has ended.
    pub fn fail(&mut self, fault: AnswerFault) -> Bytes {
        if self.done {
            return Bytes::new();
        }
        self.end_with(fault, fault.message().into());
        self.encode()
    }

    fn end_with(&mut self, fault: AnswerFault, message: String) {
        self.fault = Some(fault);
        self.events.push(StreamEvent::Error {
            kind: ErrorKind::Server,
            message,
        });
    }

    fn encode(&mut self) -> Bytes {
        let mut out = Vec::new();
        for event in self.events.drain(..) {
            if self.done {
                break;
            }
            match &event {
                StreamEvent::Usage(usage) => self.usage = Some(*usage),
                StreamEvent::Done => self.done = true,
                StreamEvent::Error { .. } => {
                    self.done = true;
                    self.fault.get_or_insert(AnswerFault::UpstreamError);
                }
                _ => {}
            }
            self.encoder.event(&event, &mut out);
        }
        Bytes::from(out)
    }
}

/// Reads the events of one piece of the stream: into stream events until
/// one ends the answer (or cannot be read); what has data after that is
/// trailing. Whether an event trails does not depend on which piece it
/// came in.
struct EventReader {
    ended: bool,
    malformed: Option<Malformed>,
    trailing: bool,
}

impl EventReader {
    fn new(ended: bool) -> Self {
        Self {
            ended,
            malformed: None,
            trailing: false,
        }
    }

    fn event(&mut self, decoder: &mut dyn StreamDecoder, data: &str, out: &mut Vec<StreamEvent>) {
        if data.is_empty() || self.malformed.is_some() {
            return;
        }
        if self.ended {
            self.trailing = true;
            return;
        }
        let before = out.len();
        match decoder.event(data, out) {
            Ok(()) => {
                self.ended = out[before..]
                    .iter()
                    .any(|e| matches!(e, StreamEvent::Done | StreamEvent::Error { .. }));
            }
            Err(malformed) => self.malformed = Some(malformed),
        }
    }

    /// Data after the end is dropped, and told (unless a fault was).
    fn tell_trailing(&self, fault: &mut Option<AnswerFault>) {
        if self.trailing {
            fault.get_or_insert(AnswerFault::TrailingData);
        }
    }
}
