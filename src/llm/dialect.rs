//! The chat APIs the gateway speaks: with upstreams, every [`Dialect`];
//! with clients, the [`ClientDialect`]s among them.

use super::wire::{ClientWire, UpstreamWire, ANTHROPIC, GEMINI, OPENAI_CHAT};

/// A wire format of chat requests, answers, streams and errors. What each
/// one is lives in its wire (`llm/wire/`); this names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`), and every
    /// OpenAI-compatible server (vLLM, Ollama, Azure, ...).
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
    /// Gemini's `generateContent` (Gemini API, Vertex AI): upstreams only.
    Gemini,
}

/// A dialect clients speak to the gateway, on a path of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientDialect {
    OpenAi,
    Anthropic,
}

impl Dialect {
    /// Every dialect, in [`Dialect::index`] order.
    pub const ALL: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini];
    /// How many there are, for tables indexed by [`Dialect::index`].
    pub const COUNT: usize = Self::ALL.len();

    pub fn index(self) -> usize {
        self as usize
    }

    /// How the gateway talks to an upstream of this dialect.
    pub fn upstream(self) -> &'static dyn UpstreamWire {
        match self {
            Dialect::OpenAi => &OPENAI_CHAT,
            Dialect::Anthropic => &ANTHROPIC,
            Dialect::Gemini => &GEMINI,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::Gemini => "gemini",
        }
    }
}

impl ClientDialect {
    pub const ALL: [ClientDialect; 2] = [ClientDialect::OpenAi, ClientDialect::Anthropic];

    /// The wire format it is.
    pub fn dialect(self) -> Dialect {
        match self {
            ClientDialect::OpenAi => Dialect::OpenAi,
            ClientDialect::Anthropic => Dialect::Anthropic,
        }
    }

    /// How the gateway serves a client of this dialect.
    pub fn client(self) -> &'static dyn ClientWire {
        match self {
            ClientDialect::OpenAi => &OPENAI_CHAT,
            ClientDialect::Anthropic => &ANTHROPIC,
        }
    }

    /// The dialect a client speaks on this exact path, if it is a chat path.
    pub fn of_path(path: &str) -> Option<ClientDialect> {
        Self::ALL
            .into_iter()
            .find(|d| d.client().chat_path() == path)
    }

    /// The API a path belongs to, chat or not, for the shape of its
    /// answers and errors: Anthropic's under `/v1/messages`
    /// (`/v1/messages/count_tokens`, say), else OpenAI's.
    pub fn of_api_path(path: &str) -> ClientDialect {
        let under = |prefix: &str| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        };
        Self::ALL
            .into_iter()
            .find(|d| under(d.client().chat_path()))
            .unwrap_or(ClientDialect::OpenAi)
    }
}

impl PartialEq<Dialect> for ClientDialect {
    fn eq(&self, other: &Dialect) -> bool {
        self.dialect() == *other
    }
}

impl PartialEq<ClientDialect> for Dialect {
    fn eq(&self, other: &ClientDialect) -> bool {
        *self == other.dialect()
    }
}
