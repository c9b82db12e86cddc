//! `mock-upstream`: the repo's OpenAI/Anthropic-compatible mock server, for
//! tests, benchmarks and offline demos. Prints `listening on ADDR` once bound.

use std::sync::Arc;

use clap::Parser;
use tokio_rustls::rustls;

use ai_api_gateway::mock::{serve, Cloud, GoogleAccount, MockState};
use jsonwebtoken::DecodingKey;

#[derive(Parser)]
#[command(about = "OpenAI/Anthropic-compatible mock LLM upstream")]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: String,
    /// Name sent back in `x-mock-backend`, to tell backends apart.
    #[arg(long, default_value = "mock")]
    name: String,
    /// Keep the last requests for `GET /mock/requests`.
    #[arg(long)]
    record: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<String>,
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<String>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// The Azure OpenAI key it accepts in `api-key` (default: any).
    #[arg(long)]
    azure_key: Option<String>,
    /// The Gemini API key it accepts in `x-goog-api-key` (default: any).
    #[arg(long)]
    gemini_key: Option<String>,
    /// The Google service account whose assertions `/token` accepts: its
    /// email, its key id and its public key (PEM file).
    #[arg(long, requires_all = ["google_key_id", "google_public_key"])]
    google_client_email: Option<String>,
    #[arg(long)]
    google_key_id: Option<String>,
    #[arg(long)]
    google_public_key: Option<String>,
    /// Lifetime of the tokens its token endpoints issue.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
}

fn cloud(args: &Args) -> Result<Cloud, String> {
    let google = match (
        &args.google_client_email,
        &args.google_key_id,
        &args.google_public_key,
    ) {
        (Some(email), Some(key_id), Some(path)) => {
            let pem = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
            let public_key = DecodingKey::from_rsa_pem(&pem).map_err(|e| format!("{path}: {e}"))?;
            Some(GoogleAccount {
                email: email.clone(),
                key_id: key_id.clone(),
                public_key,
            })
        }
        _ => None,
    };
    Ok(Cloud::new(
        args.azure_key.clone(),
        args.gemini_key.clone(),
        google,
        std::time::Duration::from_secs(args.token_ttl_secs),
    ))
}

fn tls_acceptor(cert: &str, key: &str) -> Result<tokio_rustls::TlsAcceptor, String> {
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("{path}: {e}"));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("{key}: {e}"))?
        .ok_or_else(|| format!("{key}: no private key"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match tls_acceptor(cert, key) {
            Ok(acceptor) => Some(acceptor),
            Err(e) => {
                eprintln!("mock-upstream: {e}");
                return std::process::ExitCode::from(2);
            }
        },
        _ => None,
    };
    let cloud = match cloud(&args) {
        Ok(cloud) => cloud,
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mock-upstream: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(&args.listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("mock-upstream: cannot listen on {}: {e}", args.listen);
                return std::process::ExitCode::from(2);
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("listening on {addr}"),
            Err(e) => eprintln!("mock-upstream: {e}"),
        }
        serve(
            listener,
            tls,
            MockState::with_cloud(args.name, args.record, cloud),
        )
        .await;
        std::process::ExitCode::SUCCESS
    })
}
