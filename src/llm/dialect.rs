//! The two chat APIs the gateway speaks with clients and upstreams.

/// A chat API: the wire format of requests, answers, streams and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// OpenAI Chat Completions (`POST /v1/chat/completions`), and every
    /// OpenAI-compatible server (vLLM, Ollama, ...).
    OpenAi,
    /// Anthropic Messages (`POST /v1/messages`).
    Anthropic,
}

impl Dialect {
    /// How many there are, for tables indexed by [`Dialect::index`].
    pub const COUNT: usize = 2;

    pub fn index(self) -> usize {
        self as usize
    }

    /// The dialect a client speaks on this exact path, if it is a chat path.
    pub fn of_path(path: &str) -> Option<Dialect> {
        match path {
            "/v1/chat/completions" => Some(Dialect::OpenAi),
            "/v1/messages" => Some(Dialect::Anthropic),
            _ => None,
        }
    }

    /// Where this dialect's chat endpoint is.
    pub fn path(self) -> &'static str {
        match self {
            Dialect::OpenAi => "/v1/chat/completions",
            Dialect::Anthropic => "/v1/messages",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
        }
    }
}
