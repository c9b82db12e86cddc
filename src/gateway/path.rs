//! The path policy: the path the router judges is the path the upstream
//! receives. Every request target is normalized before routing (RFC 3986
//! dot-segment removal, repeated slashes merged, absolute-form reduced to
//! origin-form) and set as the request's URI, so Pingora forwards exactly
//! that. What cannot be normalized safely is refused with 400: an encoded
//! `/`, `\`, `.`, `%` (double encoding) or NUL, a raw `\`, control or
//! non-ASCII byte, a `#`, percent-encodings that are not two hex digits or
//! that decode to invalid UTF-8 (overlong forms), and targets that are not
//! paths. Other percent-encodings are kept as sent, and so is the query:
//! the router never reads it, and it is forwarded byte for byte once it
//! passes the same byte checks.

use std::fmt;

/// Why a request target was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAPath,
    Fragment,
    ForbiddenByte(u8),
    BadPercentEncoding,
    ForbiddenEncoding(u8),
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAPath => {
                f.write_str("The request target must be a path starting with `/`.")
            }
            PathError::Fragment => {
                f.write_str("The request target must not carry a fragment (`#`).")
            }
            PathError::ForbiddenByte(b'\\') => {
                f.write_str("The request path must not contain `\\`.")
            }
            PathError::ForbiddenByte(_) => {
                f.write_str("The request target must not contain control or non-ASCII bytes.")
            }
            PathError::BadPercentEncoding => {
                f.write_str("A `%` in the request target must be followed by two hex digits.")
            }
            PathError::ForbiddenEncoding(b) => write!(
                f,
                "The request path must not encode {} (%{b:02X}).",
                match b {
                    b'/' => "`/`",
                    b'\\' => "`\\`",
                    b'.' => "`.`",
                    b'%' => "`%` (double encoding)",
                    _ => "a control byte",
                }
            ),
            PathError::NotUtf8 => f.write_str(
                "The request path does not decode to valid UTF-8 (overlong or broken encoding).",
            ),
        }
    }
}

/// Normalizes the session's request target in place, so routing and the
/// upstream see the same path.
pub fn apply(session: &mut pingora::proxy::Session) -> Result<(), PathError> {
    let raw = session.req_header().raw_path();
    if is_plain(raw) {
        // Nothing to normalize, and nothing to allocate for.
        return Ok(());
    }
    let normalized = normalize(raw)?;
    if normalized.as_bytes() != raw {
        let uri = normalized
            .parse::<http::Uri>()
            .map_err(|_| PathError::NotAPath)?;
        session.req_header_mut().set_uri(uri);
    }
    Ok(())
}

/// Letters, digits, `-`, `_`, `~` and single slashes from a leading one:
/// a path that normalizes to itself (the common case, checked cheaply).
fn is_plain(target: &[u8]) -> bool {
    target.first() == Some(&b'/')
        && target
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'~'))
        && !target.windows(2).any(|pair| pair == b"//")
}

/// The normalized origin-form target (`/path?query`) of a raw request
/// target, or why it is refused.
pub fn normalize(target: &[u8]) -> Result<String, PathError> {
    let origin = origin_form(target)?;
    if origin.contains(&b'#') {
        return Err(PathError::Fragment);
    }
    let (path, query) = match origin.iter().position(|&b| b == b'?') {
        Some(at) => (&origin[..at], Some(&origin[at + 1..])),
        None => (origin, None),
    };
    check_bytes(path, true)?;
    if let Some(query) = query {
        check_bytes(query, false)?;
    }
    let mut out = remove_dot_segments(path);
    if let Some(query) = query {
        out.push('?');
        // Checked above: ASCII only.
        out.push_str(&String::from_utf8_lossy(query));
    }
    Ok(out)
}

/// The path-and-query of a target: origin-form as it is, absolute-form
/// (`http://host/path`) without its scheme and authority.
fn origin_form(target: &[u8]) -> Result<&[u8], PathError> {
    if target.first() == Some(&b'/') {
        return Ok(target);
    }
    let lower: Vec<u8> = target.iter().take(8).map(u8::to_ascii_lowercase).collect();
    let rest = if lower.starts_with(b"http://") {
        &target[7..]
    } else if lower.starts_with(b"https://") {
        &target[8..]
    } else {
        return Err(PathError::NotAPath);
    };
    // The authority ends at the first `/`, `?` or `#`.
    match rest.iter().position(|&b| matches!(b, b'/' | b'?' | b'#')) {
        Some(at) if rest[at] == b'/' => Ok(&rest[at..]),
        // `http://host?q` has the path `/`.
        Some(_) | None => Err(PathError::NotAPath),
    }
}

/// Raw bytes: printable ASCII only, no `\`. Percent-encodings: two hex
/// digits, never `/`, `\`, `.`, `%` or a control byte in a path, never a
/// control byte in a query; the decoded path must be UTF-8.
fn check_bytes(part: &[u8], is_path: bool) -> Result<(), PathError> {
    let mut decoded = Vec::with_capacity(part.len());
    let mut i = 0;
    while i < part.len() {
        let b = part[i];
        if !(0x21..0x7f).contains(&b) || (is_path && b == b'\\') {
            return Err(PathError::ForbiddenByte(b));
        }
        if b != b'%' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let hex = part
            .get(i + 1..i + 3)
            .ok_or(PathError::BadPercentEncoding)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(PathError::BadPercentEncoding)?;
        let forbidden = value < 0x20
            || value == 0x7f
            || (is_path && matches!(value, b'/' | b'\\' | b'.' | b'%'));
        if forbidden {
            return Err(PathError::ForbiddenEncoding(value));
        }
        decoded.push(value);
        i += 3;
    }
    if is_path && std::str::from_utf8(&decoded).is_err() {
        return Err(PathError::NotUtf8);
    }
    Ok(())
}

/// RFC 3986 5.2.4 on a checked path, with empty segments (repeated
/// slashes) dropped: `/a//b/./c/../d` is `/a/b/d`; `..` never climbs above
/// the root. A path ending in `/`, `/.` or `/..` keeps a trailing slash.
fn remove_dot_segments(path: &[u8]) -> String {
    // Checked: printable ASCII.
    let path = String::from_utf8_lossy(path);
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/') {
        trailing_slash = false;
        match segment {
            "" => trailing_slash = true,
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(target: &str) -> String {
        normalize(target.as_bytes()).unwrap_or_else(|e| panic!("{target}: {e}"))
    }

    fn refused(target: &str) -> PathError {
        normalize(target.as_bytes()).expect_err(target)
    }

    #[test]
    fn dot_segments_and_repeated_slashes_go() {
        assert_eq!(ok("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(ok("/public/../v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(ok("/public//../v1/chat"), "/v1/chat");
        assert_eq!(ok("//public///x"), "/public/x");
        assert_eq!(ok("/a/./b/../c"), "/a/c");
        assert_eq!(ok("/../../etc"), "/etc");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/a/b/"), "/a/b/");
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/.."), "/");
        assert_eq!(ok("/v1/files?purpose=x&a=%2F"), "/v1/files?purpose=x&a=%2F");
        assert_eq!(ok("/v1/x%20y"), "/v1/x%20y");
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        assert_eq!(ok("http://evil.example/public/../v1/chat"), "/v1/chat");
        assert_eq!(ok("HTTPS://h:8443//a?q=1"), "/a?q=1");
        assert_eq!(refused("http://host"), PathError::NotAPath);
        assert_eq!(refused("*"), PathError::NotAPath);
        assert_eq!(refused("v1/chat"), PathError::NotAPath);
    }

    #[test]
    fn unsafe_encodings_are_refused() {
        for (target, error) in [
            ("/public/%2e%2e/v1", PathError::ForbiddenEncoding(b'.')),
            ("/public/%2E./v1", PathError::ForbiddenEncoding(b'.')),
            ("/public/..%2fv1", PathError::ForbiddenEncoding(b'/')),
            ("/public/..%5cv1", PathError::ForbiddenEncoding(b'\\')),
            ("/public/%252e%252e/v1", PathError::ForbiddenEncoding(b'%')),
            ("/public/%00", PathError::ForbiddenEncoding(0)),
            ("/public/%c0%ae%c0%ae/v1", PathError::NotUtf8),
            ("/public/%e0%80%ae", PathError::NotUtf8),
            ("/public/%zz", PathError::BadPercentEncoding),
            ("/public/%2", PathError::BadPercentEncoding),
            ("/public\\..\\v1", PathError::ForbiddenByte(b'\\')),
            ("/public/\x01", PathError::ForbiddenByte(1)),
            ("/caf\u{e9}", PathError::ForbiddenByte(0xc3)),
            ("/a#frag", PathError::Fragment),
            ("/a?q=%00", PathError::ForbiddenEncoding(0)),
        ] {
            assert_eq!(refused(target), error, "{target}");
        }
        // Valid multi-byte UTF-8, encoded, is a path like any other.
        assert_eq!(ok("/caf%C3%A9"), "/caf%C3%A9");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any target is normalized or refused, never a panic; a normalized
        /// path has no dot segment and no empty segment, and normalizing it
        /// again changes nothing.
        #[test]
        fn normalization_is_final(target in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(path) = normalize(&target) {
                let (only_path, _) = path.split_once('?').unwrap_or((&path, ""));
                prop_assert!(only_path.starts_with('/'));
                prop_assert!(!only_path.split('/').any(|s| s == "." || s == ".."));
                prop_assert!(!only_path.contains("//"));
                prop_assert_eq!(normalize(path.as_bytes()), Ok(path.clone()));
            }
        }

        /// The cheap check is right: a plain path normalizes to itself.
        #[test]
        fn plain_paths_are_already_normal(target in "/[a-zA-Z0-9_~/-]{0,40}") {
            if is_plain(target.as_bytes()) {
                prop_assert_eq!(normalize(target.as_bytes()), Ok(target.clone()));
            }
        }

        /// Dot segments in any position never survive, however written.
        #[test]
        fn generated_dot_paths(parts in proptest::collection::vec(prop_oneof!["a", "b", "\\.", "\\.\\.", ""], 0..12)) {
            let target = format!("/{}", parts.join("/"));
            let path = normalize(target.as_bytes()).expect("plain segments normalize");
            prop_assert!(!path.split('/').any(|s| s == "." || s == ".."));
        }
    }
}
