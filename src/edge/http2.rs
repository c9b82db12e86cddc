//! HTTP/2 from clients (ALPN `h2` on the TLS listeners, prior-knowledge h2c
//! on the cleartext ones when `listen.h2c` is on), and the bounds that keep
//! one connection from taking more than its share. The `h2` crate enforces
//! them:
//!
//! - concurrent streams: a peer opening more than [`MAX_CONCURRENT_STREAMS`]
//!   gets `REFUSED_STREAM` for the extra ones (RFC 9113 §5.1.2);
//! - rapid reset (CVE-2023-44487): streams a client opens and cancels before
//!   the gateway has accepted them are counted, and past
//!   [`MAX_PENDING_RESETS`] the connection ends with `ENHANCE_YOUR_CALM`;
//! - CONTINUATION floods and HPACK bombs: a header block is cut once its
//!   decoded size passes `request.max_header_bytes` (the decoder's table
//!   stays at the default 4 KiB), and the connection ends;
//! - a peer that stops reading (no WINDOW_UPDATE): the response write waits
//!   at most `request.write_timeout` (set on every session by the proxy),
//!   and the send buffer per stream is bounded.
//!
//! Idle connections close after `request.idle_timeout`.

use pingora::apps::HttpServerOptions;
use pingora::protocols::http::v2::server::H2Options;

use super::settings::RequestLimits;

/// Streams one client connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 128;
/// Streams reset by the client before they were served, per connection,
/// before it is cut.
pub const MAX_PENDING_RESETS: usize = 32;
/// Streams the gateway itself resets (malformed requests) before the
/// connection is cut.
pub const MAX_LOCAL_RESETS: usize = 64;
/// Response bytes buffered per stream while the client's window is closed.
pub const MAX_SEND_BUFFER: usize = 256 * 1024;

pub fn options(request: &RequestLimits) -> H2Options {
    let mut options = H2Options::new();
    options
        .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
        .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .max_header_list_size(request.max_header_bytes as u32)
        .max_send_buffer_size(MAX_SEND_BUFFER);
    options
}

pub fn server_options(request: &RequestLimits) -> HttpServerOptions {
    let mut options = HttpServerOptions::default();
    // The connection guard tells h2c from HTTP/1 itself (without waiting for
    // 24 bytes) and presents h2c as ALPN h2: Pingora's own check stays off.
    options.h2c = false;
    options.h2_idle_timeout = Some(request.idle_timeout);
    options
}
