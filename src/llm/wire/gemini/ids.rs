//! Tool-call ids across Gemini: a call's own id (which Gemini may leave
//! out; the gateway makes a stable one then) and its thought signature
//! (which Gemini 3 demands back, unchanged, on the call's next turn) are
//! packed into the one id a client sees and sends back. Ids the gateway did
//! not make pass through as they are.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// What every packed id starts with.
const PREFIX: &str = "gmi_";

/// The id a client sees for Gemini's call `id` (or `made_up` when Gemini
/// named none) with its thought signature, if any. Only the letters,
/// digits, `_` and `-` that every client dialect accepts in ids.
pub fn pack(id: Option<&str>, signature: Option<&str>, made_up: impl FnOnce() -> String) -> String {
    let id = id.map_or_else(made_up, str::to_string);
    match signature {
        None if !id.starts_with(PREFIX) && is_plain(&id) => id,
        _ => {
            let signature = signature.unwrap_or("");
            let mut packed = Vec::with_capacity(2 + id.len() + signature.len());
            let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
            packed.extend_from_slice(&len.to_be_bytes());
            packed.extend_from_slice(&id.as_bytes()[..len as usize]);
            packed.extend_from_slice(signature.as_bytes());
            format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(packed))
        }
    }
}

/// Gemini's call id and thought signature in an id a client sent back.
pub fn unpack(id: &str) -> (String, Option<String>) {
    let unpacked = id
        .strip_prefix(PREFIX)
        .and_then(|rest| URL_SAFE_NO_PAD.decode(rest).ok())
        .and_then(|bytes| {
            let len = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
            let own = String::from_utf8(bytes.get(2..2 + len)?.to_vec()).ok()?;
            let signature = String::from_utf8(bytes.get(2 + len..)?.to_vec()).ok()?;
            Some((own, (!signature.is_empty()).then_some(signature)))
        });
    unpacked.unwrap_or_else(|| (id.to_string(), None))
}

fn is_plain(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_signatures_round_trip_in_a_plain_id() {
        let packed = pack(Some("fc-1"), Some("CiIBVKhc+/7l5m=="), || unreachable!());
        assert!(packed.starts_with(PREFIX));
        assert!(is_plain(&packed), "{packed}");
        assert_eq!(
            unpack(&packed),
            ("fc-1".to_string(), Some("CiIBVKhc+/7l5m==".to_string()))
        );
        // No signature, a plain id: the id itself.
        assert_eq!(pack(Some("abc_1"), None, || unreachable!()), "abc_1");
        assert_eq!(pack(None, None, || "call_0".into()), "call_0");
        // An id with other characters is packed, so clients may send it.
        let odd = pack(Some("a.b/c"), None, || unreachable!());
        assert!(is_plain(&odd));
        assert_eq!(unpack(&odd), ("a.b/c".to_string(), None));
        // Ids of other upstreams pass through.
        assert_eq!(unpack("toolu_01"), ("toolu_01".to_string(), None));
        assert_eq!(unpack("gmi_!!"), ("gmi_!!".to_string(), None));
    }
}
