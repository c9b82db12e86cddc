//! The PROXY protocol (v1 text and v2 binary, as HAProxy specifies it): the
//! header a TCP load balancer (AWS NLB, GCP, HAProxy) writes before the
//! client's first byte, naming the client's address. With
//! `listen.proxy_protocol` on, every proxy connection must start with one,
//! before TLS; a connection without it, or with a malformed one, is closed.
//! The address it names counts only when the connection's peer is in
//! `listen.trusted_proxies`.
//!
//! Exactly the header's bytes are taken, so what follows (a TLS ClientHello,
//! an HTTP request) is left for the next reader.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The client's address (its source address and port).
    Client(SocketAddr),
    /// The proxy's own connection (v2 LOCAL, a health check) or an address
    /// family the header does not name (v1 UNKNOWN, v2 UNSPEC/UNIX): the
    /// peer stands as the client.
    Unnamed,
}

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included (the specification's bound).
const V1_MAX: usize = 107;
/// The most v2 address and TLV bytes read (TLVs are skipped); a load
/// balancer sends tens of bytes.
const V2_MAX_BODY: usize = 2048;

/// Covers a v1 line and a load balancer's v2 header in one read.
const HEADER_READ_BUFFER: usize = 512;

/// Reads the PROXY header of a client connection, and puts back what the
/// client sent after it. The connection may read unbuffered
/// (`listen.read_buffer_bytes: 0`), and a v1 line is read byte by byte: a
/// buffer of its own keeps that to one system call.
pub async fn read_from(l4: &mut L4Stream) -> Result<ProxyHeader, String> {
    let mut reader = BufReader::with_capacity(HEADER_READ_BUFFER, &mut *l4);
    let header = read(&mut reader).await;
    let rest = reader.buffer().to_vec();
    l4.rewind(&rest);
    header
}

/// Reads one PROXY header from the start of a stream.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, String> {
    let mut start = [0u8; 6];
    read_exact(stream, &mut start).await?;
    if &start == b"PROXY " {
        return read_v1(stream).await;
    }
    if start == V2_SIGNATURE[..6] {
        return read_v2(stream).await;
    }
    Err("the connection does not start with a PROXY protocol header".into())
}

async fn read_exact<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut [u8]) -> Result<(), String> {
    stream
        .read_exact(buf)
        .await
        .map(|_| ())
        .map_err(|e| format!("PROXY header cut short: {e}"))
}

async fn read_v1<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, String> {
    // Byte by byte: the line's end is not known in advance, and nothing past
    // it may be taken. `read_from` buffers the stream, so these are not
    // system calls.
    let mut line = Vec::with_capacity(64);
    loop {
        let mut byte = [0u8; 1];
        read_exact(stream, &mut byte).await?;
        line.push(byte[0]);
        if line.ends_with(b"\r\n") {
            break;
        }
        if line.len() + "PROXY ".len() >= V1_MAX {
            return Err("PROXY v1 line longer than 107 bytes".into());
        }
    }
    line.truncate(line.len() - 2);
    let line = std::str::from_utf8(&line).map_err(|_| "PROXY v1 line is not ASCII")?;
    parse_v1(line)
}

/// Parses what follows `PROXY ` on a v1 line, CRLF removed.
fn parse_v1(line: &str) -> Result<ProxyHeader, String> {
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(ProxyHeader::Unnamed),
        [family @ ("TCP4" | "TCP6"), source, destination, source_port, destination_port] => {
            let source: IpAddr = source
                .parse()
                .map_err(|_| format!("PROXY v1 source `{source}` is not an address"))?;
            let destination: IpAddr = destination
                .parse()
                .map_err(|_| format!("PROXY v1 destination `{destination}` is not an address"))?;
            for address in [source, destination] {
                if address.is_ipv4() != (*family == "TCP4") {
                    return Err(format!("PROXY v1 address `{address}` is not {family}"));
                }
            }
            let port = |text: &str| {
                // No sign, no leading zeros: the specification's form.
                let valid = !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'));
                valid
                    .then(|| text.parse::<u16>().ok())
                    .flatten()
                    .ok_or_else(|| format!("PROXY v1 port `{text}` is not a port"))
            };
            let source_port = port(source_port)?;
            port(destination_port)?;
            Ok(ProxyHeader::Client(SocketAddr::new(source, source_port)))
        }
        _ => Err("PROXY v1 line is malformed".into()),
    }
}

async fn read_v2<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, String> {
    let mut rest = [0u8; 10];
    read_exact(stream, &mut rest).await?;
    if rest[..6] != V2_SIGNATURE[6..] {
        return Err("PROXY v2 signature is malformed".into());
    }
    let version_command = rest[6];
    let family = rest[7];
    let length = u16::from_be_bytes([rest[8], rest[9]]) as usize;
    if length > V2_MAX_BODY {
        return Err(format!("PROXY v2 header of {length} bytes is too long"));
    }
    let mut body = vec![0u8; length];
    read_exact(stream, &mut body).await?;
    parse_v2(version_command, family, &body)
}

fn parse_v2(version_command: u8, family: u8, body: &[u8]) -> Result<ProxyHeader, String> {
    if version_command >> 4 != 2 {
        return Err(format!("PROXY version {} is not 2", version_command >> 4));
    }
    match version_command & 0x0f {
        0 => return Ok(ProxyHeader::Unnamed), // LOCAL
        1 => {}                               // PROXY
        other => return Err(format!("PROXY v2 command {other} is unknown")),
    }
    let short = || format!("PROXY v2 addresses of {} bytes are cut short", body.len());
    // Only a stream (TCP) connection's source is a client address here.
    if family & 0x0f != 1 && family >> 4 != 0 && family >> 4 != 3 {
        return Ok(ProxyHeader::Unnamed);
    }
    match family >> 4 {
        // AF_INET: source, destination, source port, destination port.
        1 => {
            let a = body.get(..12).ok_or_else(short)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let port = u16::from_be_bytes([a[8], a[9]]);
            Ok(ProxyHeader::Client(SocketAddr::new(ip.into(), port)))
        }
        2 => {
            let a = body.get(..36).ok_or_else(short)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let port = u16::from_be_bytes([a[32], a[33]]);
            Ok(ProxyHeader::Client(SocketAddr::new(
                Ipv6Addr::from(octets).into(),
                port,
            )))
        }
        // AF_UNSPEC, AF_UNIX: no address the gateway can use.
        0 | 3 => Ok(ProxyHeader::Unnamed),
        other => Err(format!("PROXY v2 address family {other} is unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<ProxyHeader, String>, Vec<u8>) {
        let mut reader = bytes;
        let header = read(&mut reader).await;
        (header, reader.to_vec())
    }

    #[tokio::test]
    async fn v1_names_the_client_and_leaves_the_rest() {
        let (header, rest) = parse(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET /").await;
        assert_eq!(
            header,
            Ok(ProxyHeader::Client("203.0.113.7:51234".parse().unwrap()))
        );
        assert_eq!(rest, b"GET /");
        let (header, _) = parse(b"PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n").await;
        assert_eq!(
            header,
            Ok(ProxyHeader::Client("[2001:db8::1]:1".parse().unwrap()))
        );
        let (header, _) = parse(b"PROXY UNKNOWN\r\n").await;
        assert_eq!(header, Ok(ProxyHeader::Unnamed));
    }

    #[tokio::test]
    async fn v1_refuses_what_is_not_the_specification() {
        for bad in [
            &b"PROXY TCP4 203.0.113.7 10.0.0.1 051234 443\r\n"[..],
            b"PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP6 2001:db8::1 10.0.0.1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 70000\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2",
            b"GET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                parse(bad).await.0.is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 200], b"\r\n"].concat();
        assert!(parse(&long).await.0.is_err());
    }

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn v2_names_the_client_and_skips_tlvs() {
        let mut body = vec![198, 51, 100, 9, 10, 0, 0, 1, 0xc3, 0x50, 0x01, 0xbb];
        body.extend_from_slice(&[0x04, 0x00, 0x02, b'h', b'i']); // a TLV
        let mut bytes = v2(1, 0x11, &body);
        bytes.extend_from_slice(b"\x16\x03\x01");
        let (header, rest) = parse(&bytes).await;
        assert_eq!(
            header,
            Ok(ProxyHeader::Client("198.51.100.9:50000".parse().unwrap()))
        );
        assert_eq!(rest, b"\x16\x03\x01");
        let (header, _) = parse(&v2(0, 0x00, &[])).await;
        assert_eq!(header, Ok(ProxyHeader::Unnamed));
        // A datagram (UDP) source is no client of a TCP connection.
        let (header, _) = parse(&v2(1, 0x12, &[0; 12])).await;
        assert_eq!(header, Ok(ProxyHeader::Unnamed));
    }

    #[tokio::test]
    async fn v2_refuses_short_or_unknown_headers() {
        assert!(parse(&v2(1, 0x11, &[1, 2, 3])).await.0.is_err());
        assert!(parse(&v2(1, 0x21, &[0; 20])).await.0.is_err());
        assert!(parse(&v2(5, 0x11, &[0; 12])).await.0.is_err());
        assert!(parse(&v2(1, 0x41, &[0; 12])).await.0.is_err());
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(parse(&wrong_version).await.0.is_err());
        let mut too_long = v2(1, 0x11, &[]);
        too_long[14..16].copy_from_slice(&4000u16.to_be_bytes());
        assert!(parse(&too_long).await.0.is_err());
    }
}
