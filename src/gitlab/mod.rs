//! The GitLab edge: a retrying REST client, the reads that gather facts (cached where GitLab's
//! rate limits demand it), and the one executor that writes.

mod access;
mod cache;
mod client;
mod endpoints;
mod executor;
mod facts;
mod reservation;

pub use access::TokenHealth;
pub use cache::TtlCache;
pub use client::{host_of, CallCounter, ClientError, ConnectError, GitlabClient, RetryPolicy};
pub use endpoints::{
    path_id, scope_prefixes, ApiHook, ApiIssue, ApiMergeRequest, ApiNote, ApiUser, ApiUserRef, Get,
};
pub use executor::{ExecuteError, ExecutionReport, Executor, WriteLock};
pub use facts::{FactSource, ListedTracking};

use gitlab::api::ApiError;

/// A failed GitLab call, with what we were doing.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct GitlabError {
    pub what: String,
    #[source]
    pub source: ApiError<ClientError>,
}

impl GitlabError {
    pub fn new(what: impl Into<String>, source: ApiError<ClientError>) -> Self {
        Self {
            what: what.into(),
            source,
        }
    }

    /// GitLab answered 404: the object is gone (or the bot cannot see it).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(http::StatusCode::NOT_FOUND)
    }

    pub fn status(&self) -> Option<http::StatusCode> {
        match &self.source {
            ApiError::GitlabWithStatus { status, .. }
            | ApiError::GitlabService { status, .. }
            | ApiError::GitlabObjectWithStatus { status, .. }
            | ApiError::GitlabUnrecognizedWithStatus { status, .. } => Some(*status),
            ApiError::GitlabRateLimited { .. } => Some(http::StatusCode::TOO_MANY_REQUESTS),
            ApiError::Client {
                source: ClientError::Status { status, .. },
            } => Some(*status),
            _ => None,
        }
    }
}

/// Whether a failed call is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// No answer, a timeout, 408, 409, 429 or 5xx: try again with backoff.
    Transient,
    /// GitLab refused the request itself (400, 403, 404 on a write, 405, 422, …): repeating
    /// it cannot help until someone fixes a role, a project or the request.
    Permanent,
    /// 401: the bot's token is bad (revoked, expired, wrong scope). Nothing can work until it
    /// is fixed; events wait instead of failing.
    Unauthorized,
}

impl GitlabError {
    /// How to treat this failure; `write` says whether the call was a write (a 404 on a read
    /// is often a race with a change in GitLab and worth one more try; on a write the target
    /// is gone or hidden from the bot).
    pub fn retry(&self, write: bool) -> Retry {
        use http::StatusCode as S;
        match self.status() {
            None => Retry::Transient,
            Some(S::UNAUTHORIZED) => Retry::Unauthorized,
            Some(S::REQUEST_TIMEOUT | S::CONFLICT | S::TOO_MANY_REQUESTS) => Retry::Transient,
            Some(s) if s.is_server_error() => Retry::Transient,
            Some(S::NOT_FOUND) if !write => Retry::Transient,
            Some(s) if s.is_client_error() => Retry::Permanent,
            Some(_) => Retry::Transient,
        }
    }
}

/// Adds "what we were doing" to a GitLab result.
pub(crate) trait Context<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, GitlabError>;
}

impl<T> Context<T> for Result<T, ApiError<ClientError>> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, GitlabError> {
        self.map_err(|e| GitlabError::new(what(), e))
    }
}
