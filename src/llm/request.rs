//! Reads `model` and `stream` from a JSON request body, and rewrites `model`,
//! without building a tree of the whole body: top-level values stay raw
//! slices of the input, so a large prompt costs one validating scan.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Longer model names are refused: no provider has one, and a huge one is an attack.
pub const MAX_MODEL_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub model: String,
    pub stream: bool,
    /// The client asked for OpenAI's final usage chunk.
    pub include_usage: bool,
    /// `max_tokens` (or `max_completion_tokens`), for token reservations.
    pub max_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    InvalidJson(String),
    NotAnObject,
    MissingModel,
    ModelNotAString,
    ModelTooLong,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::InvalidJson(e) => write!(f, "The request body is not valid JSON: {e}"),
            BodyError::NotAnObject => f.write_str("The request body must be a JSON object."),
            BodyError::MissingModel => {
                f.write_str("You must provide a model parameter (a string `model` field).")
            }
            BodyError::ModelNotAString => f.write_str("The `model` field must be a string."),
            BodyError::ModelTooLong => {
                write!(f, "The `model` field is longer than {MAX_MODEL_LEN} bytes.")
            }
        }
    }
}

/// The top-level members of a JSON object, values left unparsed.
struct TopLevel<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((key, value)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    fields.push((key, value));
                }
                Ok(TopLevel(fields))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

fn parse(body: &[u8]) -> Result<TopLevel<'_>, BodyError> {
    // Tell "not an object" apart from "not JSON" for a clearer message.
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|&b| b != b'{') {
        return match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
            Ok(_) => Err(BodyError::NotAnObject),
            Err(e) => Err(BodyError::InvalidJson(e.to_string())),
        };
    }
    serde_json::from_slice(body).map_err(|e| BodyError::InvalidJson(e.to_string()))
}

fn model_of(fields: &TopLevel<'_>) -> Result<String, BodyError> {
    let raw = fields
        .0
        .iter()
        .rev() // the last duplicate wins, as in every JSON parser clients use
        .find(|(k, _)| k == "model")
        .map(|(_, v)| *v)
        .ok_or(BodyError::MissingModel)?;
    let text = raw.get();
    if !text.starts_with('"') {
        return Err(if text == "null" {
            BodyError::MissingModel
        } else {
            BodyError::ModelNotAString
        });
    }
    // The raw value includes quotes and escapes; check the size before decoding.
    if text.len() > MAX_MODEL_LEN * 6 + 2 {
        return Err(BodyError::ModelTooLong);
    }
    let model: String =
        serde_json::from_str(text).map_err(|e| BodyError::InvalidJson(e.to_string()))?;
    if model.len() > MAX_MODEL_LEN {
        return Err(BodyError::ModelTooLong);
    }
    if model.is_empty() {
        return Err(BodyError::MissingModel);
    }
    Ok(model)
}

/// Reads `model` (required, a non-empty string) and `stream` (default false).
pub fn inspect(body: &[u8]) -> Result<Inspected, BodyError> {
    let fields = parse(body)?;
    let model = model_of(&fields)?;
    let field = |name: &str| {
        fields
            .0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    };
    let stream = field("stream").is_some_and(|v| v.get() == "true");
    let include_usage = field("stream_options")
        .and_then(|v| serde_json::from_str::<StreamOptions>(v.get()).ok())
        .is_some_and(|o| o.include_usage == Some(true));
    let max_tokens = field("max_tokens")
        .or_else(|| field("max_completion_tokens"))
        .and_then(|v| v.get().parse::<u64>().ok());
    Ok(Inspected {
        model,
        stream,
        include_usage,
        max_tokens,
    })
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// The same body with `model` set to `new_model` (when given) and, when
/// `add_include_usage`, `stream_options.include_usage` set to true; every
/// other member is copied byte for byte, in order.
pub fn rewrite(
    body: &[u8],
    new_model: Option<&str>,
    add_include_usage: bool,
) -> Result<Vec<u8>, BodyError> {
    let fields = parse(body)?;
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(b'{');
    let mut first = true;
    let mut saw_stream_options = false;
    let mut member = |out: &mut Vec<u8>, key: &str| {
        if !std::mem::replace(&mut first, false) {
            out.push(b',');
        }
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, key);
        out.push(b':');
    };
    for (key, value) in &fields.0 {
        member(&mut out, key);
        match key.as_ref() {
            "model" if new_model.is_some() => {
                let _ = serde_json::to_writer(&mut out, &new_model);
            }
            "stream_options" if add_include_usage => {
                saw_stream_options = true;
                let mut options: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(value.get()).unwrap_or_default();
                options.insert("include_usage".into(), serde_json::Value::Bool(true));
                let _ = serde_json::to_writer(&mut out, &options);
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    if add_include_usage && !saw_stream_options {
        member(&mut out, "stream_options");
        out.extend_from_slice(br#"{"include_usage":true}"#);
    }
    out.push(b'}');
    Ok(out)
}

/// The same body with `max_tokens` and `max_completion_tokens` no larger
/// than `cap`; every other member copied byte for byte, in order.
pub fn cap_max_tokens(body: &[u8], cap: u64) -> Result<Vec<u8>, BodyError> {
    let fields = parse(body)?;
    let mut out = Vec::with_capacity(body.len());
    out.push(b'{');
    for (i, (key, value)) in fields.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, key);
        out.push(b':');
        let asked = value.get().parse::<u64>().ok();
        match key.as_ref() {
            "max_tokens" | "max_completion_tokens" if asked.is_some_and(|n| n > cap) => {
                out.extend_from_slice(cap.to_string().as_bytes())
            }
            _ => out.extend_from_slice(value.get().as_bytes()),
        }
    }
    out.push(b'}');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_are_capped_and_nothing_else_moves() {
        let body =
            br#"{"model":"m","max_tokens":64000,"messages":[{"role":"user","content":"64000"}]}"#;
        let out = cap_max_tokens(body, 16384).unwrap();
        assert_eq!(
            out,
            br#"{"model":"m","max_tokens":16384,"messages":[{"role":"user","content":"64000"}]}"#
        );
        let small = br#"{"model":"m","max_completion_tokens":100}"#;
        assert_eq!(cap_max_tokens(small, 16384).unwrap(), small);
    }

    #[test]
    fn reads_model_and_stream() {
        let got = inspect(
            br#"{"messages":[{"role":"user","content":"hi"}],"model":"gpt-4o","stream":true}"#,
        )
        .unwrap();
        assert_eq!(
            (got.model.as_str(), got.stream, got.include_usage),
            ("gpt-4o", true, false)
        );
        assert_eq!(got.max_tokens, None);
        let got = inspect(
            br#" {"model":"m\u0031","max_completion_tokens":64,"stream_options":{"include_usage":true}} "#,
        )
        .unwrap();
        assert_eq!(
            (got.model.as_str(), got.stream, got.include_usage),
            ("m1", false, true)
        );
        assert_eq!(got.max_tokens, Some(64));
    }

    #[test]
    fn errors_are_specific() {
        assert!(matches!(inspect(b"{nope"), Err(BodyError::InvalidJson(_))));
        assert!(matches!(inspect(b""), Err(BodyError::InvalidJson(_))));
        assert_eq!(inspect(b"[1,2]"), Err(BodyError::NotAnObject));
        assert_eq!(inspect(br#"{"messages":[]}"#), Err(BodyError::MissingModel));
        assert_eq!(inspect(br#"{"model":null}"#), Err(BodyError::MissingModel));
        assert_eq!(inspect(br#"{"model":""}"#), Err(BodyError::MissingModel));
        assert_eq!(inspect(br#"{"model":42}"#), Err(BodyError::ModelNotAString));
        let long = format!(r#"{{"model":"{}"}}"#, "a".repeat(1 << 20));
        assert_eq!(inspect(long.as_bytes()), Err(BodyError::ModelTooLong));
        assert!(matches!(
            inspect(b"{\"model\":\"\xff\"}"),
            Err(BodyError::InvalidJson(_))
        ));
    }

    #[test]
    fn rewrite_keeps_everything_else() {
        let body =
            br#"{"model":"alias","messages":[{"role":"user","content":"h\"i"}],"stream":false}"#;
        let out = rewrite(body, Some("real-model"), false).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"model":"real-model","messages":[{"role":"user","content":"h\"i"}],"stream":false}"#
        );
    }

    #[test]
    fn include_usage_is_added_or_merged() {
        let out = rewrite(br#"{"model":"m","stream":true}"#, None, true).unwrap();
        assert_eq!(
            out,
            br#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#
        );
        let out = rewrite(
            br#"{"stream_options":{"include_usage":false,"x":1},"model":"m"}"#,
            None,
            true,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes never panic the body model extraction.
        #[test]
        fn arbitrary_bodies_are_errors_not_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = inspect(&body);
            let _ = rewrite(&body, Some("m"), true);
        }

        /// Any model string survives a round trip, and rewriting keeps every other member.
        #[test]
        fn rewrite_keeps_the_rest(model in "\\PC{1,64}", other in "\\PC{0,64}", n in any::<i64>()) {
            let body = serde_json::json!({"model": model, "x": other, "n": n, "stream": true}).to_string();
            let got = inspect(body.as_bytes()).unwrap();
            prop_assert_eq!(&got.model, &model);
            let out = rewrite(body.as_bytes(), Some("new"), true).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(&v["model"], "new");
            prop_assert_eq!(&v["x"], &serde_json::Value::String(other));
            prop_assert_eq!(&v["n"], &serde_json::json!(n));
            prop_assert_eq!(&v["stream_options"]["include_usage"], true);
        }
    }
}
