//! The GitLab edge: a retrying REST client, the reads that gather facts (cached where GitLab's
//! rate limits demand it), and the one executor that writes.

mod cache;
mod client;
mod endpoints;
mod executor;
mod facts;

pub use cache::TtlCache;
pub use client::{host_of, CallCounter, ClientError, ConnectError, GitlabClient, RetryPolicy};
pub use endpoints::{
    path_id, scope_prefixes, ApiIssue, ApiMergeRequest, ApiNote, ApiUser, ApiUserRef, Get,
};
pub use executor::{ExecuteError, ExecutionReport, Executor};
pub use facts::FactSource;

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

/// Adds "what we were doing" to a GitLab result.
pub(crate) trait Context<T> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, GitlabError>;
}

impl<T> Context<T> for Result<T, ApiError<ClientError>> {
    fn doing(self, what: impl FnOnce() -> String) -> Result<T, GitlabError> {
        self.map_err(|e| GitlabError::new(what(), e))
    }
}
