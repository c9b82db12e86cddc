//! Metrics, the access log and trace export.

pub mod access_log;
pub mod access_writer;
pub mod metrics;
pub mod redact;
pub mod traces;
