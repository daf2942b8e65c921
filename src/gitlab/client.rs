//! The GitLab REST client: the `gitlab` crate's async client, wrapped so that every request
//! carries the `X-Gitlab-Event-UUID` of the event it serves, is retried with capped exponential
//! backoff and jitter on 429 (honouring `Retry-After`), 5xx and timeouts, and is counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use gitlab::api::{self, ApiError};
use http::{Method, Response, StatusCode};
use url::Url;

/// How requests are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// A `Retry-After` longer than this is cut to it (the event-level retry takes over).
    pub max_retry_after: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Transport-level failures of the wrapped client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("GitLab request failed: {0}")]
    Rest(#[source] gitlab::RestError),
    #[error("GitLab request could not be built: {0}")]
    Build(#[from] http::Error),
    #[error("GitLab did not answer within {0:?}")]
    Timeout(Duration),
    #[error("GitLab answered {status}: {body}")]
    Status { status: StatusCode, body: String },
    #[error("unexpected answer from GitLab for `{path}`: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}")]
    Url(String),
    #[error("cannot reach GitLab or the token was refused: {0}")]
    Gitlab(#[from] gitlab::GitlabError),
}

/// Counts of API calls, for `/metrics`, benchmarks and cost tests.
#[derive(Debug, Default)]
pub struct CallCounter {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
}

impl CallCounter {
    pub fn snapshot(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.writes.load(Ordering::Relaxed),
        )
    }
}

/// A cheap-to-clone client; [`GitlabClient::for_event`] gives a copy that tags its requests.
#[derive(Clone)]
pub struct GitlabClient {
    inner: gitlab::AsyncGitlab,
    policy: Arc<RetryPolicy>,
    event_uuid: Option<Arc<str>>,
    counter: Arc<CallCounter>,
}

impl std::fmt::Debug for GitlabClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never prints the token.
        f.debug_struct("GitlabClient")
            .field("event_uuid", &self.event_uuid)
            .finish_non_exhaustive()
    }
}

/// Splits `http://host:port` into what `GitlabBuilder` wants: `host:port` and whether it is plain HTTP.
pub fn host_of(url: &str) -> Result<(String, bool), String> {
    let parsed = Url::parse(url).map_err(|e| format!("GITLAB_URL `{url}` is not a URL: {e}"))?;
    let insecure = match parsed.scheme() {
        "https" => false,
        "http" => true,
        other => return Err(format!("GITLAB_URL must start with https:// (or http:// for a local test instance), not `{other}://`")),
    };
    let host = parsed
        .host_str()
        .ok_or_else(|| format!("GITLAB_URL `{url}` has no host"))?;
    let mut hostport = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    };
    let path = parsed.path().trim_end_matches('/');
    if !path.is_empty() {
        // GitLab under a relative URL root, e.g. https://example.com/gitlab
        hostport.push_str(path);
    }
    Ok((hostport, insecure))
}

impl GitlabClient {
    /// Connects (the `gitlab` crate checks the token with `GET /user`).
    pub async fn connect(
        url: &str,
        token: &str,
        policy: RetryPolicy,
    ) -> Result<Self, ConnectError> {
        let (host, insecure) = host_of(url).map_err(ConnectError::Url)?;
        let mut builder = gitlab::GitlabBuilder::new(host, token);
        if insecure {
            builder.insecure();
        }
        builder.user_agent(concat!("cocreate/", env!("CARGO_PKG_VERSION")));
        // The builder checks the token with a `GET /user` of its own, outside our retries:
        // retry it here when GitLab is briefly unavailable (not when the token is refused).
        let mut attempt = 1;
        let inner = loop {
            match builder.build_async().await {
                Ok(inner) => break inner,
                Err(e) if attempt < policy.max_attempts && transient(&e) => {
                    let wait = crate::backoff::backoff_delay(attempt, policy.base, policy.cap);
                    tracing::warn!(error = %e, attempt, ?wait, "GitLab did not answer the start-up check; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Self {
            inner,
            policy: Arc::new(policy),
            event_uuid: None,
            counter: Arc::new(CallCounter::default()),
        })
    }

    /// A copy whose requests carry `X-Gitlab-Event-UUID: uuid`.
    pub fn for_event(&self, uuid: Option<&str>) -> Self {
        let mut c = self.clone();
        c.event_uuid = uuid.map(Arc::from);
        c
    }

    pub fn counter(&self) -> Arc<CallCounter> {
        self.counter.clone()
    }
}

/// A failure worth retrying: no answer, a 5xx or a 429 (a refused token is not).
fn transient(e: &gitlab::GitlabError) -> bool {
    use gitlab::api::ApiError;
    let retry =
        |s: http::StatusCode| s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS;
    match e {
        gitlab::GitlabError::Communication { .. } | gitlab::GitlabError::NoResponse {} => true,
        gitlab::GitlabError::Http { status } => retry(*status),
        gitlab::GitlabError::Api { source } => match source {
            ApiError::Client { .. } | ApiError::GitlabService { .. } => true,
            ApiError::GitlabWithStatus { status, .. }
            | ApiError::GitlabObjectWithStatus { status, .. }
            | ApiError::GitlabUnrecognizedWithStatus { status, .. } => retry(*status),
            _ => false,
        },
        _ => false,
    }
}

fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
    )
}

fn retry_after(rsp: &Response<Bytes>) -> Option<Duration> {
    rsp.headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

impl api::RestClient for GitlabClient {
    type Error = ClientError;

    fn rest_endpoint(&self, endpoint: &str) -> Result<Url, ApiError<Self::Error>> {
        self.inner
            .rest_endpoint(endpoint)
            .map_err(|e| e.map_client(ClientError::Rest))
    }

    fn instance_endpoint(&self, endpoint: &str) -> Result<Url, ApiError<Self::Error>> {
        self.inner
            .instance_endpoint(endpoint)
            .map_err(|e| e.map_client(ClientError::Rest))
    }
}

#[async_trait]
impl api::AsyncClient for GitlabClient {
    async fn rest_async(
        &self,
        request: http::request::Builder,
        body: Vec<u8>,
    ) -> Result<Response<Bytes>, ApiError<Self::Error>> {
        let template = request
            .body(())
            .map_err(|e| ApiError::client(ClientError::Build(e)))?;
        let (parts, ()) = template.into_parts();
        let method = parts.method.clone();
        let write = method != Method::GET && method != Method::HEAD;
        let p = &*self.policy;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let mut builder = http::Request::builder()
                .method(parts.method.clone())
                .uri(parts.uri.clone())
                .version(parts.version);
            for (name, value) in &parts.headers {
                builder = builder.header(name, value);
            }
            if let Some(uuid) = &self.event_uuid {
                builder = builder.header("X-Gitlab-Event-UUID", uuid.as_ref());
            }
            let counter = if write {
                &self.counter.writes
            } else {
                &self.counter.reads
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let result =
                tokio::time::timeout(p.timeout, self.inner.rest_async(builder, body.clone())).await;
            let last = attempt >= p.max_attempts;
            let backoff = crate::backoff::backoff_delay(attempt, p.base, p.cap);
            match result {
                Ok(Ok(rsp)) => {
                    let status = rsp.status();
                    metrics::counter!("cocreate_gitlab_api_calls_total",
                        "method" => method.to_string(), "status" => status.as_u16().to_string())
                    .increment(1);
                    let wait = if status == StatusCode::TOO_MANY_REQUESTS {
                        // Nothing was done: always safe to send again.
                        Some(
                            retry_after(&rsp)
                                .map_or(backoff, |d| d.min(p.max_retry_after))
                                .max(p.base / 4),
                        )
                    } else if status.is_server_error() && is_idempotent(&method) {
                        Some(backoff)
                    } else {
                        None
                    };
                    match wait {
                        Some(d) if !last => {
                            tracing::warn!(%status, %method, path = parts.uri.path(), attempt, delay_ms = d.as_millis() as u64, "GitLab answered with an error; retrying");
                            tokio::time::sleep(d).await;
                        }
                        _ => return Ok(rsp),
                    }
                }
                Ok(Err(e)) => {
                    metrics::counter!("cocreate_gitlab_api_calls_total",
                        "method" => method.to_string(), "status" => "error")
                    .increment(1);
                    // A failed connection sent nothing; a broken one may have: only idempotent
                    // requests are repeated here, the rest go back to the event-level retry,
                    // which re-reads GitLab before writing again.
                    if last || !is_idempotent(&method) {
                        return Err(e.map_client(ClientError::Rest));
                    }
                    tracing::warn!(error = %e, %method, path = parts.uri.path(), attempt, "GitLab request failed; retrying");
                    tokio::time::sleep(backoff).await;
                }
                Err(_) => {
                    metrics::counter!("cocreate_gitlab_api_calls_total",
                        "method" => method.to_string(), "status" => "timeout")
                    .increment(1);
                    if last || !is_idempotent(&method) {
                        return Err(ApiError::client(ClientError::Timeout(p.timeout)));
                    }
                    tracing::warn!(%method, path = parts.uri.path(), attempt, "GitLab request timed out; retrying");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_splits_scheme() {
        assert_eq!(
            host_of("https://gitlab.example.com"),
            Ok(("gitlab.example.com".into(), false))
        );
        assert_eq!(
            host_of("http://127.0.0.1:8929/"),
            Ok(("127.0.0.1:8929".into(), true))
        );
        assert_eq!(
            host_of("https://example.com/gitlab/"),
            Ok(("example.com/gitlab".into(), false))
        );
        assert!(host_of("gitlab.example.com").is_err());
        assert!(host_of("ftp://x").is_err());
    }
}
