//! What can go wrong with an upstream's answer after its headers reached
//! the client: the status is out, so the gateway can only end the answer
//! well (an error event in a stream, an error JSON in a translated answer)
//! and say what happened in the access log and in
//! `upstream_answer_faults_total`.

/// Tokens no single answer reports: a count above it (or a negative one,
/// read as `u64::MAX`) is the upstream's error, never charged.
pub const MAX_PLAUSIBLE_TOKENS: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerFault {
    /// The connection ended before the answer did.
    Cut,
    /// The upstream went silent past `timeouts.read`, or the exchange ran
    /// past `timeouts.total`.
    Timeout,
    /// An event, or a whole answer, that is not JSON or not of the shape its
    /// dialect gives it.
    Invalid,
    /// An event longer than `answers.max_event_bytes`.
    EventTooLarge,
    /// A whole answer to translate longer than `answers.max_translated_bytes`.
    AnswerTooLarge,
    /// The upstream reported an error inside its successful answer.
    UpstreamError,
    /// A usage count that is negative or beyond any real answer's: the
    /// request's reservation stands in its place.
    InvalidUsage,
    /// A complete answer that reported no usage: the reservation stands.
    NoUsage,
    /// Data after the answer's final event: dropped.
    TrailingData,
}

impl AnswerFault {
    /// Its label in the access log and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerFault::Cut => "cut",
            AnswerFault::Timeout => "timeout",
            AnswerFault::Invalid => "invalid_answer",
            AnswerFault::EventTooLarge => "event_too_large",
            AnswerFault::AnswerTooLarge => "answer_too_large",
            AnswerFault::UpstreamError => "upstream_error",
            AnswerFault::InvalidUsage => "invalid_usage",
            AnswerFault::NoUsage => "no_usage",
            AnswerFault::TrailingData => "trailing_data",
        }
    }

    pub const ALL: [AnswerFault; 9] = [
        AnswerFault::Cut,
        AnswerFault::Timeout,
        AnswerFault::Invalid,
        AnswerFault::EventTooLarge,
        AnswerFault::AnswerTooLarge,
        AnswerFault::UpstreamError,
        AnswerFault::InvalidUsage,
        AnswerFault::NoUsage,
        AnswerFault::TrailingData,
    ];

    /// What the client reads when this fault ends its answer.
    pub fn message(self) -> &'static str {
        match self {
            AnswerFault::Cut => "The upstream's answer ended before it was complete.",
            AnswerFault::Timeout => {
                "The upstream stopped sending its answer before it was complete."
            }
            AnswerFault::Invalid => "The upstream sent an answer the gateway cannot read.",
            AnswerFault::EventTooLarge => {
                "The upstream sent an event longer than the gateway's limit."
            }
            AnswerFault::AnswerTooLarge => {
                "The upstream's answer is longer than the gateway translates."
            }
            AnswerFault::UpstreamError => "The upstream failed while answering.",
            AnswerFault::InvalidUsage | AnswerFault::NoUsage | AnswerFault::TrailingData => {
                "The upstream's answer was not as its API defines it."
            }
        }
    }
}

/// Whether every count of `usage` is one an answer can report.
pub fn plausible(usage: &super::Usage) -> bool {
    [
        usage.input,
        usage.output,
        usage.cache_read,
        usage.cache_write,
    ]
    .iter()
    .all(|&n| n <= MAX_PLAUSIBLE_TOKENS)
}
