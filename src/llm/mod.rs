//! OpenAI / Anthropic request shapes: what the gateway needs to read from, and
//! change in, a request body.

mod request;
mod usage;

pub use request::{inspect, rewrite, BodyError, Inspected, MAX_MODEL_LEN};
pub use usage::{Usage, UsageScanner};
