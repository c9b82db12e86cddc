//! `${ENV}` references in secrets, expanded from the environment; every
//! secret expanded is remembered, so the logger can scrub it from every
//! line.

use super::check::{fault, Lowered};
use super::secret::Secret;

/// Expands `${NAME}` references from the environment, and remembers every
/// secret it expands, so the logger can scrub them from every line.
pub struct Expander<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    found: std::cell::RefCell<Vec<Secret>>,
}

impl<'a> Expander<'a> {
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            found: Default::default(),
        }
    }

    fn remember(&self, secret: &str) {
        self.found.borrow_mut().push(Secret::new(secret));
    }

    /// An environment variable that is not a secret (a file path, an id),
    /// from the same environment `${ENV}` references read.
    pub fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    /// Every secret expanded so far.
    pub fn secrets(&self) -> Vec<Secret> {
        self.found.take()
    }
}

/// The expander a lowering is handed.
pub type Env<'a> = &'a Expander<'a>;

pub fn expand(field: &str, secret: &Secret, env: Env<'_>) -> Lowered<Secret> {
    let mut secret = secret.clone();
    match secret.expand(env.env) {
        Ok(()) => {
            env.remember(secret.expose());
            Ok(secret)
        }
        Err(e) => fault(field, e),
    }
}
