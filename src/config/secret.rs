//! A configuration string that may hold a secret: `${ENV_VAR}` references are
//! expanded at load time, and the value never prints.

use std::fmt;

use serde::Deserialize;

#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

/// Text in the file: a value, or `${ENV}` expanded when the file loads.
impl schemars::JsonSchema for Secret {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A value, or ${ENV_VAR} read from the environment when the file loads; never logged."
        })
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it (an upstream header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces every `${NAME}` with the environment variable `NAME`.
    /// `lookup` is the environment, injected so the logic is testable.
    pub fn expand(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<(), String> {
        let mut out = String::with_capacity(self.0.len());
        let mut rest = self.0.as_str();
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated `${` (write `${NAME}`)".to_string())?;
            let name = &after[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable name"
                ));
            }
            let value =
                lookup(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        self.0 = out;
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "sk-123".to_string())
    }

    #[test]
    fn expands_references_and_keeps_the_rest() {
        let mut s = Secret::new("Bearer ${KEY}!");
        s.expand(env).unwrap();
        assert_eq!(s.expose(), "Bearer sk-123!");
    }

    #[test]
    fn missing_variable_is_named() {
        let mut s = Secret::new("${NOPE}");
        assert_eq!(
            s.expand(env).unwrap_err(),
            "environment variable `NOPE` is not set"
        );
    }

    #[test]
    fn bad_references_are_errors() {
        assert!(Secret::new("${KEY").expand(env).is_err());
        assert!(Secret::new("${a-b}").expand(env).is_err());
    }

    #[test]
    fn debug_hides_the_value() {
        assert_eq!(format!("{:?}", Secret::new("sk-123")), "Secret(***)");
    }
}
