//! ai-api-gateway: an AI API gateway on Cloudflare's Pingora.

pub mod admin;
pub mod allocator;
pub mod auth;
pub mod config;
pub mod edge;
pub mod error;
pub mod fetch;
pub mod gateway;
pub mod lifecycle;
pub mod limits;
pub mod llm;
pub mod memory;
pub mod mock;
pub mod observability;
pub mod providers;
pub mod reload;
pub mod routing;
pub mod settings;
pub mod state;
