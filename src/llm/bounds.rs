//! The most of an upstream's answer the gateway holds: one event while it
//! waits for the event's end, and a whole answer it must read before it
//! can translate it. Streams themselves are never held, whatever their
//! length.

use crate::config::check::{count_in, Lowered};
use crate::config::schema;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerBounds {
    /// The longest stream event held while waiting for its end.
    pub max_event_bytes: usize,
    /// The longest whole answer held to translate it.
    pub max_translated_bytes: usize,
}

impl Default for AnswerBounds {
    fn default() -> Self {
        Self::from(&schema::Answers::default())
    }
}

impl From<&schema::Answers> for AnswerBounds {
    fn from(a: &schema::Answers) -> Self {
        Self {
            max_event_bytes: a.max_event_bytes,
            max_translated_bytes: a.max_translated_bytes,
        }
    }
}

/// The `answers` section: each bound at least what a real answer needs
/// (an event of a long tool call, a long completion) and at most what a
/// worker may hold for one request.
pub fn lower_answer_bounds(a: &schema::Answers) -> Lowered<AnswerBounds> {
    count_in(
        "answers.max_event_bytes",
        a.max_event_bytes,
        16 * 1024,
        64 << 20,
    )?;
    count_in(
        "answers.max_translated_bytes",
        a.max_translated_bytes,
        64 * 1024,
        256 << 20,
    )?;
    Ok(AnswerBounds::from(a))
}
