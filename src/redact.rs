//! Keeps secrets out of what operator commands print.
//!
//! Three layers, because no single one is enough:
//! 1. headers and JSON keys whose *name* looks secret (token, secret, signature, password,
//!    authorization, cookie, …) have their value replaced, whatever it is;
//! 2. strings *shaped* like credentials are cut: GitLab tokens (`glpat-…`, `gldt-…`, …),
//!    Standard Webhooks keys (`whsec_…`) and `private_token=` style URL parameters;
//! 3. the secrets this process was configured with (`GITLAB_TOKEN`, `COCREATE_WEBHOOK_SECRET`,
//!    `COCREATE_SIGNING_KEY`, when set in its environment) are replaced wherever they appear.

use serde_json::Value;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Parts of a header or JSON key name that mark its value as secret.
const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "signature",
    "password",
    "passwd",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "private-key",
    "api_key",
    "api-key",
    "apikey",
];

/// Prefixes of GitLab tokens and Standard Webhooks signing keys.
const TOKEN_PREFIXES: &[&str] = &[
    "glpat-", "gloas-", "gldt-", "glrt-", "glrtr-", "glcbt-", "glptt-", "glft-", "glimt-",
    "glagent-", "glsoat-", "glffct-", "gltst-", "glwt-", "whsec_",
];

/// URL parameters that carry a token.
const TOKEN_PARAMETERS: &[&str] = &["private_token=", "access_token=", "job_token="];

/// Known secrets shorter than this are not scrubbed by value (they would match everywhere).
const MIN_KNOWN_SECRET_LEN: usize = 6;

/// Environment variables whose values are secrets (comma-separated lists allowed).
const SECRET_VARIABLES: &[&str] = &[
    "GITLAB_TOKEN",
    "COCREATE_WEBHOOK_SECRET",
    "COCREATE_SIGNING_KEY",
];

/// Redacts secrets from text, headers and JSON.
#[derive(Clone, Default)]
pub struct Redactor {
    known: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("known", &self.known.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor that also scrubs the given secret values.
    pub fn with_known(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut known: Vec<String> = secrets
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() >= MIN_KNOWN_SECRET_LEN)
            .collect();
        // Longest first, so a secret containing another is replaced whole.
        known.sort_by_key(|s| std::cmp::Reverse(s.len()));
        known.dedup();
        Self { known }
    }

    /// A redactor that scrubs the secrets configured in this process's environment.
    pub fn from_env() -> Self {
        Self::with_known(
            SECRET_VARIABLES
                .iter()
                .filter_map(|name| std::env::var(name).ok())
                .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>()),
        )
    }

    /// `true` if a header or key with this name holds a secret.
    pub fn is_secret_name(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        SECRET_NAME_PARTS.iter().any(|part| name.contains(part))
    }

    /// A header value fit to print.
    pub fn header(&self, name: &str, value: &str) -> String {
        if Self::is_secret_name(name) {
            REDACTED.to_owned()
        } else {
            self.text(value)
        }
    }

    /// A JSON document fit to print: values under secret-looking keys replaced, strings scrubbed.
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (key, v) in map.iter_mut() {
                    if Self::is_secret_name(key) && !v.is_null() {
                        *v = Value::String(REDACTED.to_owned());
                    } else {
                        self.json(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::String(s) => {
                let clean = self.text(s);
                if clean != *s {
                    *s = clean;
                }
            }
            _ => {}
        }
    }

    /// Free text fit to print: known secrets, token-shaped strings and token parameters cut.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        for marker in TOKEN_PREFIXES.iter().chain(TOKEN_PARAMETERS) {
            out = cut_after(&out, marker);
        }
        out
    }
}

/// Replaces the token characters following each occurrence of `marker` with [`REDACTED`]
/// (when there are at least a few: `glpat-` alone in prose stays).
fn cut_after(text: &str, marker: &str) -> String {
    let is_token_char =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=' | '%');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(marker) {
        let after = pos + marker.len();
        out.push_str(&rest[..after]);
        let tail = &rest[after..];
        let len = tail
            .char_indices()
            .find(|&(_, c)| !is_token_char(c))
            .map_or(tail.len(), |(i, _)| i);
        if len >= 4 {
            out.push_str(REDACTED);
        } else {
            out.push_str(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_header_names_are_redacted_whatever_the_value() {
        let r = Redactor::default();
        for name in [
            "X-Gitlab-Token",
            "webhook-signature",
            "Authorization",
            "Cookie",
            "X-Api-Key",
            "x-webhook-secret",
        ] {
            assert_eq!(r.header(name, "plain value"), REDACTED, "{name}");
        }
        for name in [
            "x-gitlab-event",
            "idempotency-key",
            "webhook-id",
            "user-agent",
        ] {
            assert_eq!(r.header(name, "GitLab/17.0"), "GitLab/17.0", "{name}");
        }
    }

    #[test]
    fn token_shapes_are_cut_and_prose_is_kept() {
        let r = Redactor::default();
        assert_eq!(
            r.text("GET /api/v4/user?private_token=abc123def&page=2 failed"),
            "GET /api/v4/user?private_token=[redacted]&page=2 failed"
        );
        assert_eq!(
            r.text("token glpat-AbCdEf_0123456789xyz, key whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "token glpat-[redacted], key whsec_[redacted]"
        );
        assert_eq!(
            r.text("tokens start with glpat- here"),
            "tokens start with glpat- here"
        );
    }

    #[test]
    fn known_secrets_are_replaced_anywhere() {
        let r = Redactor::with_known(["s3cr3t-value".to_owned(), "abc".to_owned()]);
        assert_eq!(
            r.text("body mentions s3cr3t-value twice: s3cr3t-value; abc stays"),
            "body mentions [redacted] twice: [redacted]; abc stays"
        );
    }

    #[test]
    fn json_keys_and_strings_are_redacted() {
        let r = Redactor::with_known(["hunter2-long".to_owned()]);
        let mut v = json!({
            "object_attributes": {"title": "uses hunter2-long", "iid": 16},
            "secret_token": "x",
            "nested": [{"password": "y", "api_key": null}],
        });
        r.json(&mut v);
        assert_eq!(
            v,
            json!({
                "object_attributes": {"title": "uses [redacted]", "iid": 16},
                "secret_token": "[redacted]",
                "nested": [{"password": "[redacted]", "api_key": null}],
            })
        );
    }
}
