//! Microsoft Entra ID tokens through AKS workload identity: the pod's
//! federated service-account token (re-read at every fetch: the kubelet
//! rotates the file) is exchanged at the tenant's token endpoint as a
//! client assertion, for a token of the given scope.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::{Fetched, TokenSource};
use crate::fetch;

#[derive(Debug)]
pub struct WorkloadIdentity {
    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    pub client_id: String,
    pub token_file: String,
    pub scope: String,
    pub timeout: Duration,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

#[async_trait]
impl TokenSource for WorkloadIdentity {
    fn key(&self) -> String {
        format!("{} (client {})", self.token_url, self.client_id)
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        let assertion = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("cannot read {}: {e}", self.token_file))?;
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .append_pair("client_assertion", assertion.trim())
            .append_pair("scope", &self.scope)
            .finish();
        let call = fetch::Call {
            method: "POST",
            url: &self.token_url,
            headers: &[("accept", "application/json")],
            body: Some(("application/x-www-form-urlencoded", form.as_bytes())),
        };
        let (status, body) = fetch::send(&call, self.timeout, None).await?;
        if status != 200 {
            return Err(format!(
                "the token endpoint answered {status}: {}",
                super::oauth_error(&body)
            ));
        }
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| format!("the token endpoint's answer is not a token: {e}"))?;
        Ok(Fetched {
            token: answer.access_token,
            lifetime: Duration::from_secs(answer.expires_in),
        })
    }
}
