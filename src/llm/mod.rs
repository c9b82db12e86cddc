//! The chat APIs: what the gateway reads from and changes in a request body,
//! usage read from answers, and translation between the two dialects
//! (OpenAI Chat Completions and Anthropic Messages).

mod cost;
mod details;
mod dialect;
mod request;
pub mod sse;
pub mod translate;
mod usage;

pub use cost::{lower_prices, micro_usd, Price, Pricing};
pub use details::AnswerDetails;
pub use dialect::Dialect;
pub use request::{inspect, rewrite, BodyError, Inspected, MAX_MODEL_LEN};
pub use usage::{Framing, Usage, UsageScanner};
