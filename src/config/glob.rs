//! Model-name globs: `*` matches any run of characters, everything else is literal.

use std::fmt;

/// A model-name pattern from config (`gpt-4o*`, `claude-*-sonnet*`, `*`).
#[derive(Clone, PartialEq, Eq)]
pub struct Glob(String);

impl Glob {
    /// A non-empty pattern; `None` for an empty one.
    pub fn new(pattern: &str) -> Option<Self> {
        (!pattern.is_empty()).then(|| Self(pattern.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has a wildcard (else it names one model).
    pub fn is_literal(&self) -> bool {
        !self.0.contains('*')
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_matches(&self.0, name)
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Whether `name` matches `glob`. Iterative with one backtrack point, so it is
/// linear-ish and cannot blow up on hostile model names.
fn glob_matches(glob: &str, name: &str) -> bool {
    let (g, n) = (glob.as_bytes(), name.as_bytes());
    let (mut gi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if gi < g.len() && g[gi] == b'*' {
            star = Some((gi, ni));
            gi += 1;
        } else if gi < g.len() && g[gi] == n[ni] {
            gi += 1;
            ni += 1;
        } else if let Some((star_gi, star_ni)) = star {
            gi = star_gi + 1;
            ni = star_ni + 1;
            star = Some((star_gi, star_ni + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::{glob_matches, Glob};

    #[test]
    fn empty_patterns_are_refused() {
        assert!(Glob::new("").is_none());
        assert!(Glob::new("m*").is_some_and(|g| g.matches("m1") && !g.is_literal()));
    }

    #[test]
    fn literal_and_wildcards() {
        assert!(glob_matches("gpt-4o", "gpt-4o"));
        assert!(!glob_matches("gpt-4o", "gpt-4o-mini"));
        assert!(glob_matches("gpt-4o*", "gpt-4o-mini"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("claude-*-sonnet*", "claude-3-5-sonnet-latest"));
        assert!(!glob_matches("claude-*-opus", "claude-3-sonnet"));
        assert!(glob_matches("*mini", "gpt-4o-mini"));
        assert!(!glob_matches("", "x"));
    }

    #[test]
    fn hostile_input_stays_fast() {
        let name = "a".repeat(100_000);
        assert!(!glob_matches("*a*a*a*a*b", &name));
    }
}
