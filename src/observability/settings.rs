//! The `tracing` and `access_log` sections, lowered.

use std::time::Duration;

use crate::config::check::{count_in, duration_in, ensure, fault, word, Lowered, MINUTE};
use crate::config::{schema, AccessLogFormat};

#[derive(Debug, Clone, PartialEq)]
pub struct TracingSettings {
    /// The traces URL; `None`: from `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: Option<String>,
    /// `None`: from `OTEL_SERVICE_NAME`.
    pub service_name: Option<String>,
    /// `None`: from `OTEL_TRACES_SAMPLER` / `_ARG`.
    pub sample_ratio: Option<f64>,
    pub queue_size: usize,
    pub export_interval: Duration,
    pub export_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogOutput {
    /// A file the lines are appended to; stdout when `None`.
    pub path: Option<String>,
    /// Bytes of lines that may wait for the writer before new ones are
    /// dropped.
    pub buffer_bytes: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    pub enabled: bool,
    pub format: AccessLogFormat,
}

/// `None` when tracing is off (`enabled: false`, or `OTEL_SDK_DISABLED=true`
/// as the OpenTelemetry SDKs agree).
pub fn tracing(t: &schema::Tracing) -> Lowered<Option<TracingSettings>> {
    let disabled_by_env =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if !t.enabled || disabled_by_env {
        return Ok(None);
    }
    if let Some(endpoint) = &t.endpoint {
        // The exporter's HTTP client speaks cleartext: a collector on the
        // pod or cluster network (sidecar, DaemonSet agent, gateway).
        let uri: http::Uri = endpoint
            .parse()
            .or_else(|e| fault("tracing.endpoint", format!("not a URL: {e}")))?;
        ensure(
            uri.scheme_str() == Some("http") && uri.host().is_some(),
            || "tracing.endpoint".into(),
            "must be an http:// URL of an OTLP collector (e.g. http://otel-collector:4318/v1/traces)",
        )?;
    }
    if let Some(ratio) = t.sample_ratio {
        ensure(
            (0.0..=1.0).contains(&ratio),
            || "tracing.sample_ratio".into(),
            "must be between 0 and 1",
        )?;
    }
    Ok(Some(TracingSettings {
        endpoint: t.endpoint.clone(),
        service_name: t.service_name.clone(),
        sample_ratio: t.sample_ratio,
        queue_size: count_in("tracing.queue_size", t.queue_size, 16, 1 << 20)?,
        export_interval: duration_in(
            "tracing.export_interval",
            t.export_interval,
            Duration::from_millis(10),
            MINUTE,
        )?,
        export_timeout: duration_in(
            "tracing.export_timeout",
            t.export_timeout,
            Duration::from_millis(10),
            MINUTE,
        )?,
    }))
}

/// Where access lines go: bound when the process starts.
pub fn access_log_output(a: &schema::AccessLog) -> Lowered<AccessLogOutput> {
    Ok(AccessLogOutput {
        path: match &a.path {
            Some(path) if path.trim().is_empty() => {
                return fault(
                    "access_log.path",
                    "must not be empty (leave it out for stdout)",
                )
            }
            path => path.clone(),
        },
        buffer_bytes: count_in("access_log.buffer_bytes", a.buffer_bytes, 4096, 1 << 30)?,
    })
}

/// Whether and how access lines are written: follows reloads.
pub fn access_log(a: &schema::AccessLog) -> Lowered<AccessLog> {
    Ok(AccessLog {
        enabled: a.enabled,
        format: word::<AccessLogFormat>("access_log.format", &a.format)?,
    })
}
