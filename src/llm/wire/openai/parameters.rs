//! Parameters of a Chat Completions request, and what happens to each on
//! the way to another dialect. `golden.rs` holds the parser and the
//! table in docs/routing-and-translation.md to it.

/// Parameters of a Chat Completions request, and what happens to each on
/// the way to another dialect. `golden.rs` holds the parser and the
/// table in docs/routing-and-translation.md to it.
pub const PARAMETERS: &[(&str, &str)] = &[
    ("messages", "translated"),
    ("model", "translated"),
    ("max_tokens", "translated"),
    ("max_completion_tokens", "translated"),
    ("temperature", "translated (Anthropic takes 0 to 1)"),
    ("top_p", "translated"),
    ("stop", "translated"),
    ("stream", "translated"),
    ("stream_options", "translated (`include_usage`)"),
    ("tools", "translated (function tools)"),
    ("tool_choice", "translated"),
    ("parallel_tool_calls", "translated"),
    ("user", "translated"),
    (
        "safety_identifier",
        "translated (as the user, when `user` is not set)",
    ),
    ("reasoning_effort", "translated"),
    ("response_format", "translated (`text`, `json_schema`)"),
    ("n", "accepted when 1"),
    ("logprobs", "accepted when false"),
    ("top_logprobs", "accepted when 0"),
    ("frequency_penalty", "accepted when 0"),
    ("presence_penalty", "accepted when 0"),
    ("logit_bias", "accepted when empty"),
    ("modalities", "accepted when [\"text\"]"),
    ("store", "accepted when false"),
    ("audio", "refused"),
    ("function_call", "refused (use tool_choice)"),
    ("functions", "refused (use tools)"),
    ("metadata", "refused"),
    ("moderation", "refused"),
    ("prediction", "refused"),
    ("prompt_cache_key", OPENAI_HINT),
    ("prompt_cache_options", "refused"),
    ("prompt_cache_retention", OPENAI_HINT),
    ("seed", "refused"),
    ("service_tier", OPENAI_HINT),
    ("verbosity", "refused"),
    ("web_search_options", "refused"),
];

/// The fate of a parameter that steers only OpenAI's own servers.
const OPENAI_HINT: &str = "dropped: it steers only OpenAI's servers";
