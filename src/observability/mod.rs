//! Metrics, the access log, trace export and request ids.

pub mod access_log;
pub mod access_writer;
pub mod metrics;
pub mod redact;
pub mod request_id;
pub mod settings;
pub mod traces;
