//! The config file's JSON Schema, derived from the schema types (their
//! serde attributes say what is required, what defaults, and that unknown
//! fields are refused). What the file keeps as text gets its form here:
//! durations, secrets, and keywords with their words. Fields whose words
//! live above this layer (providers, JWT algorithms) are filled in by
//! `settings::json_schema`.

use schemars::{json_schema, Schema, SchemaGenerator};

use super::keyword::Keyword;

/// A duration as the file writes it.
pub fn duration(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "pattern": "^\\s*([0-9]+\\s*[a-zA-Zµ]+\\s*)+$",
        "description": "A duration: 500ms, 30s, 5m, 2h, 1h 30m."
    })
}

/// The words of `K` as JSON values: a word that is a number (`429`) may be
/// written unquoted in YAML, which reads it as a number.
fn word_values<K: Keyword>() -> (Vec<serde_json::Value>, bool) {
    let mut values = Vec::new();
    let mut numbers = false;
    for word in K::ALL.iter().map(|k| k.as_str()) {
        values.push(word.into());
        if let Ok(n) = word.parse::<u64>() {
            values.push(n.into());
            numbers = true;
        }
    }
    (values, numbers)
}

/// One word of `K`.
pub fn word<K: Keyword>(_: &mut SchemaGenerator) -> Schema {
    let (values, numbers) = word_values::<K>();
    let types: &[&str] = if numbers {
        &["string", "integer"]
    } else {
        &["string"]
    };
    json_schema!({"type": types, "enum": values})
}

/// One word of `K`, or nothing.
pub fn optional_word<K: Keyword>(_: &mut SchemaGenerator) -> Schema {
    let (mut values, numbers) = word_values::<K>();
    values.push(serde_json::Value::Null);
    let types: &[&str] = if numbers {
        &["string", "integer", "null"]
    } else {
        &["string", "null"]
    };
    json_schema!({"type": types, "enum": values})
}

/// A list of words of `K`.
pub fn words<K: Keyword>(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "array", "items": word::<K>(g)})
}

/// A list of words of `K`, or nothing.
pub fn optional_words<K: Keyword>(g: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": ["array", "null"], "items": word::<K>(g)})
}

/// The provider's own settings: an object its module reads.
pub fn provider_options(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["object", "null"],
        "description": "The provider's own settings (docs/routing-and-translation.md, Providers)."
    })
}

/// The file's schema, with what this layer knows.
pub fn file() -> Schema {
    let mut schema = schemars::schema_for!(super::schema::File);
    schema.insert(
        "title".into(),
        "ai-api-gateway configuration (gateway.yaml)".into(),
    );
    schema
}
