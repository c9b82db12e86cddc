//! Server-sent events, read from bytes that arrive in any pieces.

/// Longest event held while waiting for its end.
const MAX_EVENT: usize = 1024 * 1024;

/// One event: its `event:` name (if any) and its `data:` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events, whatever the chunk boundaries.
#[derive(Default)]
pub struct Parser {
    /// Bytes after the last complete line.
    partial: Vec<u8>,
    name: Option<String>,
    data: Vec<String>,
    /// Bytes of the complete lines of the event being read.
    held: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

impl Parser {
    /// Feeds bytes; returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, TooLong> {
        let mut events = Vec::new();
        let mut rest = chunk;
        while let Some(at) = rest.iter().position(|&b| b == b'\n') {
            let (head, tail) = rest.split_at(at);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(head, &mut events);
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(head);
                self.line(&line, &mut events);
            }
        }
        self.partial.extend_from_slice(rest);
        if self.held + self.partial.len() > MAX_EVENT {
            return Err(TooLong);
        }
        Ok(events)
    }

    /// The end of the stream: an event not closed by a blank line still counts.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, &mut events);
        }
        self.line(b"", &mut events);
        events
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Event>) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if !self.data.is_empty() || self.name.is_some() {
                events.push(Event {
                    name: self.name.take(),
                    data: std::mem::take(&mut self.data).join("\n"),
                });
            }
            self.held = 0;
            return;
        }
        self.held += line.len();
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => self.name = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            // Comments (`: ping`), `id:` and `retry:` carry nothing to translate.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_at_any_chunking() {
        let text = b"event: a\ndata: {\"x\":1}\n\n: comment\ndata: one\r\ndata: two\r\n\r\ndata: [DONE]\n\n";
        let whole = Parser::default().feed(text).unwrap();
        assert_eq!(
            whole,
            vec![
                Event {
                    name: Some("a".into()),
                    data: "{\"x\":1}".into()
                },
                Event {
                    name: None,
                    data: "one\ntwo".into()
                },
                Event {
                    name: None,
                    data: "[DONE]".into()
                },
            ]
        );
        for size in 1..text.len() {
            let mut parser = Parser::default();
            let mut events = Vec::new();
            for piece in text.chunks(size) {
                events.extend(parser.feed(piece).unwrap());
            }
            events.extend(parser.finish());
            assert_eq!(events, whole, "chunks of {size}");
        }
    }

    #[test]
    fn an_unterminated_last_event_counts_at_the_end() {
        let mut parser = Parser::default();
        assert!(parser.feed(b"data: last").unwrap().is_empty());
        assert_eq!(
            parser.finish(),
            vec![Event {
                name: None,
                data: "last".into()
            }]
        );
    }

    #[test]
    fn endless_events_are_refused() {
        let mut parser = Parser::default();
        let line = vec![b'x'; 64 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..20 {
            result = parser.feed(&line);
        }
        assert_eq!(result, Err(TooLong));
    }
}
