//! Parameters of a Messages request, and what happens to each on the way
//! to another dialect. `golden.rs` holds the parser and the docs'
//! table to it.

/// Parameters of a Messages request, and what happens to each on the way
/// to another dialect. `golden.rs` holds the parser and the docs'
/// table to it.
pub const PARAMETERS: &[(&str, &str)] = &[
    ("max_tokens", "translated"),
    ("messages", "translated"),
    ("model", "translated"),
    ("system", "translated"),
    ("stop_sequences", "translated"),
    ("stream", "translated"),
    ("temperature", "translated"),
    ("top_p", "translated"),
    ("tools", "translated (custom tools)"),
    ("tool_choice", "translated"),
    ("metadata", "translated (`user_id`)"),
    ("output_config", "translated (`effort`, `format`)"),
    ("thinking", "translated (`enabled`, `adaptive`, `disabled`)"),
    ("cache_control", ANTHROPIC_HINT),
    ("context_management", ANTHROPIC_HINT),
    ("service_tier", ANTHROPIC_HINT),
    ("speed", ANTHROPIC_HINT),
    ("top_k", "refused"),
    ("container", "refused (it runs at Anthropic)"),
    ("mcp_servers", "refused (it runs at Anthropic)"),
    ("diagnostics", "refused"),
    ("inference_geo", "refused"),
    ("user_profile_id", "refused"),
    ("workspace_id", "refused"),
];

/// The fate of a parameter that steers only Anthropic's own servers.
const ANTHROPIC_HINT: &str = "dropped: it steers only Anthropic's servers";
