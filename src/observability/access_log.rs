//! One structured line per request, on the `access` log target so it can be
//! routed or silenced on its own (`RUST_LOG=access=off`). It never carries a
//! credential: only ids the gateway chose to record.

use serde::Serialize;

use crate::config::AccessLogFormat;

#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    pub time: String,
    pub request_id: &'a str,
    pub client: String,
    pub method: &'a str,
    pub path: &'a str,
    pub route: &'a str,
    /// The model that answered (or was last tried).
    pub model: Option<&'a str>,
    /// The model the client asked for, when a fallback took over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_model: Option<&'a str>,
    /// Fallback models moved to.
    #[serde(skip_serializing_if = "is_zero")]
    pub fallbacks: u32,
    /// The caller's key id or token subject; never a credential.
    pub caller: Option<&'a str>,
    /// The API key's `owner`.
    pub owner: Option<&'a str>,
    pub team: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub status: u16,
    #[serde(serialize_with = "millis")]
    pub latency_ms: f64,
    #[serde(serialize_with = "optional_millis")]
    pub ttfb_ms: Option<f64>,
    pub bytes_in: usize,
    pub bytes_out: usize,
    pub attempts: u32,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Milliseconds with three decimals (microseconds), not float noise.
fn millis<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((ms * 1000.0).round() / 1000.0)
}

fn optional_millis<S: serde::Serializer>(ms: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => millis(ms, s),
        None => s.serialize_none(),
    }
}

impl AccessRecord<'_> {
    pub fn emit(&self, format: AccessLogFormat) {
        if !log::log_enabled!(target: "access", log::Level::Info) {
            return;
        }
        match format {
            AccessLogFormat::Json => match serde_json::to_string(self) {
                Ok(line) => log::info!(target: "access", "{line}"),
                Err(e) => log::warn!("cannot encode access log: {e}"),
            },
            AccessLogFormat::Text => log::info!(
                target: "access",
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
                self.latency_ms,
                self.ttfb_ms.map_or("-".to_string(), |t| format!("{t:.2}")),
                self.bytes_out,
                self.attempts,
                self.fallbacks,
            ),
        }
    }
}
