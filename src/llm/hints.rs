//! Parameters a translation drops because they only steer the client
//! dialect's own provider (Anthropic's prompt cache and context editing,
//! OpenAI's prompt-cache key, either's service tier): the answer would be
//! the same without them. Each dropped one is named in the client's
//! `x-gateway-dropped` header and counted by name, from a fixed set, so
//! neither carries anything a client wrote.

use std::fmt;

/// One kind of parameter that only steers its dialect's provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// Anthropic's prompt-cache breakpoints, at the top or on any block.
    CacheControl,
    /// Anthropic's server-side context editing.
    ContextManagement,
    /// Either provider's capacity tier.
    ServiceTier,
    /// Anthropic's fast output mode.
    Speed,
    /// A tool Anthropic loads only when its tool search finds it: the
    /// target is given every tool at once.
    DeferLoading,
    /// The `anthropic-beta` header's list.
    AnthropicBeta,
    /// OpenAI's prompt-cache routing key.
    PromptCacheKey,
    /// OpenAI's prompt-cache retention.
    PromptCacheRetention,
}

impl Hint {
    pub const ALL: [Hint; 8] = [
        Hint::CacheControl,
        Hint::ContextManagement,
        Hint::ServiceTier,
        Hint::Speed,
        Hint::DeferLoading,
        Hint::AnthropicBeta,
        Hint::PromptCacheKey,
        Hint::PromptCacheRetention,
    ];

    /// The parameter's name, as clients write it.
    pub fn name(self) -> &'static str {
        match self {
            Hint::CacheControl => "cache_control",
            Hint::ContextManagement => "context_management",
            Hint::ServiceTier => "service_tier",
            Hint::Speed => "speed",
            Hint::DeferLoading => "defer_loading",
            Hint::AnthropicBeta => "anthropic-beta",
            Hint::PromptCacheKey => "prompt_cache_key",
            Hint::PromptCacheRetention => "prompt_cache_retention",
        }
    }

    /// The hint a top-level request parameter is, if it is one.
    pub fn of_parameter(name: &str) -> Option<Hint> {
        Hint::ALL
            .into_iter()
            .find(|h| h.name() == name && *h != Hint::AnthropicBeta)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The hints one translated request dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped(u16);

impl Dropped {
    pub fn add(&mut self, hint: Hint) {
        self.0 |= hint.bit();
    }

    pub fn contains(self, hint: Hint) -> bool {
        self.0 & hint.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Hint> {
        Hint::ALL.into_iter().filter(move |h| self.contains(*h))
    }
}

/// The names, comma-separated: the `x-gateway-dropped` header's value.
impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, hint) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(hint.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_names_its_hints_in_a_fixed_order() {
        let mut dropped = Dropped::default();
        assert!(dropped.is_empty());
        dropped.add(Hint::ContextManagement);
        dropped.add(Hint::CacheControl);
        dropped.add(Hint::CacheControl);
        assert_eq!(dropped.to_string(), "cache_control,context_management");
        assert_eq!(Hint::of_parameter("service_tier"), Some(Hint::ServiceTier));
        assert_eq!(Hint::of_parameter("anthropic-beta"), None);
        assert_eq!(Hint::of_parameter("seed"), None);
    }
}
