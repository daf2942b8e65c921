//! The GitLab reads we make, and the fields of their answers that we use.
//!
//! Writes use the `gitlab` crate's typed endpoints (see the executor); reads go through one
//! small generic GET endpoint so each call site shows the exact REST path it costs.

use std::borrow::Cow;

use gitlab::api::{self, AsyncClient, AsyncQuery, Endpoint, QueryParams, RestClient};
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

    /// One page of the list, with its headers; a non-2xx answer is an error with its status.
    async fn page(
        &self,
        client: &GitlabClient,
        per_page: u64,
        page: u64,
    ) -> Result<http::Response<bytes::Bytes>, api::ApiError<ClientError>> {
        let mut url = client.rest_endpoint(&self.path)?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.params {
                q.append_pair(k, v);
            }
            q.append_pair("per_page", &per_page.to_string());
            q.append_pair("page", &page.to_string());
        }
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(url.as_str());
        let rsp = client.rest_async(req, Vec::new()).await?;
        let status = rsp.status();
        if !status.is_success() {
            return Err(api::ApiError::client(ClientError::Status {
                status,
                body: String::from_utf8_lossy(rsp.body())
                    .chars()
                    .take(500)
                    .collect(),
            }));
        }
        Ok(rsp)
    }

    /// How many items the list has, from GitLab's `x-total` header of a `per_page=1` page: one
    /// call whatever the size. `None` when GitLab leaves the header out (it does above 10,000
    /// items).
    pub async fn total(
        &self,
        client: &GitlabClient,
    ) -> Result<Option<u64>, api::ApiError<ClientError>> {
        let rsp = self.page(client, 1, 1).await?;
        Ok(rsp
            .headers()
            .get("x-total")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok()))
    }

    /// Every page, 100 per page, following GitLab's `x-next-page` header: the cost is exactly
    /// the number of pages (the `gitlab` crate's offset pager asks for one page more when the
    /// last page is full, so we page ourselves).
    pub async fn all<T: DeserializeOwned + Send + 'static>(
        &self,
        client: &GitlabClient,
    ) -> Result<Vec<T>, api::ApiError<ClientError>> {
        self.all_from(client, 1).await
    }

    /// Like [`Get::all`], from page `first` (of 100) on.
    pub async fn all_from<T: DeserializeOwned + Send + 'static>(
        &self,
        client: &GitlabClient,
        first: u64,
    ) -> Result<Vec<T>, api::ApiError<ClientError>> {
        self.pages_until(client, first, |_: &T| false).await
    }

    /// Like [`Get::all_from`], but stops after the first page holding an item for which
    /// `enough` is true (for lists newest first: no need to page past what was seen).
    pub async fn pages_until<T: DeserializeOwned + Send + 'static>(
        &self,
        client: &GitlabClient,
        first: u64,
        enough: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, api::ApiError<ClientError>> {
        let mut out = Vec::new();
        let mut page: u64 = first.max(1);
        loop {
            let rsp = self.page(client, 100, page).await?;
            let items: Vec<T> = serde_json::from_slice(rsp.body()).map_err(|source| {
                api::ApiError::client(ClientError::Decode {
                    path: self.path.clone(),
                    source,
                })
            })?;
            let full = items.len() >= 100;
            let done = items.iter().any(&enough);
            out.extend(items);
            if done {
                break;
            }
            let next = rsp
                .headers()
                .get("x-next-page")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .map(|v| v.parse::<u64>().ok());
            match next {
                Some(Some(n)) if n > page => page = n,
                Some(_) => break,
                // No pagination headers (some proxies strip them): stop at a short page.
                None if full => page += 1,
                None => break,
            }
        }
        Ok(out)
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

/// A form-encoded write to `/api/v4/<path>` (for the few writes the `gitlab` crate has no
/// typed endpoint for in the shape we need: group/project labels and hooks).
#[derive(Debug, Clone)]
pub struct Write {
    pub method: Method,
    pub path: String,
    pub params: Vec<(&'static str, String)>,
}

impl Endpoint for Write {
    fn method(&self) -> Method {
        self.method.clone()
    }

    fn endpoint(&self) -> Cow<'static, str> {
        self.path.clone().into()
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, api::BodyError> {
        let mut p = api::FormParams::default();
        for (k, v) in &self.params {
            p.push(*k, v.as_str());
        }
        p.into_body()
    }
}

pub use crate::domain::path_id;

/// The path prefixes of the watched scope, each followed by `issues` or `merge_requests`:
/// `groups/<g>/` and `projects/<p>/`, or `""` (the whole instance) when nothing is watched.
///
/// Only the outermost scopes ([`crate::policy::Watch::outermost`]): a project inside a
/// watched group is read through the group, so no item is listed twice.
pub fn scope_prefixes(watch: &crate::policy::Watch) -> Vec<String> {
    let watch = &watch.outermost();
    let mut prefixes = Vec::new();
    if watch.groups.is_empty() && watch.projects.is_empty() {
        prefixes.push(String::new());
    }
    prefixes.extend(
        watch
            .groups
            .iter()
            .map(|g| format!("groups/{}/", path_id(g))),
    );
    prefixes.extend(
        watch
            .projects
            .iter()
            .map(|p| format!("projects/{}/", path_id(p))),
    );
    prefixes
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
    /// Head commit.
    #[serde(default)]
    pub sha: Option<String>,
    #[serde(default)]
    pub web_url: String,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// A commit status.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiCommitStatus {
    pub name: String,
    pub status: String,
}

/// A note on an MR or issue.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiNote {
    pub id: u64,
    pub body: String,
    pub author: ApiUserRef,
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Internal note (only project members see it); `confidential` is its older name.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub confidential: Option<bool>,
}

impl ApiNote {
    /// Visible only to project members.
    pub fn is_internal(&self) -> bool {
        self.internal || self.confidential.unwrap_or(false)
    }
}

/// An issue, with the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiIssue {
    pub iid: u64,
    pub project_id: u64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub state: String,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub assignees: Vec<ApiUserRef>,
    #[serde(default)]
    pub web_url: String,
    #[serde(default)]
    pub confidential: bool,
    /// Who opened it (markers in the description count only when that is the bot).
    #[serde(default)]
    pub author: Option<ApiUserRef>,
    #[serde(default)]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /projects/:id/hooks` and `GET /groups/:id/hooks`: the fields we read (which hook is
/// ours, and whether GitLab has disabled it).
#[derive(Debug, Clone, Deserialize)]
pub struct ApiHook {
    pub id: u64,
    pub url: String,
    /// `executable`, `temporarily_disabled` or `disabled` (GitLab 15.7+).
    #[serde(default)]
    pub alert_status: Option<String>,
    #[serde(default)]
    pub disabled_until: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::scope_prefixes;
    use crate::policy::Watch;

    #[test]
    fn scope_prefixes_read_each_item_through_one_outermost_scope() {
        let watch = |groups: &[&str], projects: &[&str]| Watch {
            groups: groups.iter().map(|s| (*s).to_owned()).collect(),
            projects: projects.iter().map(|s| (*s).to_owned()).collect(),
        };
        for (w, want) in [
            (watch(&[], &[]), vec![""]),
            (
                watch(&["vendor", "vendor/sub"], &["vendor/product", "other/x"]),
                vec!["groups/vendor/", "projects/other%2Fx/"],
            ),
            (watch(&[], &["7", "7"]), vec!["projects/7/"]),
        ] {
            assert_eq!(scope_prefixes(&w), want, "{w:?}");
        }
    }
}
