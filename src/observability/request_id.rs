//! Request ids: the client's `x-request-id` when it is sane, else a new one.
//! New ids are a random per-process prefix and a counter: unique across
//! replicas and restarts, with no system call per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use pingora::proxy::Session;

const MAX_LEN: usize = 128;

fn is_sane(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

pub fn new_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(32);
    push_hex(&mut id, prefix);
    push_hex(&mut id, n);
    id
}

/// 16 lowercase hex digits (cheaper than the formatting machinery, on every
/// request).
fn push_hex(out: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[(value >> (shift * 4)) as usize & 0xf] as char);
    }
}

pub fn for_session(session: &Session) -> String {
    let given = session
        .req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_sane(v));
    match given {
        Some(id) => id.to_string(),
        None => new_id(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_unique_and_fixed_width() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert_eq!(a[..16], b[..16], "one prefix per process");
        let (mut hex, value) = (String::new(), 0x0123_4567_89ab_cdef_u64);
        push_hex(&mut hex, value);
        assert_eq!(hex, format!("{value:016x}"));
    }

    #[test]
    fn only_sane_client_ids_are_kept() {
        assert!(is_sane("req-123_a.b:c"));
        assert!(!is_sane(""));
        assert!(!is_sane("with space"));
        assert!(!is_sane("quote\""));
        assert!(!is_sane(&"a".repeat(129)));
    }
}
