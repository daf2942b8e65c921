//! Authenticating webhook deliveries: GitLab's secret token and Standard Webhooks signatures.

mod verify;

pub use verify::{Rejection, SignatureHeaders, SigningKey, Verifier};
