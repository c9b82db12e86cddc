//! The route table: request path (+ model) → route.

use std::sync::Arc;

use super::plan::{AttemptPlan, RetryPolicy, RetrySet};
use super::settings;
use crate::config::{AuthMethod, Glob};
use crate::llm::ClientDialect;
use crate::observability::metrics::RouteMetrics;
use crate::routing::Pool;

/// One configured route, resolved against its pool.
#[derive(Debug)]
pub struct RouteEntry {
    pub name: String,
    /// The name as a metrics label, interned once at load.
    pub label: &'static str,
    pub paths: Vec<String>,
    pub models: Vec<Glob>,
    /// Each of `models` as a metrics label, interned at load.
    model_labels: Vec<&'static str>,
    /// Client model name (or glob) → upstream model name, literal names
    /// first, then the most specific glob.
    pub aliases: Vec<(Glob, String)>,
    pub pool: Arc<Pool>,
    pub retry: RetryPolicy,
    /// Limit rules charged for every request on this route.
    pub limits: Vec<String>,
    /// Credentials the route accepts (`[None]`: none needed).
    pub auth: Vec<AuthMethod>,
    /// Scopes a caller must hold, every one of them.
    pub scopes: Vec<String>,
    /// `max_tokens` for providers that require it, and for reservations.
    pub default_max_tokens: u64,
    pub drop_unsupported_params: bool,
    /// Models tried in turn when the pool fails.
    pub fallbacks: Arc<[String]>,
    /// The route reads models on a chat path: it serves both chat dialects
    /// (`/v1/chat/completions` and `/v1/messages`), translating when needed.
    serves_chat: bool,
    pub metrics: RouteMetrics,
}

impl RouteEntry {
    pub fn new(route: &settings::Route, pool: Arc<Pool>) -> Self {
        let serves_chat = !route.models.is_empty()
            && ClientDialect::ALL.iter().any(|d| {
                let chat = d.client().chat_path();
                route
                    .paths
                    .iter()
                    .any(|prefix| path_has_prefix(chat, prefix))
            });
        Self {
            name: route.name.clone(),
            label: intern(&route.name),
            paths: route.paths.clone(),
            models: route.models.clone(),
            model_labels: route.models.iter().map(|m| intern(m.as_str())).collect(),
            aliases: route.aliases.clone(),
            pool,
            retry: RetryPolicy {
                attempts: route.retry.attempts,
                on: RetrySet::of(&route.retry.on),
            },
            limits: route.limits.clone(),
            auth: route.auth.clone(),
            scopes: route.scopes.clone(),
            default_max_tokens: route.default_max_tokens,
            drop_unsupported_params: route.drop_unsupported_params,
            fallbacks: route.fallbacks.as_slice().into(),
            serves_chat,
            metrics: RouteMetrics::new(&route.name),
        }
    }

    /// Whether the route reads the model from the body.
    pub fn needs_model(&self) -> bool {
        !self.models.is_empty()
    }

    /// Whether the route serves `path`: by prefix, or, for a route that
    /// reads models on a chat path, either chat path.
    pub fn serves_path(&self, path: &str) -> bool {
        self.paths
            .iter()
            .any(|prefix| path_has_prefix(path, prefix))
            || (self.serves_chat && ClientDialect::of_path(path).is_some())
    }

    pub fn serves_model(&self, model: &str) -> bool {
        self.models.iter().any(|glob| glob.matches(model))
    }

    /// The model name the upstream should see, when it differs from the client's.
    pub fn upstream_model(&self, model: &str) -> Option<&str> {
        self.aliases
            .iter()
            .find(|(alias, _)| alias.matches(model))
            .map(|(_, target)| target.as_str())
    }

    /// A client's model as a metrics label: the configured name it equals,
    /// else the first configured pattern it matches, else `other`. Never the
    /// client's own string, so label values stay bounded by config.
    pub fn model_label(&self, model: &str) -> &'static str {
        let literal = self
            .models
            .iter()
            .zip(&self.model_labels)
            .find(|(glob, _)| glob.is_literal() && glob.as_str() == model);
        let pattern = || {
            self.models
                .iter()
                .zip(&self.model_labels)
                .find(|(glob, _)| glob.matches(model))
        };
        literal
            .or_else(pattern)
            .map_or("other", |(_, label)| *label)
    }

    /// The attempt plan of a request on this route: its fallbacks only for
    /// a request that named a model.
    pub fn plan(&self, reads_model: bool) -> AttemptPlan {
        let fallbacks = if reads_model && !self.fallbacks.is_empty() {
            Some(self.fallbacks.clone())
        } else {
            None
        };
        AttemptPlan::new(self.retry, self.retry.on, fallbacks)
    }
}

/// Interns a name from config as a `'static` label, once per distinct name,
/// so the request path never allocates one. Route and model names are a
/// small set from config.
fn intern(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static NAMES: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut guard = NAMES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let names = guard.get_or_insert_with(HashSet::new);
    if let Some(found) = names.get(name) {
        return found;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// Whole-segment prefix match: `/v1/chat` serves `/v1/chat` and `/v1/chat/x`, not `/v1/chatter`.
fn path_has_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

/// What the table says about a path, before the body is read.
pub enum PathMatch<'a> {
    /// No route serves this path.
    None,
    /// Routes serve this path; the first one is model-less and takes the request as it is.
    Direct(&'a Arc<RouteEntry>),
    /// The routes serving this path choose by model: the body must be read.
    /// The first of them decides the credentials checked before reading it.
    ByModel(&'a Arc<RouteEntry>),
}

#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<Arc<RouteEntry>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Arc<RouteEntry>>) -> Self {
        Self { routes }
    }

    pub fn routes(&self) -> &[Arc<RouteEntry>] {
        &self.routes
    }

    pub fn match_path(&self, path: &str) -> PathMatch<'_> {
        match self.routes.iter().find(|r| r.serves_path(path)) {
            None => PathMatch::None,
            Some(route) if !route.needs_model() => PathMatch::Direct(route),
            Some(route) => PathMatch::ByModel(route),
        }
    }

    /// The first route serving both the path and the model (routes without
    /// models serve every model).
    pub fn match_model(&self, path: &str, model: &str) -> Option<&Arc<RouteEntry>> {
        self.routes
            .iter()
            .filter(|r| r.serves_path(path))
            .find(|r| !r.needs_model() || r.serves_model(model))
    }

    /// Every model name a client may ask for: literal names and aliases (globs are skipped).
    pub fn listed_models(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = Vec::new();
        for route in &self.routes {
            let literal = route
                .models
                .iter()
                .filter(|m| m.is_literal())
                .map(Glob::as_str);
            let aliases = route
                .aliases
                .iter()
                .filter(|(alias, _)| alias.is_literal())
                .map(|(alias, _)| alias.as_str());
            for model in literal.chain(aliases) {
                if !out.iter().any(|(m, _)| m == model) {
                    out.push((model.to_string(), route.pool.name.as_str()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::path_has_prefix;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(path_has_prefix(
            "/v1/chat/completions",
            "/v1/chat/completions"
        ));
        assert!(path_has_prefix(
            "/v1/chat/completions/x",
            "/v1/chat/completions"
        ));
        assert!(path_has_prefix("/v1/models/gpt", "/v1/models/"));
        assert!(!path_has_prefix(
            "/v1/chat/completionsX",
            "/v1/chat/completions"
        ));
        assert!(path_has_prefix("/anything", "/"));
    }
}
