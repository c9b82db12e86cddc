//! The chat APIs: what the gateway reads from and changes in a request
//! body, the wire formats it speaks (`wire/`, one module each), the
//! internal model they translate through (`ir.rs`), usage and finish
//! reasons read from answers in passing, and costs.

mod bounds;
mod cost;
mod details;
mod dialect;
pub mod fault;
mod hints;
pub mod ir;
mod request;
pub mod sse;
pub mod translate;
mod usage;
pub mod wire;

pub use bounds::{lower_answer_bounds, AnswerBounds};
pub use cost::{lower_prices, micro_usd, Price, Pricing};
pub use details::AnswerDetails;
pub use dialect::{ClientDialect, Dialect};
pub use fault::AnswerFault;
pub use hints::{Dropped, Hint};
pub use request::{cap_max_tokens, inspect, rewrite, BodyError, Inspected, MAX_MODEL_LEN};
pub use usage::{Framing, Usage, UsageScanner};
