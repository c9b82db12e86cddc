//! Google OAuth2 access tokens: a service account's signed assertion
//! (RS256, the key file's `private_key` and `private_key_id`) exchanged at
//! its `token_uri`, or the GCE/GKE metadata server's token (how GKE pods
//! with workload identity get theirs).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::{Fetched, TokenSource};
use crate::fetch;

/// The scope Vertex AI takes.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A service account's key file: the fields that sign an assertion.
#[derive(Deserialize)]
pub struct KeyFile {
    pub client_email: String,
    pub private_key: String,
    pub private_key_id: String,
    pub token_uri: String,
}

pub struct ServiceAccount {
    pub email: String,
    pub key_id: String,
    pub key: EncodingKey,
    pub token_uri: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never prints.
        write!(f, "ServiceAccount({})", self.email)
    }
}

impl ServiceAccount {
    /// The account of a key file's text; the error never quotes the key.
    pub fn of_key_file(text: &str, timeout: Duration) -> Result<Self, String> {
        let file: KeyFile = serde_json::from_str(text).map_err(|e| {
            format!(
                "not a service account key file (client_email, private_key, private_key_id, token_uri): {}",
                e.to_string().split(" at line").next().unwrap_or("")
            )
        })?;
        let key = EncodingKey::from_rsa_pem(file.private_key.as_bytes())
            .map_err(|_| "its private_key is not an RSA key in PEM".to_string())?;
        Ok(Self {
            email: file.client_email,
            key_id: file.private_key_id,
            key,
            token_uri: file.token_uri,
            timeout,
        })
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: u64,
}

async fn exchange(call: &fetch::Call<'_>, timeout: Duration) -> Result<Fetched, String> {
    let (status, body) = fetch::send(call, timeout, None).await?;
    if status != 200 {
        return Err(format!(
            "{} answered {status}: {}",
            call.url,
            super::oauth_error(&body)
        ));
    }
    let answer: TokenAnswer = serde_json::from_slice(&body)
        .map_err(|e| format!("{}'s answer is not a token: {e}", call.url))?;
    Ok(Fetched {
        token: answer.access_token,
        lifetime: Duration::from_secs(answer.expires_in),
    })
}

#[async_trait]
impl TokenSource for ServiceAccount {
    fn key(&self) -> String {
        format!("{} for {}", self.token_uri, self.email)
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        let claims = Claims {
            iss: &self.email,
            scope: CLOUD_PLATFORM,
            aud: &self.token_uri,
            iat: now,
            // Google refuses assertions that live longer than an hour.
            exp: now + 3600,
        };
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| format!("cannot sign the assertion: {e}"))?;
        let form: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
            .append_pair("assertion", &assertion)
            .finish();
        let call = fetch::Call {
            method: "POST",
            url: &self.token_uri,
            headers: &[("accept", "application/json")],
            body: Some(("application/x-www-form-urlencoded", form.as_bytes())),
        };
        exchange(&call, self.timeout).await
    }
}

/// The metadata server: `GCE_METADATA_HOST`, else `metadata.google.internal`.
#[derive(Debug)]
pub struct Metadata {
    pub url: String,
    pub timeout: Duration,
}

impl Metadata {
    pub fn at(host: &str, timeout: Duration) -> Self {
        Self {
            url: format!(
                "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
            ),
            timeout,
        }
    }
}

#[async_trait]
impl TokenSource for Metadata {
    fn key(&self) -> String {
        self.url.clone()
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        let call = fetch::Call {
            method: "GET",
            url: &self.url,
            headers: &[
                ("metadata-flavor", "Google"),
                ("accept", "application/json"),
            ],
            body: None,
        };
        exchange(&call, self.timeout).await
    }
}
