//! The chat APIs the gateway speaks with clients and upstreams.

use super::wire::{Wire, ANTHROPIC, OPENAI_CHAT};

/// A chat API: the wire format of requests, answers, streams and errors.
/// What each one is lives in its [`Wire`]; this names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`), and every
    /// OpenAI-compatible server (vLLM, Ollama, ...).
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
}

impl Dialect {
    /// Every dialect, in [`Dialect::index`] order.
    pub const ALL: [Dialect; 2] = [Dialect::OpenAi, Dialect::Anthropic];
    /// How many there are, for tables indexed by [`Dialect::index`].
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// Its behaviour.
    pub fn wire(self) -> &'static dyn Wire {
        match self {
            Dialect::OpenAi => &OPENAI_CHAT,
            Dialect::Anthropic => &ANTHROPIC,
        }
    }

    /// The dialect a client speaks on this exact path, if it is a chat path.
    pub fn of_path(path: &str) -> Option<Dialect> {
        Self::ALL.into_iter().find(|d| d.wire().chat_path() == path)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }
}
