//! What the CLI says about each API failure (docs §4.4): the status it reports, the
//! `error` of its `api_retry` lines and of the synthetic assistant line, the result
//! text, whether it retries, and the `terminal_reason`.

use crate::dsl::Api;

/// The observable facts of one API failure.
pub(super) struct ApiFacts {
    /// `api_error_status` / `error_status` (none for network and login failures).
    pub status: Option<u16>,
    /// The `error` of `system/api_retry` lines.
    pub retry_error: &'static str,
    /// The `error` of the synthetic assistant line.
    pub synthetic_error: &'static str,
    /// The result text.
    pub text: String,
    /// Whether the CLI retries before giving up.
    pub retried: bool,
    /// `terminal_reason` of the result.
    pub terminal: &'static str,
}

impl ApiFacts {
    /// A failure that ends with `terminal_reason:"completed"`.
    fn new(
        status: Option<u16>,
        (retry_error, synthetic_error): (&'static str, &'static str),
        text: impl Into<String>,
        retried: bool,
    ) -> Self {
        ApiFacts {
            status,
            retry_error,
            synthetic_error,
            text: text.into(),
            retried,
            terminal: "completed",
        }
    }

    /// The facts for `api`, as the real captures show them.
    pub fn of(api: Api) -> Self {
        const AUTH: (&str, &str) = ("authentication_failed", "authentication_failed");
        match api {
            Api::NoKey => Self::new(None, AUTH, "Not logged in · Please run /login", false),
            Api::Network => Self::new(
                None,
                ("unknown", "server_error"),
                "API Error: Unable to connect to API (ConnectionRefused)",
                true,
            ),
            Api::Status(401) => Self::new(
                Some(401),
                AUTH,
                "Invalid API key · Fix external API key",
                true,
            ),
            Api::Status(429) => Self::new(
                Some(429),
                ("rate_limit", "rate_limit"),
                "API Error: Request rejected (429) · Rate limited. Please try again later.",
                true,
            ),
            Api::Status(529) => Self::new(
                Some(529),
                ("server_error", "server_error"),
                "API Error: Repeated 529 Overloaded errors · check status.claude.com",
                true,
            ),
            Api::Status(400) => ApiFacts {
                terminal: "prompt_too_long",
                ..Self::new(
                    Some(400),
                    ("invalid_request", "invalid_request"),
                    "Prompt is too long",
                    false,
                )
            },
            Api::Status(s) if s >= 500 => Self::server_error(s),
            Api::Status(s) => Self::new(
                Some(s),
                ("unknown", "unknown"),
                format!("API Error: {s} Request failed"),
                matches!(s, 408 | 409),
            ),
        }
    }

    /// A 5xx other than 529: retried, its text naming where to look for an outage.
    fn server_error(status: u16) -> Self {
        let reason = match status {
            500 => "Internal server error",
            502 => "Bad gateway",
            503 => "Service unavailable",
            504 => "Gateway timeout",
            _ => "Server error",
        };
        let gateway = gateway_hint();
        let text = format!("API Error: {status} {reason}. This is a server-side issue, usually temporary — try again in a moment. If it persists, {gateway}.");
        Self::new(Some(status), ("server_error", "server_error"), text, true)
    }
}

/// Where the 5xx text sends the user: the gateway of `ANTHROPIC_BASE_URL`, else the
/// status page.
fn gateway_hint() -> String {
    match std::env::var("ANTHROPIC_BASE_URL") {
        Ok(u) if !u.is_empty() => {
            let host = u
                .split("://")
                .nth(1)
                .unwrap_or(&u)
                .trim_end_matches('/')
                .to_string();
            format!("check your inference gateway ({host})")
        }
        _ => "check status.claude.com".to_string(),
    }
}
