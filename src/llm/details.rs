//! An answer's id and finish reasons, read in passing for traces
//! (`gen_ai.response.id`, `gen_ai.response.finish_reasons`), from a
//! dialect's JSON or event stream: the first `"id"` near the start (OpenAI's
//! completion id, Anthropic's message id) and every non-null value of the
//! dialect's finish-reason key (its wire names it: `finish_reason`,
//! `stop_reason`, ...). Nothing is parsed but those values;
//! inside JSON strings their quotes would be escaped, so a match is a real
//! member. Only runs while tracing is on.

use super::Dialect;

/// How far into the answer its id is looked for.
const HEAD: usize = 2048;
/// Bytes kept from one piece to the next, so that a member split across
/// pieces is still found.
const CARRY: usize = 64;
/// At most this many distinct finish reasons are kept (one per choice).
const MAX_REASONS: usize = 8;

#[derive(Debug)]
pub struct AnswerDetails {
    /// The finish-reason key, quotes and all.
    key: &'static [u8],
    seen: usize,
    carry: Vec<u8>,
    pub id: Option<String>,
    pub finish_reasons: Vec<String>,
}

impl AnswerDetails {
    /// For an answer in `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            key: dialect.upstream().finish_reason_key(),
            seen: 0,
            carry: Vec::new(),
            id: None,
            finish_reasons: Vec::new(),
        }
    }

    pub fn feed(&mut self, piece: &[u8]) {
        let carried = self.carry.len();
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(piece);
        if self.id.is_none() && self.seen < HEAD {
            let window = &data[..data.len().min(HEAD - self.seen + carried)];
            self.id = string_member(window, b"\"id\"", 0).map(|(value, _)| value);
        }
        let mut from = 0;
        while let Some(at) = find(&data[from..], self.key) {
            let key_end = from + at + self.key.len();
            match string_value(&data, key_end) {
                Some((value, end)) if end > carried => {
                    if self.finish_reasons.len() < MAX_REASONS
                        && !self.finish_reasons.contains(&value)
                    {
                        self.finish_reasons.push(value);
                    }
                    from = end;
                }
                Some((_, end)) => from = end,
                None => from = key_end,
            }
        }
        self.seen += piece.len();
        let keep = data.len().min(CARRY);
        self.carry = data[data.len() - keep..].to_vec();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The string value of the first `key` member at or after `from`.
fn string_member(data: &[u8], key: &[u8], from: usize) -> Option<(String, usize)> {
    let at = from + find(&data[from..], key)?;
    string_value(data, at + key.len())
}

/// After a member's key: `: "value"`; the value and where it ends. `None`
/// for anything else (`null`, a number, a value cut off by the piece's end).
fn string_value(data: &[u8], mut i: usize) -> Option<(String, usize)> {
    let skip_space = |i: &mut usize| {
        while data.get(*i).is_some_and(u8::is_ascii_whitespace) {
            *i += 1;
        }
    };
    skip_space(&mut i);
    (data.get(i) == Some(&b':')).then_some(())?;
    i += 1;
    skip_space(&mut i);
    (data.get(i) == Some(&b'"')).then_some(())?;
    let start = i + 1;
    let len = data[start..].iter().take(256).position(|&b| b == b'"')?;
    let value = &data[start..start + len];
    // Ids and reasons are plain tokens: anything escaped is not one.
    if value.contains(&b'\\') {
        return None;
    }
    Some((String::from_utf8_lossy(value).into_owned(), start + len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dialect: Dialect, pieces: &[&[u8]]) -> AnswerDetails {
        let mut details = AnswerDetails::new(dialect);
        for piece in pieces {
            details.feed(piece);
        }
        details
    }

    #[test]
    fn openai_json_and_stream() {
        let json = br#"{"id":"chatcmpl-1","choices":[{"message":{"content":"say \"finish_reason\": \"x\""},"finish_reason":"stop"}],"usage":{}}"#;
        let d = read(Dialect::OpenAi, &[json]);
        assert_eq!(d.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(d.finish_reasons, vec!["stop"]);
        // Split anywhere, the same.
        for cut in 1..json.len() {
            let d = read(Dialect::OpenAi, &[&json[..cut], &json[cut..]]);
            assert_eq!(d.id.as_deref(), Some("chatcmpl-1"), "cut at {cut}");
            assert_eq!(d.finish_reasons, vec!["stop"], "cut at {cut}");
        }
        let stream = b"data: {\"id\":\"chatcmpl-2\",\"choices\":[{\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}]}\n\ndata: {\"id\":\"chatcmpl-2\",\"choices\":[{\"delta\":{},\"finish_reason\":\"length\"}]}\n\ndata: [DONE]\n\n";
        let d = read(Dialect::OpenAi, &[stream]);
        assert_eq!(d.id.as_deref(), Some("chatcmpl-2"));
        assert_eq!(d.finish_reasons, vec!["length"]);
    }

    #[test]
    fn anthropic_stream() {
        let stream = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"stop_reason\":null}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\" : \"end_turn\"}}\n\n";
        let d = read(Dialect::Anthropic, &[&stream[..40], &stream[40..]]);
        assert_eq!(d.id.as_deref(), Some("msg_1"));
        assert_eq!(d.finish_reasons, vec!["end_turn"]);
    }
}
