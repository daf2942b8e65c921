//! Authenticating webhook deliveries: GitLab's secret token and Standard Webhooks signatures.

mod verify;

pub use verify::{
    check_secrets, Rejection, SecretError, SignatureHeaders, SigningKey, Verifier, MIN_SECRET_LEN,
};
