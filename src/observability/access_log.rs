//! One structured line per request. A worker formats the line into a buffer
//! it keeps and hands a copy to the writer thread (`access_writer.rs`); it
//! never writes, flushes or waits. The line never carries a credential:
//! only ids the gateway chose to record.
//!
//! The JSON is written by hand, field by field, with no allocation: it is
//! written for every request, and serde's general path cost several times
//! more per line.

use std::cell::RefCell;
use std::fmt::{self, Display, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::access_writer;
use crate::config::AccessLogFormat;

pub struct AccessRecord<'a> {
    pub time: Timestamp,
    pub request_id: &'a str,
    pub client: &'a dyn Display,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    /// The model that answered (or was last tried).
    pub model: Option<&'a str>,
    /// The model the client asked for, when a fallback took over (left out
    /// when none did).
    pub requested_model: Option<&'a str>,
    /// Fallback models moved to (left out when 0).
    pub fallbacks: u32,
    /// The caller's key id or token subject; never a credential.
    pub caller: Option<&'a str>,
    /// The API key's `owner`.
    pub owner: Option<&'a str>,
    pub team: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub status: u16,
    pub latency: Duration,
    pub ttfb: Option<Duration>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub attempts: u32,
    pub input_tokens: Option<u64>,
    /// Of `input_tokens`, read from the provider's prompt cache.
    pub cached_input_tokens: Option<u64>,
    /// What the answer cost, in nano-USD (`llm/cost.rs`); `None` when its
    /// model has no price or no usage was reported.
    pub cost_nano_usd: Option<u64>,
    pub output_tokens: Option<u64>,
    pub stream: bool,
    /// Left out when the request did not fail.
    pub error: Option<&'a str>,
    /// What was wrong with the upstream's answer once it had begun
    /// (`llm::AnswerFault`); left out when nothing was.
    pub answer_fault: Option<&'a str>,
    /// The request's trace (32 hex digits); left out with tracing off.
    pub trace_id: Option<&'a str>,
}

/// A moment as RFC 3339 UTC with milliseconds (`2026-11-27T16:02:30.123Z`).
/// The date and time of day are formatted once a second per thread.
#[derive(Clone, Copy)]
pub struct Timestamp(pub SystemTime);

thread_local! {
    /// The last whole second formatted, and its text up to the seconds.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

impl Timestamp {
    /// Appends `2026-11-27T16:02:30.123Z` (no escaping needed).
    fn write_to(&self, out: &mut Vec<u8>) {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let (secs, millis) = (since.as_secs(), since.subsec_millis());
        SECOND.with_borrow_mut(|(cached, text)| {
            if *cached != secs {
                *cached = secs;
                text.clear();
                let whole = UNIX_EPOCH + Duration::from_secs(secs);
                // `2026-11-27T16:02:30Z`: keep all but the `Z`.
                let _ = write!(text, "{}", humantime::format_rfc3339_seconds(whole));
                text.pop();
            }
            out.extend_from_slice(text.as_bytes());
        });
        out.extend_from_slice(&[
            b'.',
            b'0' + (millis / 100) as u8,
            b'0' + (millis / 10 % 10) as u8,
            b'0' + (millis % 10) as u8,
            b'Z',
        ]);
    }
}

impl Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = Vec::with_capacity(24);
        self.write_to(&mut text);
        f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
    }
}

thread_local! {
    /// Each worker's line buffer, reused for every line it formats.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

impl AccessRecord<'_> {
    /// Formats the line and queues it for the writer.
    pub fn emit(&self, format: AccessLogFormat) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            match format {
                AccessLogFormat::Json => self.write_json(line),
                AccessLogFormat::Text => self.write_text(line),
            }
            line.push(b'\n');
            access_writer::send(line);
        });
    }

    /// One JSON object, keys in a fixed order; milliseconds with three
    /// decimals (microseconds).
    pub fn write_json(&self, line: &mut Vec<u8>) {
        let mut json = JsonObject::new(line);
        json.key("time");
        json.out.push(b'"');
        self.time.write_to(json.out);
        json.out.push(b'"');
        json.string("request_id", self.request_id);
        json.display("client", self.client);
        json.string("method", self.method);
        json.string("path", self.path);
        json.string("route", self.route);
        json.optional_string("model", self.model);
        if let Some(requested) = self.requested_model {
            json.string("requested_model", requested);
        }
        if self.fallbacks > 0 {
            json.number("fallbacks", self.fallbacks);
        }
        json.optional_string("caller", self.caller);
        json.optional_string("owner", self.owner);
        json.optional_string("team", self.team);
        json.optional_string("upstream", self.upstream);
        json.number("status", self.status);
        json.millis("latency_ms", Some(self.latency));
        json.millis("ttfb_ms", self.ttfb);
        json.number("bytes_in", self.bytes_in);
        json.number("bytes_out", self.bytes_out);
        json.number("attempts", self.attempts);
        json.optional_number("input_tokens", self.input_tokens);
        json.optional_number("cached_input_tokens", self.cached_input_tokens);
        json.optional_number("output_tokens", self.output_tokens);
        json.usd("cost_usd", self.cost_nano_usd);
        json.raw("stream", if self.stream { "true" } else { "false" });
        if let Some(error) = self.error {
            json.string("error", error);
        }
        if let Some(fault) = self.answer_fault {
            json.string("answer_fault", fault);
        }
        if let Some(trace_id) = self.trace_id {
            json.string("trace_id", trace_id);
        }
        json.close();
    }

    fn write_text(&self, line: &mut Vec<u8>) {
        use std::io::Write;
        let ttfb = self
            .ttfb
            .map(|t| format!("{:.2}", t.as_secs_f64() * 1000.0));
        let _ = write!(
            line,
            "{} {} {} {} {} route={} model={} caller={} upstream={} status={} latency_ms={:.2} ttfb_ms={} bytes_out={} attempts={} fallbacks={}",
            self.time,
            self.request_id,
            self.client,
            self.method,
            self.path,
            self.route,
            self.model.unwrap_or("-"),
            self.caller.unwrap_or("-"),
            self.upstream.unwrap_or("-"),
            self.status,
            self.latency.as_secs_f64() * 1000.0,
            ttfb.as_deref().unwrap_or("-"),
            self.bytes_out,
            self.attempts,
            self.fallbacks,
        );
        if let Some(fault) = self.answer_fault {
            let _ = write!(line, " answer_fault={fault}");
        }
        if let Some(trace_id) = self.trace_id {
            let _ = write!(line, " trace_id={trace_id}");
        }
    }
}

/// Writes one JSON object's fields into a line, with no allocation.
struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> JsonObject<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    /// `,"key":` (keys are ours: nothing to escape).
    fn key(&mut self, key: &str) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn raw(&mut self, key: &str, value: &str) {
        self.key(key);
        self.out.extend_from_slice(value.as_bytes());
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        escape_into(self.out, value);
    }

    fn optional_string(&mut self, key: &str, value: Option<&str>) {
        match value {
            Some(value) => self.string(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// A value as its `Display` prints it, escaped, without a `String`.
    fn display(&mut self, key: &str, value: &dyn Display) {
        self.key(key);
        let mut escaped = EscapedWriter(self.out);
        escaped.0.push(b'"');
        let _ = write!(escaped, "{value}");
        escaped.0.push(b'"');
    }

    fn number(&mut self, key: &str, value: impl itoa::Integer) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    fn optional_number(&mut self, key: &str, value: Option<u64>) {
        match value {
            Some(value) => self.number(key, value),
            None => self.raw(key, "null"),
        }
    }

    /// Dollars from nano-dollars, nine decimals: `0.000012500`.
    fn usd(&mut self, key: &str, nanos: Option<u64>) {
        let Some(nanos) = nanos else {
            return self.raw(key, "null");
        };
        self.number(key, nanos / 1_000_000_000);
        let fraction = nanos % 1_000_000_000;
        self.out.push(b'.');
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(fraction);
        self.out.extend(std::iter::repeat_n(b'0', 9 - digits.len()));
        self.out.extend_from_slice(digits.as_bytes());
    }

    /// Milliseconds with three decimals: `12.345`.
    fn millis(&mut self, key: &str, value: Option<Duration>) {
        let Some(value) = value else {
            return self.raw(key, "null");
        };
        let micros = value.as_micros();
        self.number(key, micros / 1000);
        let fraction = (micros % 1000) as u32;
        self.out.push(b'.');
        self.out.extend_from_slice(&[
            b'0' + (fraction / 100) as u8,
            b'0' + (fraction / 10 % 10) as u8,
            b'0' + (fraction % 10) as u8,
        ]);
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

/// A JSON string of `value`, quotes included.
fn escape_into(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    EscapedWriter(out).push_escaped(value);
    out.push(b'"');
}

/// `fmt::Write` into a line, escaping for a JSON string.
struct EscapedWriter<'a>(&'a mut Vec<u8>);

/// Bytes a JSON string cannot hold as they are.
const fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

impl EscapedWriter<'_> {
    fn push_escaped(&mut self, value: &str) {
        let bytes = value.as_bytes();
        if !bytes.iter().any(|&b| needs_escape(b)) {
            // Ids, paths, names: the common case, one copy.
            self.0.extend_from_slice(bytes);
            return;
        }
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f | 0x7f => b"",
                _ => continue,
            };
            self.0.extend_from_slice(&bytes[start..i]);
            if escape.is_empty() {
                let _ = std::io::Write::write_fmt(self.0, format_args!("\\u{b:04x}"));
            } else {
                self.0.extend_from_slice(escape);
            }
            start = i + 1;
        }
        self.0.extend_from_slice(&bytes[start..]);
    }
}

impl fmt::Write for EscapedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_escaped(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_like_rfc3339_with_millis() {
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_795_795_350_042);
        assert_eq!(Timestamp(at).to_string(), "2026-11-27T16:02:30.042Z");
        // The cached second serves the next moment in it, and not the next second.
        let later = at + std::time::Duration::from_millis(900);
        assert_eq!(Timestamp(later).to_string(), "2026-11-27T16:02:30.942Z");
        let next = at + std::time::Duration::from_millis(1000);
        assert_eq!(Timestamp(next).to_string(), "2026-11-27T16:02:31.042Z");
    }

    fn record<'a>(client: &'a dyn Display, text: &'a str) -> AccessRecord<'a> {
        AccessRecord {
            time: Timestamp(UNIX_EPOCH),
            request_id: text,
            client,
            method: "POST",
            path: "/v1/chat/completions",
            route: "chat",
            model: Some(text),
            requested_model: None,
            fallbacks: 0,
            caller: None,
            owner: Some(text),
            team: None,
            upstream: None,
            status: 200,
            latency: Duration::from_micros(1_234_567),
            ttfb: Some(Duration::from_micros(5)),
            bytes_in: 1,
            bytes_out: 2,
            attempts: 1,
            input_tokens: Some(3),
            cached_input_tokens: Some(0),
            cost_nano_usd: Some(12_500),
            output_tokens: None,
            stream: false,
            error: None,
            answer_fault: None,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        }
    }

    fn json_of(record: &AccessRecord<'_>) -> serde_json::Value {
        let mut line = Vec::new();
        record.write_json(&mut line);
        serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&line)))
    }

    #[test]
    fn a_line_is_one_json_object() {
        let client = "127.0.0.1:5000";
        let value = json_of(&record(&client, "r\"1\\\n\u{1}é"));
        assert_eq!(value["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(value["request_id"], "r\"1\\\n\u{1}é");
        assert_eq!(value["client"], "127.0.0.1:5000");
        assert_eq!(value["latency_ms"], 1234.567);
        assert_eq!(value["ttfb_ms"], 0.005);
        assert_eq!(value["input_tokens"], 3);
        assert_eq!(value["cost_usd"], 0.0000125);
        assert_eq!(value["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(value["output_tokens"].is_null() && value["caller"].is_null());
        assert_eq!(value["stream"], false);
        assert!(value.get("fallbacks").is_none() && value.get("error").is_none());
    }

    proptest::proptest! {
        /// Whatever a client puts in the fields it controls, the line is one
        /// JSON object that reads back the same.
        #[test]
        fn any_text_reads_back(text in ".{0,40}") {
            let client = "c";
            let value = json_of(&record(&client, &text));
            proptest::prop_assert_eq!(value["request_id"].as_str(), Some(text.as_str()));
            proptest::prop_assert_eq!(value["model"].as_str(), Some(text.as_str()));
        }
    }
}
