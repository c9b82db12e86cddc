//! The mock LLM upstream: OpenAI- and Anthropic-compatible endpoints, and
//! the clouds' (Azure OpenAI in `azure.rs`, the Gemini API and Vertex AI in
//! `gemini.rs`, their token endpoints in `tokens.rs`, the credentials they
//! accept in `cloud.rs`), with knobs for tests and benchmarks, set per
//! request through headers:
//!
//! | header | effect |
//! | --- | --- |
//! | `x-mock-latency-ms` | wait before answering |
//! | `x-mock-status` | answer with this status and an OpenAI-style error |
//! | `x-mock-chunks` | content events in a stream (default 3) |
//! | `x-mock-chunk-delay-ms` | wait between stream events |
//! | `x-mock-response-size` | bytes of generated content |
//! | `x-mock-drop-after` | close the connection after this many stream events |
//! | `x-mock-hold` | send the first stream event, then wait for `POST /mock/release/<key>` |
//! | `x-mock-fault` | a successful chat answer misbehaves after its 200: `cut-mid-event`, `cut-mid-char`, `not-json`, `wrong-shape`, `unknown-events`, `silent`, `endless`, `trailing-data`, `error-event`, `usage-missing`, `usage-negative`, `usage-huge` (`faults.rs` says what each does) |
//! | `x-mock-cached-tokens` | report this many of the prompt's tokens as read from the prompt cache (OpenAI `prompt_tokens_details.cached_tokens`, Anthropic `cache_read_input_tokens`) |
//!
//! Requests are checked as strictly as the providers check them (required
//! fields, `anthropic-version` on `/v1/messages`, no parameter of the other
//! dialect, Anthropic's beta parameters only with their `anthropic-beta`,
//! thinking blocks sent back only with the signature the mock gave them):
//! a wrong translation gets a 400 saying what is wrong. A request that
//! offers tools and carries no tool result yet is answered with a call of
//! the tool its last turn names in a line `mock-call: NAME {json
//! arguments}`, or, when it offers exactly one tool, a call of that tool
//! (arguments made up from its schema, streamed in two pieces); a tool
//! result in the last turn is echoed in the answer. An Anthropic request
//! with thinking on gets a signed thinking block first.
//! `POST /v1/messages/count_tokens` counts a quarter of the body's bytes.
//!
//! Control endpoints: `GET /mock/requests` (what was received, with
//! `--record`), `PUT /mock/health/<status>` (what `/health` answers),
//! `PUT /mock/fail/<status>` (answer every API request with it; 0 stops),
//! `GET /mock/tokens` (tokens issued), `PUT /mock/token-endpoint/{down,up}`.

mod azure;
mod chat;
mod checks;
pub mod cloud;
mod faults;
mod gemini;
mod responses;
mod server;
mod state;
mod tokens;

pub use cloud::{Cloud, GoogleAccount};
pub use server::{bind_and_spawn_thread, serve};
pub use state::MockState;
