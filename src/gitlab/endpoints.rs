//! The GitLab reads we make, and the fields of their answers that we use.
//!
//! Writes use the `gitlab` crate's typed endpoints (see the executor); reads go through one
//! small generic GET endpoint so each call site shows the exact REST path it costs.

use std::borrow::Cow;

use gitlab::api::{self, AsyncQuery, Endpoint, Pageable, QueryParams};
use http::Method;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::client::{ClientError, GitlabClient};

/// `GET /api/v4/<path>?<params>`.
#[derive(Debug, Clone)]
pub struct Get {
    path: String,
    params: Vec<(&'static str, String)>,
}

impl Get {
    pub fn new(path: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            params: Vec::new(),
        }
    }

    pub fn param(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.params.push((key, value.into()));
        self
    }

    /// One object.
    pub async fn one<T: DeserializeOwned + 'static>(
        &self,
        client: &GitlabClient,
    ) -> Result<T, api::ApiError<ClientError>> {
        self.query_async(client).await
    }

    /// Every page (100 per page, following GitLab's `Link: rel="next"`).
    pub async fn all<T: DeserializeOwned + Send + 'static>(
        &self,
        client: &GitlabClient,
    ) -> Result<Vec<T>, api::ApiError<ClientError>> {
        api::paged(self, api::Pagination::All)
            .query_async(client)
            .await
    }
}

impl Endpoint for Get {
    fn method(&self) -> Method {
        Method::GET
    }

    fn endpoint(&self) -> Cow<'static, str> {
        self.path.clone().into()
    }

    fn parameters(&self) -> QueryParams<'_> {
        let mut p = QueryParams::default();
        for (k, v) in &self.params {
            p.push(*k, v.as_str());
        }
        p
    }
}

impl Pageable for Get {}

/// A project or group in a path: numeric ids stay, full paths are percent-encoded.
pub fn path_id(raw: &str) -> String {
    if raw.chars().all(|c| c.is_ascii_digit()) {
        raw.to_owned()
    } else {
        url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
    }
}

/// `GET /users/:id` (the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiUser {
    pub id: u64,
    pub username: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub bot: bool,
    #[serde(default)]
    pub public_email: Option<String>,
    #[serde(default)]
    pub organization: Option<String>,
}

/// A user as embedded in other objects.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiUserRef {
    pub id: u64,
    pub username: String,
}

/// `GET /users/:id/status`.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiStatus {
    #[serde(default)]
    pub availability: Option<String>,
}

/// `GET /projects/:id/merge_requests/:iid` and the MR lists.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiMergeRequest {
    pub iid: u64,
    pub project_id: u64,
    #[serde(default)]
    pub title: String,
    pub state: String,
    pub author: ApiUserRef,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub reviewers: Vec<ApiUserRef>,
}

/// A note on an MR or issue.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiNote {
    pub id: u64,
    pub body: String,
    pub author: ApiUserRef,
    #[serde(default)]
    pub system: bool,
}
