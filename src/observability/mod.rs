//! Metrics and the access log.

pub mod access_log;
pub mod access_writer;
pub mod metrics;
pub mod redact;
