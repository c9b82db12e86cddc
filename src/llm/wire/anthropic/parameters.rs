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
    ("thinking", "accepted when disabled"),
    ("service_tier", "accepted when `auto`"),
    (
        "cache_control",
        "ignored: it changes cost, never the answer",
    ),
    ("top_k", "refused"),
    ("container", "refused"),
    ("diagnostics", "refused"),
    ("inference_geo", "refused"),
    ("speed", "refused"),
    ("user_profile_id", "refused"),
    ("workspace_id", "refused"),
];
