//! `azure`: Azure OpenAI. The OpenAI wire, with Azure's URLs (a deployment
//! and an `api-version` in the path and query, or the newer `/openai/v1/`
//! form with the deployment as the body's model) and Azure's credentials:
//! the key in `api-key`, or a Microsoft Entra ID bearer token, given or
//! fetched through AKS workload identity.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::services::background::BackgroundService;
use serde::Deserialize;
use serde_json::Value;

use super::credentials::azure::WorkloadIdentity;
use super::credentials::TokenCache;
use super::{key_header, percent_encode_segment, Call, Provider, Spec, Unavailable};
use crate::config::check::{fault, sensitive_value, Lowered};
use crate::config::{check_fetch_url, Secret};
use crate::llm::ir::ErrorKind;
use crate::llm::Dialect;

/// The scope of tokens for Azure OpenAI.
const SCOPE: &str = "https://cognitiveservices.azure.com/.default";
/// Where Entra ID issues tokens, unless `AZURE_AUTHORITY_HOST` says.
const AUTHORITY: &str = "https://login.microsoftonline.com";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// The deployments form's API version; without one, the `/openai/v1/`
    /// form.
    api_version: Option<String>,
    /// Model (after the route's aliases) → deployment; a model not listed
    /// is the name of its deployment.
    #[serde(default)]
    deployments: BTreeMap<String, String>,
    /// Microsoft Entra ID instead of a key.
    entra: Option<Entra>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entra {
    /// A bearer token (`${ENV}`).
    token: Option<Secret>,
    /// AKS workload identity.
    workload_identity: Option<WorkloadIdentityOptions>,
}

/// Each field defaults to what the workload identity webhook sets.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkloadIdentityOptions {
    token_endpoint: Option<String>,
    client_id: Option<String>,
    tenant_id: Option<String>,
    token_file: Option<String>,
}

#[derive(Debug)]
enum Credential {
    /// `api-key`, or a given Entra token: static headers.
    Static,
    Token(Arc<TokenCache>),
}

#[derive(Debug)]
pub struct Azure {
    api_version: Option<String>,
    deployments: BTreeMap<String, String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    credential: Credential,
}

pub fn build(spec: &Spec<'_>) -> Lowered<Arc<dyn Provider>> {
    let options: Options = spec.options()?;
    let at = format!("{}.options", spec.at);
    if let Some(version) = &options.api_version {
        let ok = !version.is_empty()
            && version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return fault(
                format!("{at}.api_version"),
                "must be an API version such as 2024-10-21",
            );
        }
    }
    let mut headers = Vec::new();
    let credential = match (spec.api_key, options.entra) {
        (Some(_), None) => {
            headers.extend(key_header(spec, "api-key", str::to_string)?);
            Credential::Static
        }
        (
            None,
            Some(Entra {
                token: Some(token),
                workload_identity: None,
            }),
        ) => {
            let token = spec.secret("entra.token", &token)?;
            let value = sensitive_value(
                &format!("{at}.entra.token"),
                &format!("Bearer {}", token.expose()),
            )?;
            headers.push((http::header::AUTHORIZATION, value));
            Credential::Static
        }
        (
            None,
            Some(Entra {
                token: None,
                workload_identity: Some(wi),
            }),
        ) => Credential::Token(TokenCache::shared(
            "azure",
            Arc::new(workload_identity(spec, &at, wi)?),
        )),
        _ => {
            return fault(
                spec.at,
                "an azure backend needs exactly one credential: `api_key`, \
                 `options.entra.token` or `options.entra.workload_identity`",
            )
        }
    };
    Ok(Arc::new(Azure {
        api_version: options.api_version,
        deployments: options.deployments,
        headers,
        credential,
    }))
}

/// The token exchange of AKS workload identity, from the options and the
/// environment its webhook sets.
fn workload_identity(
    spec: &Spec<'_>,
    at: &str,
    o: WorkloadIdentityOptions,
) -> Lowered<WorkloadIdentity> {
    let from_env = |given: Option<String>, name: &str| -> Lowered<String> {
        given.or_else(|| spec.env.var(name)).map_or_else(
            || {
                fault(
                    format!("{at}.entra.workload_identity"),
                    format!(
                        "needs `{name}` in the environment (the workload identity webhook sets it)"
                    ),
                )
            },
            Ok,
        )
    };
    let client_id = from_env(o.client_id, "AZURE_CLIENT_ID")?;
    let token_file = from_env(o.token_file, "AZURE_FEDERATED_TOKEN_FILE")?;
    let token_url = match o.token_endpoint {
        Some(url) => url,
        None => {
            let tenant = from_env(o.tenant_id, "AZURE_TENANT_ID")?;
            let authority = spec
                .env
                .var("AZURE_AUTHORITY_HOST")
                .unwrap_or_else(|| AUTHORITY.to_string());
            let authority = authority.trim_end_matches('/');
            let authority = if authority.contains("://") {
                authority.to_string()
            } else {
                format!("https://{authority}")
            };
            format!("{authority}/{tenant}/oauth2/v2.0/token")
        }
    };
    // Plain http only to this machine (a sidecar, a test's token server).
    check_fetch_url(&token_url, true)
        .or_else(|e| fault(format!("{at}.entra.workload_identity.token_endpoint"), e))?;
    Ok(WorkloadIdentity {
        token_url,
        client_id,
        token_file,
        scope: SCOPE.to_string(),
        timeout: Duration::from_secs(10),
    })
}

impl Azure {
    fn deployment<'a>(&'a self, model: &'a str) -> &'a str {
        self.deployments.get(model).map_or(model, String::as_str)
    }
}

/// Paths under `/openai/deployments/{deployment}` in the deployments form.
const DEPLOYMENT_PATHS: [&str; 3] = ["/chat/completions", "/embeddings", "/completions"];

impl Provider for Azure {
    fn name(&self) -> &'static str {
        "azure"
    }

    fn dialect(&self) -> Dialect {
        Dialect::OpenAi
    }

    /// `/v1/chat/completions` becomes
    /// `/openai/deployments/{deployment}/chat/completions?api-version=...`,
    /// or `/openai/v1/chat/completions` in the v1 form; other `/v1/` paths
    /// go under `/openai/` the same way.
    fn path(&self, call: &Call<'_>) -> Option<String> {
        let client = if call.translated {
            Dialect::OpenAi.upstream().chat_path()
        } else {
            call.client_path
        };
        let (path, query) = client.split_once('?').unwrap_or((client, ""));
        let rest = path.strip_prefix("/v1").unwrap_or(path);
        match &self.api_version {
            None => {
                let query = if query.is_empty() {
                    String::new()
                } else {
                    format!("?{query}")
                };
                Some(format!("/openai/v1{rest}{query}"))
            }
            Some(version) => {
                let deployment = call
                    .model
                    .filter(|_| DEPLOYMENT_PATHS.contains(&rest))
                    .map(|model| percent_encode_segment(self.deployment(model)));
                Some(match deployment {
                    Some(deployment) => {
                        format!("/openai/deployments/{deployment}{rest}?api-version={version}")
                    }
                    None => format!("/openai{rest}?api-version={version}"),
                })
            }
        }
    }

    fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    fn authenticate(&self, request: &mut RequestHeader) -> Result<(), Unavailable> {
        let token = match &self.credential {
            Credential::Static => None,
            Credential::Token(cache) => Some(cache.header()?),
        };
        for (name, value) in token
            .iter()
            .map(|t| (&http::header::AUTHORIZATION, t))
            .chain(self.headers.iter().map(|(n, v)| (n, v)))
        {
            request
                .insert_header(name.clone(), value.clone())
                .map_err(|e| Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    /// In the v1 form the deployment is the body's model.
    fn adapt_body(&self, body: &Bytes, call: &Call<'_>) -> Option<Bytes> {
        let model = call.model?;
        let deployment = self.deployments.get(model)?;
        if self.api_version.is_some() {
            return None;
        }
        crate::llm::rewrite(body, Some(deployment), false)
            .ok()
            .map(Bytes::from)
    }

    /// Entra ID refusals come as `{"statusCode": 401, "message": ...}`.
    fn parse_error(&self, body: &Value) -> Option<(ErrorKind, String)> {
        let status = body.get("statusCode")?.as_u64()?;
        let message = body.get("message")?.as_str()?.to_string();
        Some((ErrorKind::of_status(status as u16), message))
    }

    fn background(&self) -> Option<Box<dyn BackgroundService + Send + Sync>> {
        match &self.credential {
            Credential::Token(cache) => Some(cache.refresher()),
            Credential::Static => None,
        }
    }

    fn readiness(&self) -> Option<String> {
        match &self.credential {
            Credential::Token(cache) => cache.readiness(),
            Credential::Static => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::load_str;

    fn load(backend: &str) -> Result<crate::settings::Settings, String> {
        let text = format!(
            "upstreams:\n  a:\n    backends:\n      - base_url: https://r.openai.azure.com\n        provider: azure\n{backend}routes:\n  - {{name: r, paths: [/v1/chat/completions], upstream: a}}\n"
        );
        load_str(&text, "test.yaml", |_| None).map_err(|e| e.to_string())
    }

    #[test]
    fn bad_options_name_the_field() {
        let err = load("        api_key: k\n        options: {api_verison: x}\n").unwrap_err();
        assert!(
            err.contains("upstreams.a.backends[0].options: unknown field `api_verison`"),
            "{err}"
        );
        let err =
            load("        api_key: k\n        options: {api_version: \"2024/10\"}\n").unwrap_err();
        assert!(err.contains("options.api_version"), "{err}");
        let err = load("        api_key: k\n        options: {entra: {token: t}}\n").unwrap_err();
        assert!(err.contains("exactly one credential"), "{err}");
        let err = load("        options: {entra: {workload_identity: {}}}\n").unwrap_err();
        assert!(err.contains("AZURE_CLIENT_ID"), "{err}");
    }

    #[test]
    fn paths_of_both_forms() {
        use crate::providers::Call;
        let settings = load(
            "        api_key: k\n        options: {api_version: 2024-10-21, deployments: {\"gpt 4\": \"dep/x\"}}\n",
        )
        .unwrap();
        let provider = &settings.pools[0].backends[0].provider;
        let call = |path: &'static str, model: Option<&'static str>| Call {
            client_path: path,
            translated: false,
            model,
            stream: false,
        };
        assert_eq!(
            provider
                .path(&call("/v1/chat/completions", Some("gpt 4")))
                .unwrap(),
            "/openai/deployments/dep%2Fx/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            provider.path(&call("/v1/models", None)).unwrap(),
            "/openai/models?api-version=2024-10-21"
        );
        let v1 = load("        api_key: k\n").unwrap();
        let provider = &v1.pools[0].backends[0].provider;
        assert_eq!(
            provider
                .path(&call("/v1/chat/completions?x=1", Some("m")))
                .unwrap(),
            "/openai/v1/chat/completions?x=1"
        );
        assert_eq!(provider.headers()[0].0, "api-key");
    }
}
