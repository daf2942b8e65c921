//! Constant-time checks of `X-Gitlab-Token` (any of several secrets, for rotation) and of
//! Standard Webhooks signatures (`webhook-id`, `webhook-timestamp`, `webhook-signature`:
//! HMAC-SHA256 over `{id}.{timestamp}.{body}`, within a time window).

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Why a delivery was refused (the reason is a metric label and a log field; the HTTP answer is
/// a bare 401 so nothing is learnt from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("missing X-Gitlab-Token")]
    MissingToken,
    #[error("wrong X-Gitlab-Token")]
    BadToken,
    #[error("missing Standard Webhooks headers")]
    MissingSignature,
    #[error("webhook-timestamp is not a number")]
    BadTimestamp,
    #[error("webhook-timestamp outside the accepted window")]
    StaleTimestamp,
    #[error("no webhook-signature matches")]
    BadSignature,
}

impl Rejection {
    pub fn label(self) -> &'static str {
        match self {
            Rejection::MissingToken => "missing_token",
            Rejection::BadToken => "bad_token",
            Rejection::MissingSignature => "missing_signature",
            Rejection::BadTimestamp => "bad_timestamp",
            Rejection::StaleTimestamp => "stale_timestamp",
            Rejection::BadSignature => "bad_signature",
        }
    }
}

/// A Standard Webhooks signing key (`whsec_<base64>`).
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let b64 = raw.trim().strip_prefix("whsec_").unwrap_or(raw.trim());
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map(Self)
            .map_err(|_| "COCREATE_SIGNING_KEY must be `whsec_` followed by base64".to_string())
    }

    /// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD
                .encode(self.mac(id, timestamp, body).finalize().into_bytes())
        )
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

/// Shortest accepted webhook secret (characters).
pub const MIN_SECRET_LEN: usize = 16;

/// Why a configured webhook secret is refused at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{setting} has an empty entry (two commas in a row, or one at an end); list the secrets as `old,new`")]
    Empty { setting: &'static str },
    #[error("{setting} entry {position} is only {len} character(s) long; use at least {MIN_SECRET_LEN} (e.g. `openssl rand -hex 32`)")]
    TooShort {
        setting: &'static str,
        position: usize,
        len: usize,
    },
    #[error("{setting} entry {position} has spaces or characters outside printable ASCII, which GitLab and the comma-separated list do not carry unambiguously")]
    Ambiguous {
        setting: &'static str,
        position: usize,
    },
}

/// Checks the entries of a comma-separated secret list (already split): each at least
/// [`MIN_SECRET_LEN`] characters of visible ASCII, none empty, none with spaces (so a comma
/// typed inside a secret cannot silently make a short fragment a valid token). Never puts a
/// secret into the error.
pub fn check_secrets(setting: &'static str, secrets: &[String]) -> Result<(), SecretError> {
    for (i, s) in secrets.iter().enumerate() {
        let position = i + 1;
        if s.is_empty() {
            return Err(SecretError::Empty { setting });
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SecretError::Ambiguous { setting, position });
        }
        if s.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                setting,
                position,
                len: s.len(),
            });
        }
    }
    Ok(())
}

/// The configured secrets.
#[derive(Clone, Default)]
pub struct Verifier {
    tokens: Vec<Vec<u8>>,
    keys: Vec<SigningKey>,
    window: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("tokens", &self.tokens.len())
            .field("keys", &self.keys.len())
            .field("window", &self.window)
            .finish()
    }
}

/// The Standard Webhooks headers of a delivery.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

impl Verifier {
    /// `tokens`: accepted `X-Gitlab-Token` values (empty: no token check).
    /// `keys`: Standard Webhooks keys (empty: signatures not required).
    pub fn new(tokens: Vec<String>, keys: Vec<SigningKey>, window: Duration) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|t| t.trim().as_bytes().to_vec())
                .filter(|t| !t.is_empty())
                .collect(),
            keys,
            window,
        }
    }

    /// No secret at all is configured (allowed only in dry runs).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty() && self.keys.is_empty()
    }

    pub fn check_token(&self, header: Option<&[u8]>) -> Result<(), Rejection> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let given = header.ok_or(Rejection::MissingToken)?;
        // Compare against every configured token, without stopping early.
        let mut ok = subtle::Choice::from(0u8);
        for t in &self.tokens {
            ok |= t.as_slice().ct_eq(given);
        }
        if bool::from(ok) {
            Ok(())
        } else {
            Err(Rejection::BadToken)
        }
    }

    /// Everything that can be checked before the body is read: the token, and with signing
    /// keys, that the Standard Webhooks headers are there and the timestamp is within the
    /// window. A delivery failing this is refused without its body ever being buffered.
    pub fn check_headers(
        &self,
        token: Option<&[u8]>,
        h: SignatureHeaders<'_>,
        now_unix: i64,
    ) -> Result<(), Rejection> {
        self.check_token(token)?;
        if self.keys.is_empty() {
            return Ok(());
        }
        let (Some(_), Some(ts), Some(_)) = (h.id, h.timestamp, h.signature) else {
            return Err(Rejection::MissingSignature);
        };
        let ts: i64 = ts.trim().parse().map_err(|_| Rejection::BadTimestamp)?;
        if now_unix.abs_diff(ts) > self.window.as_secs() {
            return Err(Rejection::StaleTimestamp);
        }
        Ok(())
    }

    /// Signing keys are configured: the signed `webhook-id` identifies a delivery.
    pub fn signs(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn check_signature(
        &self,
        h: SignatureHeaders<'_>,
        body: &[u8],
        now_unix: i64,
    ) -> Result<(), Rejection> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let (Some(id), Some(ts), Some(sigs)) = (h.id, h.timestamp, h.signature) else {
            return Err(Rejection::MissingSignature);
        };
        let ts: i64 = ts.trim().parse().map_err(|_| Rejection::BadTimestamp)?;
        if now_unix.abs_diff(ts) > self.window.as_secs() {
            return Err(Rejection::StaleTimestamp);
        }
        let candidates: Vec<Vec<u8>> = sigs
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .collect();
        for key in &self.keys {
            for c in &candidates {
                // `verify_slice` compares in constant time.
                if key.mac(id, ts, body).verify_slice(c).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(Rejection::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR: &str = include_str!("../../tests/fixtures/standard_webhooks_test_vector.json");

    fn vector() -> (SigningKey, String, i64, String, String) {
        let v: serde_json::Value = serde_json::from_str(VECTOR).expect("json");
        let s = |k: &str| v[k].as_str().expect(k).to_owned();
        (
            SigningKey::parse(&s("secret")).expect("key"),
            s("msg_id"),
            v["timestamp"].as_i64().expect("ts"),
            s("payload"),
            s("expected_signature"),
        )
    }

    #[test]
    fn standard_webhooks_test_vector_signs_and_verifies() {
        let (key, id, ts, payload, expected) = vector();
        assert_eq!(key.sign(&id, ts, payload.as_bytes()), expected);
        let v = Verifier::new(vec![], vec![key], Duration::from_secs(300));
        let h = SignatureHeaders {
            id: Some(&id),
            timestamp: Some(&ts.to_string()),
            signature: Some(&expected),
        };
        assert_eq!(v.check_signature(h, payload.as_bytes(), ts + 299), Ok(()));
        // Several signatures, one valid (key rotation on the sender's side).
        let both = format!("v1,AAAA {expected}");
        let h2 = SignatureHeaders {
            signature: Some(&both),
            ..h
        };
        assert_eq!(v.check_signature(h2, payload.as_bytes(), ts), Ok(()));
    }

    #[test]
    fn signature_failures() {
        let (key, id, ts, payload, expected) = vector();
        let v = Verifier::new(vec![], vec![key], Duration::from_secs(300));
        let tss = ts.to_string();
        let h = SignatureHeaders {
            id: Some(&id),
            timestamp: Some(&tss),
            signature: Some(&expected),
        };
        assert_eq!(
            v.check_signature(h, payload.as_bytes(), ts + 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            v.check_signature(h, payload.as_bytes(), ts - 301),
            Err(Rejection::StaleTimestamp)
        );
        assert_eq!(
            v.check_signature(h, b"{\"tampered\":1}", ts),
            Err(Rejection::BadSignature)
        );
        let other_id = SignatureHeaders {
            id: Some("msg_other"),
            ..h
        };
        assert_eq!(
            v.check_signature(other_id, payload.as_bytes(), ts),
            Err(Rejection::BadSignature)
        );
        let none = SignatureHeaders {
            id: None,
            timestamp: None,
            signature: None,
        };
        assert_eq!(
            v.check_signature(none, payload.as_bytes(), ts),
            Err(Rejection::MissingSignature)
        );
        let bad_ts = SignatureHeaders {
            timestamp: Some("soon"),
            ..h
        };
        assert_eq!(
            v.check_signature(bad_ts, payload.as_bytes(), ts),
            Err(Rejection::BadTimestamp)
        );
    }

    #[test]
    fn short_empty_or_ambiguous_secrets_are_refused_without_echoing_them() {
        let ok =
            |v: &[&str]| check_secrets("S", &v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(ok(&["0123456789abcdef", "fedcba9876543210fe"]), Ok(()));
        // `COCREATE_WEBHOOK_SECRET=real,x`: the fragment `x` would be a valid token.
        let short = ok(&["0123456789abcdef", "x"]).unwrap_err();
        assert_eq!(
            short,
            SecretError::TooShort {
                setting: "S",
                position: 2,
                len: 1
            }
        );
        assert_eq!(
            ok(&["0123456789abcdef", ""]),
            Err(SecretError::Empty { setting: "S" })
        );
        assert_eq!(
            ok(&["0123456789 abcdef"]),
            Err(SecretError::Ambiguous {
                setting: "S",
                position: 1
            })
        );
        assert_eq!(
            ok(&["0123456789abcdé01"]),
            Err(SecretError::Ambiguous {
                setting: "S",
                position: 1
            })
        );
        assert!(!short.to_string().contains("0123456789abcdef"));
    }

    #[test]
    fn headers_are_checked_before_the_body() {
        let (key, id, ts, _, expected) = vector();
        let v = Verifier::new(
            vec!["0123456789abcdef".into()],
            vec![key],
            Duration::from_secs(300),
        );
        let tss = ts.to_string();
        let h = SignatureHeaders {
            id: Some(&id),
            timestamp: Some(&tss),
            signature: Some(&expected),
        };
        let token = Some(b"0123456789abcdef".as_slice());
        assert_eq!(v.check_headers(token, h, ts), Ok(()));
        assert_eq!(v.check_headers(None, h, ts), Err(Rejection::MissingToken));
        let unsigned = SignatureHeaders {
            signature: None,
            ..h
        };
        assert_eq!(
            v.check_headers(token, unsigned, ts),
            Err(Rejection::MissingSignature)
        );
        assert_eq!(
            v.check_headers(token, h, ts + 301),
            Err(Rejection::StaleTimestamp)
        );
    }

    #[test]
    fn tokens_rotate() {
        let v = Verifier::new(
            vec!["old".into(), " new ".into()],
            vec![],
            Duration::from_secs(300),
        );
        assert_eq!(v.check_token(Some(b"old")), Ok(()));
        assert_eq!(v.check_token(Some(b"new")), Ok(()));
        assert_eq!(v.check_token(Some(b"ne")), Err(Rejection::BadToken));
        assert_eq!(v.check_token(Some(b"")), Err(Rejection::BadToken));
        assert_eq!(v.check_token(None), Err(Rejection::MissingToken));
        assert!(!v.is_open());
        assert!(Verifier::new(vec![], vec![], Duration::ZERO).is_open());
    }
}
