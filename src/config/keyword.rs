//! The config's keywords: every closed set of words a field may take, each
//! spelled once. The file holds them as text; the translation parses them
//! and names the field and the choices when a word is not one of them.

/// An enum whose variants are config words: `as_str`, `parse` and `ALL`.
macro_rules! keywords {
    ($(#[$meta:meta])* pub enum $name:ident {
        $($(#[$vmeta:meta])* $variant:ident = $word:literal,)+
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl Keyword for $name {
            const ALL: &'static [$name] = $name::ALL;

            fn parse(word: &str) -> Option<Self> {
                $name::parse(word)
            }

            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }
    };
}

/// A closed set of config words (what [`keywords!`] declares), for the
/// lowering to parse and to name the choices when a word is none of them.
pub trait Keyword: Copy + 'static {
    const ALL: &'static [Self];
    fn parse(word: &str) -> Option<Self>;
    fn as_str(self) -> &'static str;
}

keywords! {
    /// How a pool picks a backend.
    pub enum Strategy {
        RoundRobin = "round_robin",
        /// Smooth weighted round robin.
        Weighted = "weighted",
        /// Fewest requests in flight.
        LeastRequests = "least_requests",
    }
}

keywords! {
    /// What makes a failed attempt worth another backend.
    pub enum RetryOn {
        /// The backend refused or did not accept the connection.
        ConnectError = "connect_error",
        /// Connect or first-byte timeout.
        Timeout = "timeout",
        /// The backend answered 500-599.
        ServerError = "5xx",
        /// The backend answered 429.
        RateLimited = "429",
    }
}

keywords! {
    /// A kind of credential a route accepts.
    pub enum AuthMethod {
        /// No credentials needed.
        None = "none",
        ApiKey = "api_key",
        Jwt = "jwt",
        /// A verified TLS client certificate (mTLS) named in `auth.client_certs`.
        ClientCert = "client_cert",
    }
}

keywords! {
    pub enum AccessLogFormat {
        Json = "json",
        Text = "text",
    }
}

keywords! {
    /// Whether a TLS listener with a client CA requires a client certificate.
    pub enum ClientAuth {
        Required = "required",
        /// Verified when sent; a connection without one is served too.
        Optional = "optional",
    }
}

keywords! {
    /// Where limit counts are kept.
    pub enum LimitMode {
        /// Each replica counts alone (no Redis).
        Local = "local",
        /// Each replica decides locally, spending budget leased from Redis.
        Hybrid = "hybrid",
        /// Every decision is made in Redis.
        Redis = "redis",
    }
}

keywords! {
    /// What a replica does with limited requests while Redis is failing.
    pub enum RedisFailure {
        /// Keep serving on local counts with a per-replica share of each limit.
        Open = "open",
        /// Refuse with 429.
        Closed429 = "closed429",
        /// Refuse with 503.
        Closed503 = "closed503",
    }
}

keywords! {
    /// What a limit rule counts per.
    pub enum LimitKeyPart {
        ApiKey = "api_key",
        Subject = "subject",
        Team = "team",
        Model = "model",
        Route = "route",
        ClientIp = "client_ip",
        Global = "global",
    }
}

keywords! {
    /// What a limit rule counts.
    pub enum LimitCounts {
        Requests = "requests",
        InputTokens = "input_tokens",
        OutputTokens = "output_tokens",
        TotalTokens = "total_tokens",
        Concurrent = "concurrent",
        /// Spend in USD at the configured `pricing` (a budget).
        CostUsd = "cost_usd",
    }
}

impl LimitCounts {
    pub fn is_tokens(self) -> bool {
        matches!(
            self,
            LimitCounts::InputTokens | LimitCounts::OutputTokens | LimitCounts::TotalTokens
        )
    }

    /// Reserved on admission and settled on the real usage: tokens and cost.
    pub fn is_metered(self) -> bool {
        self.is_tokens() || self == LimitCounts::CostUsd
    }
}

keywords! {
    /// A limit rule's window, aligned to the clock.
    pub enum LimitWindow {
        Second = "second",
        Minute = "minute",
        Hour = "hour",
        Day = "day",
        /// A calendar month in UTC.
        Month = "month",
    }
}

impl LimitWindow {
    /// The window's length; for a month, the longest one (31 days).
    pub fn seconds(self) -> u64 {
        match self {
            LimitWindow::Second => 1,
            LimitWindow::Minute => 60,
            LimitWindow::Hour => 3600,
            LimitWindow::Day => 86_400,
            LimitWindow::Month => 31 * 86_400,
        }
    }
}

/// The words of `K`, for an error message: `a`, `b` or `c`.
pub fn choices(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => format!("`{one}`"),
        [rest @ .., last] => {
            let rest: Vec<String> = rest.iter().map(|w| format!("`{w}`")).collect();
            format!("{} or `{last}`", rest.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for kind in RetryOn::ALL {
            assert_eq!(RetryOn::parse(kind.as_str()), Some(*kind));
        }
        assert_eq!(RetryOn::parse("5xx"), Some(RetryOn::ServerError));
        assert_eq!(RetryOn::parse("6xx"), None);
        assert_eq!(choices(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
