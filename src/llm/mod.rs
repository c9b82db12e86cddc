//! OpenAI / Anthropic request shapes: what the gateway needs to read from, and
//! change in, a request body.

mod request;

pub use request::{inspect, rewrite_model, BodyError, Inspected, MAX_MODEL_LEN};
