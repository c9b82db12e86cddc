//! The edge of the proxy port: what a client connection goes through before
//! it speaks HTTP. The PROXY protocol header a load balancer puts in front
//! (`proxy_protocol.rs`), the TLS handshake with certificates chosen by SNI
//! and rotated without a restart (`tls.rs`, `certificates.rs`), and the
//! HTTP/2 settings that bound what one connection may ask for (`http2.rs`).
//! `connection.rs` runs these steps for every accepted connection, under
//! its deadlines and its connection cap; `client.rs` tells who the client
//! is (the peer, or whom a trusted proxy forwarded).

pub mod certificates;
pub mod client;
pub mod connection;
pub mod guarded_stream;
pub mod http2;
pub mod proxy_protocol;
pub mod settings;
pub mod tls;
