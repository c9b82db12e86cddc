//! What every section's lowering checks with: the fault it reports (the
//! dotted path of the field and what is wrong), and the bounds and parsers
//! that name the field when a value does not fit. Numbers that size memory
//! or time have an upper bound as well as a lower one.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use http::HeaderValue;

use super::glob::Glob;
use super::keyword::{choices, Keyword};
use super::tls::CaBundle;

/// A fault: the dotted path of the field, and what is wrong with it.
#[derive(Debug)]
pub struct Fault {
    pub field: String,
    pub message: String,
}

/// What a lowering gives: the section's settings, or the first fault.
pub type Lowered<T> = std::result::Result<T, Fault>;

pub const SECOND: Duration = Duration::from_secs(1);
pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);
pub const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn fault<T>(field: impl Into<String>, message: impl Into<String>) -> Lowered<T> {
    Err(Fault {
        field: field.into(),
        message: message.into(),
    })
}

pub fn ensure(ok: bool, field: impl FnOnce() -> String, message: &str) -> Lowered<()> {
    if ok {
        Ok(())
    } else {
        fault(field(), message)
    }
}

/// `min <= value <= max`, for counts.
pub fn count_in<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Lowered<T> {
    if value < min || value > max {
        return fault(field, format!("must be between {min} and {max}"));
    }
    Ok(value)
}

/// A duration above zero and at most `max` (it is added to instants).
pub fn positive_up_to(field: &str, value: Duration, max: Duration) -> Lowered<Duration> {
    if value.is_zero() {
        return fault(field, "must be above zero");
    }
    up_to(field, value, max)
}

/// A duration of at most `max`.
pub fn up_to(field: &str, value: Duration, max: Duration) -> Lowered<Duration> {
    if value > max {
        return fault(field, format!("must be at most {}", human(max)));
    }
    Ok(value)
}

/// `min <= value <= max`, for durations with a floor above zero.
pub fn duration_in(
    field: &str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Lowered<Duration> {
    if value < min || value > max {
        return fault(
            field,
            format!("must be between {} and {}", human(min), human(max)),
        );
    }
    Ok(value)
}

/// `24h`, `1m`, `100ms`: a bound the way config writes durations.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1000) => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// A name that must be given and not used twice among its kind.
pub fn unique_name<'a>(
    seen: &mut HashSet<&'a str>,
    field: String,
    name: &'a str,
    kind: &str,
) -> Lowered<()> {
    if name.is_empty() {
        return fault(field, "must not be empty");
    }
    if !seen.insert(name) {
        return fault(field, format!("`{name}` is used by another {kind}"));
    }
    Ok(())
}

pub fn socket_addr(field: &str, text: &str) -> Lowered<SocketAddr> {
    text.parse().or_else(|_| {
        fault(
            field,
            format!("`{text}` is not an ip:port address (e.g. 0.0.0.0:8080)"),
        )
    })
}

pub fn ca_bundle(field: &str, path: &Option<String>) -> Lowered<Option<CaBundle>> {
    match path {
        None => Ok(None),
        Some(path) => CaBundle::load(path).map(Some).or_else(|e| fault(field, e)),
    }
}

/// A header value from config: valid, and masked in every log.
pub fn sensitive_value(field: &str, value: &str) -> Lowered<HeaderValue> {
    let mut value = HeaderValue::from_str(value)
        .or_else(|_| fault(field, "contains characters not allowed in an HTTP header"))?;
    value.set_sensitive(true);
    Ok(value)
}

pub fn globs(at: &str, patterns: &[String]) -> Lowered<Vec<Glob>> {
    patterns
        .iter()
        .enumerate()
        .map(|(j, p)| {
            Glob::new(p).ok_or_else(|| Fault {
                field: format!("{at}[{j}]"),
                message: "must not be empty".into(),
            })
        })
        .collect()
}

/// A config word of the kind `K`, naming the field and the choices when
/// `word` is none of them.
pub fn word<K: Keyword>(field: &str, word: &str) -> Lowered<K> {
    K::parse(word).ok_or_else(|| {
        let words: Vec<&str> = K::ALL.iter().map(|k| k.as_str()).collect();
        Fault {
            field: field.to_string(),
            message: format!("unknown value `{word}` (expected {})", choices(&words)),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_like_config() {
        assert_eq!(human(DAY), "24h");
        assert_eq!(human(Duration::from_millis(100)), "100ms");
        assert_eq!(human(MINUTE), "1m");
    }
}
