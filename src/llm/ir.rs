//! The small internal model both chat dialects translate through: a
//! request, an answer, and the events of a streamed answer.

use serde_json::Value;

pub use crate::llm::Usage;

/// A chat request, as far as both dialects can say it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// System prompt blocks, in order.
    pub system: Vec<String>,
    pub messages: Vec<Message>,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub stop: Vec<String>,
    pub stream: bool,
    /// OpenAI clients: a final usage chunk was asked for.
    pub include_usage: bool,
    pub tools: Vec<Tool>,
    pub tool_choice: Option<ToolChoice>,
    /// `Some(false)`: one tool call at most.
    pub parallel_tool_calls: Option<bool>,
    /// The end user, for abuse monitoring.
    pub user: Option<String>,
    /// How hard a reasoning model thinks: `low`, `medium`, `high`, ...
    pub reasoning_effort: Option<String>,
    /// Structured output: a JSON schema the answer must follow, and its name.
    pub json_schema: Option<(String, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    Image(Image),
    /// An assistant's call of a tool; `arguments` is JSON text.
    ToolCall {
        id: String,
        name: String,
        arguments: String,
    },
    /// What a tool answered, sent back by the user.
    ToolResult {
        id: String,
        content: Vec<Part>,
        is_error: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Image {
    Base64 { media_type: String, data: String },
    Url(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: Option<String>,
    /// JSON schema of the tool's input.
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ToolChoice {
    Auto,
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Tool(String),
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    pub id: String,
    pub model: String,
    /// Text and tool calls, in order.
    pub content: Vec<Part>,
    pub stop: StopReason,
    /// `None`: the answer reported none (which is not zero tokens).
    pub usage: Option<Usage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
    ContentFilter,
}

/// One step of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Start {
        id: String,
        model: String,
    },
    Text(String),
    /// A tool call begins; `index` counts the answer's tool calls from 0.
    ToolStart {
        index: usize,
        id: String,
        name: String,
    },
    /// More of a tool call's arguments (JSON text, in pieces).
    ToolArguments {
        index: usize,
        fragment: String,
    },
    Stop(StopReason),
    /// Usage so far (each field the latest known).
    Usage(Usage),
    /// The upstream failed mid-stream.
    Error {
        kind: ErrorKind,
        message: String,
    },
    Done,
}

/// An error answer, before a dialect's envelope is put around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorBody<'a> {
    pub kind: ErrorKind,
    pub message: &'a str,
    /// A machine-readable code (OpenAI's `code`), when there is one.
    pub code: Option<&'a str>,
    /// The request parameter at fault (OpenAI's `param`).
    pub param: Option<&'a str>,
}

impl<'a> ErrorBody<'a> {
    pub fn new(kind: ErrorKind, message: &'a str) -> Self {
        Self {
            kind,
            message,
            code: None,
            param: None,
        }
    }
}

/// What went wrong, in the terms both dialects share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    /// 413: Anthropic names it; OpenAI calls it an invalid request.
    TooLarge,
    RateLimit,
    Overloaded,
    Server,
}

impl ErrorKind {
    /// The kind a status means, for answers that name none.
    pub fn of_status(status: u16) -> Self {
        match status {
            401 => ErrorKind::Authentication,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            413 => ErrorKind::TooLarge,
            429 => ErrorKind::RateLimit,
            503 | 529 => ErrorKind::Overloaded,
            400..=499 => ErrorKind::InvalidRequest,
            _ => ErrorKind::Server,
        }
    }
}
