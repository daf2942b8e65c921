//! Wiring: from settings to a running receiver and worker. Used by `cocreate serve` and by the
//! end-to-end tests, so both run exactly the same code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::gitlab::{ConnectError, FactSource, Get, GitlabClient, RetryPolicy};
use crate::handlers::{Context, KeyedLocks, Live, Mode};
use crate::messages::{Messages, TemplateError};
use crate::policy::{Policies, PolicyErrors};
use crate::queue::{PostgresQueue, Queue, QueueError, SqliteQueue};
use crate::reload::{LiveConfig, ReloadError};
use crate::server::{self, AppState};
use crate::webhook::{SigningKey, Verifier};
use crate::worker::{self, WorkerConfig};

pub use crate::reload::{ConfigSource, RepoSource};

/// A GitLab connection's settings; no token means dry run.
#[derive(Clone, Default)]
pub struct GitlabSettings {
    pub url: String,
    pub token: Option<String>,
    pub retry: RetryPolicy,
}

impl std::fmt::Debug for GitlabSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitlabSettings")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub gitlab: GitlabSettings,
    pub webhook_secrets: Vec<String>,
    pub signing_keys: Vec<SigningKey>,
    pub signature_window: Duration,
    pub policies: ConfigSource,
    pub templates: ConfigSource,
    pub data_dir: PathBuf,
    /// A `postgres://…` URL: the queue lives in that PostgreSQL database, shared by every
    /// replica given the same URL, instead of the SQLite file in `data_dir`.
    pub queue_url: Option<String>,
    pub body_limit: usize,
    /// Timeouts, connection cap and body memory budget of the receiver.
    pub limits: server::ReceiverLimits,
    pub worker: WorkerConfig,
    /// How often the `cocreate_reviews_overdue` gauge is read from GitLab (`None`: never).
    pub overdue_refresh: Option<Duration>,
    /// Real time unless a test (or `--now`) sets it.
    pub clock: crate::clock::Clock,
    /// How often directory policies and templates are checked for changes.
    pub policy_poll: Duration,
    /// How often GitLab-hosted policies are checked when no Push Hook came.
    pub policy_fallback: Duration,
    /// While GitLab refuses the token, how often it is checked again.
    pub token_recheck: Duration,
    /// The periodic check of our webhooks' state in GitLab (`None`: off).
    pub hook_check: Option<server::hook_health::HookCheck>,
}

impl ServeSettings {
    pub const DEFAULT_POLICY_POLL: Duration = Duration::from_secs(5);
    pub const DEFAULT_POLICY_FALLBACK: Duration = Duration::from_secs(600);
    pub const DEFAULT_TOKEN_RECHECK: Duration = Duration::from_secs(30);
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("policies are invalid:\n{0}")]
    Policies(#[from] PolicyErrors),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error("cannot open the queue: {0}")]
    Queue(#[from] QueueError),
    #[error("cannot connect to GitLab at {url}: {source}")]
    Gitlab { url: String, source: ConnectError },
    #[error("cannot read the bot's identity (GET /user): {0}")]
    BotIdentity(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("refusing to start: {0}")]
    Secret(#[from] crate::webhook::SecretError),
    #[error("refusing to start: the body memory budget ({budget} bytes) is smaller than the body limit ({limit} bytes)")]
    BodyBudget { budget: usize, limit: usize },
    #[error("refusing to start: the open-file limit ({0}) leaves no room for connections; raise it (systemd LimitNOFILE=, docker --ulimit nofile=)")]
    OpenFiles(u64),
    #[error("refusing to start: a GitLab token is set but no webhook secret (COCREATE_WEBHOOK_SECRET) or signing key (COCREATE_SIGNING_KEY); anyone could send events")]
    NoSecret,
}

/// Why a `GITLAB_URL` is refused at start. The URL itself is never part of the message (it
/// may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitlabUrlError {
    #[error("GITLAB_URL is not a URL ({0})")]
    Invalid(String),
    #[error("GITLAB_URL contains credentials (`user:password@`); remove them, the bot authenticates with GITLAB_TOKEN")]
    Credentials,
    #[error("GITLAB_URL uses plain http:// to {host}, which would send the token unencrypted; use https://, or pass --allow-insecure-http (COCREATE_ALLOW_INSECURE_HTTP=true) if this is deliberate")]
    InsecureHttp { host: String },
    #[error("GITLAB_URL must be http:// or https://, not {0}://")]
    Scheme(String),
}

/// Checks `GITLAB_URL` before anything connects: no credentials in it, and `https://` unless
/// the host is loopback or `allow_insecure_http` is set.
pub fn check_gitlab_url(raw: &str, allow_insecure_http: bool) -> Result<(), GitlabUrlError> {
    let url = url::Url::parse(raw.trim()).map_err(|e| GitlabUrlError::Invalid(e.to_string()))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GitlabUrlError::Credentials);
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if loopback || allow_insecure_http {
                Ok(())
            } else {
                Err(GitlabUrlError::InsecureHttp {
                    host: url.host_str().unwrap_or("").to_owned(),
                })
            }
        }
        other => Err(GitlabUrlError::Scheme(other.to_owned())),
    }
}

/// Loads policies from a directory or the embedded examples, for the commands that work without
/// GitLab (`policies check`, `plan`); the others read a `gitlab:` source through
/// [`crate::reload::LiveConfig`].
pub fn load_policies(src: &ConfigSource) -> Result<Policies, PolicyErrors> {
    match src {
        ConfigSource::Dir(d) => Policies::load(d),
        ConfigSource::Embedded => Policies::embedded(),
        ConfigSource::Gitlab(r) => Err(PolicyErrors(vec![crate::policy::PolicyError {
            file: PathBuf::from(r.to_string()),
            line: None,
            column: None,
            message: "`policies check` and `plan` read a directory: pass --policies DIR (a checkout of the policy project)".into(),
        }])),
    }
}

/// `policies check`: the policies' warnings and a summary, or their errors with positions.
/// `Err` carries the text too: the policies are invalid.
pub fn check_policies(src: &ConfigSource) -> Result<String, String> {
    match load_policies(src) {
        Ok(p) => {
            let mut out: String = p
                .routing
                .watch
                .warnings()
                .iter()
                .map(|w| format!("warning: {w}\n"))
                .collect();
            out.push_str(&format!(
                "ok: {} organizations, {} Contributor Success reviewers ({})\n",
                p.organizations.all().len(),
                p.routing.roster.reviewers.len(),
                p.source
            ));
            Ok(out)
        }
        Err(errors) => {
            let mut out: String = errors.0.iter().map(|e| format!("{e}\n")).collect();
            out.push_str(&format!("{} error(s)\n", errors.0.len()));
            Err(out)
        }
    }
}

pub fn load_messages(src: &ConfigSource) -> Result<Messages, TemplateError> {
    match src {
        ConfigSource::Dir(d) => Messages::load(d),
        ConfigSource::Embedded | ConfigSource::Gitlab(_) => Messages::embedded(),
    }
}

/// Connects to GitLab when a token is given; `None` is a dry run.
pub async fn connect(gitlab: &GitlabSettings) -> Result<Option<GitlabClient>, StartError> {
    let Some(token) = &gitlab.token else {
        return Ok(None);
    };
    GitlabClient::connect(&gitlab.url, token, gitlab.retry.clone())
        .await
        .map(Some)
        .map_err(|source| StartError::Gitlab {
            url: gitlab.url.clone(),
            source,
        })
}

/// Builds the handler context: connects to GitLab when a token is given, else a dry run.
pub async fn build_context(
    gitlab: &GitlabSettings,
    policies: Policies,
    messages: Messages,
    clock: crate::clock::Clock,
) -> Result<Context, StartError> {
    let client = connect(gitlab).await?;
    context_with(client, Arc::new(policies), Arc::new(messages), clock).await
}

/// The handler context around an already connected client (`None`: offline, payload facts only).
pub async fn context_with(
    client: Option<GitlabClient>,
    policies: Arc<Policies>,
    messages: Arc<Messages>,
    clock: crate::clock::Clock,
) -> Result<Context, StartError> {
    let configured_bot = policies.routing.bot_username.clone();
    let (mode, bot_username) = match client {
        Some(client) => {
            let bot = match configured_bot {
                Some(b) => b,
                None => {
                    #[derive(serde::Deserialize)]
                    struct Me {
                        username: String,
                    }
                    let me: Me = Get::new("user")
                        .one(&client)
                        .await
                        .map_err(|e| StartError::BotIdentity(e.to_string()))?;
                    me.username.to_ascii_lowercase()
                }
            };
            let facts = Arc::new(FactSource::new(bot.clone()));
            (Mode::Live(Live { client, facts }), bot)
        }
        None => (
            Mode::Offline,
            configured_bot.unwrap_or_else(|| "cocreate-bot".into()),
        ),
    };
    Ok(Context {
        policies,
        messages,
        mode,
        bot_username,
        locks: KeyedLocks::default(),
        clock,
        live: None,
        token: Default::default(),
    })
}

/// A running receiver + worker.
pub struct Running {
    pub addr: SocketAddr,
    pub queue: Arc<dyn Queue>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
    gauges: Option<tokio::task::JoinHandle<()>>,
    hook_check: Option<tokio::task::JoinHandle<()>>,
    reloader: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Graceful stop: no new connections, in-flight work finished or released.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        let _ = self.worker.await;
        if let Some(gauges) = self.gauges {
            let _ = gauges.await;
        }
        if let Some(h) = self.hook_check {
            let _ = h.await;
        }
        let _ = self.reloader.await;
    }

    /// Resolves when the server stops on its own (e.g. after a signal).
    pub async fn wait(self) {
        let Running {
            shutdown,
            server,
            worker,
            gauges,
            hook_check,
            reloader,
            ..
        } = self;
        let _ = server.await;
        let _ = shutdown.send(true);
        let _ = worker.await;
        if let Some(gauges) = gauges {
            let _ = gauges.await;
        }
        if let Some(h) = hook_check {
            let _ = h.await;
        }
        let _ = reloader.await;
    }

    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Starts `serve`: loads and checks everything first, then binds and spawns.
pub async fn start(s: ServeSettings) -> Result<Running, StartError> {
    // Install the metrics recorder before anything is counted.
    let _ = crate::metrics::handle();
    // An empty setting (`COCREATE_WEBHOOK_SECRET=`) is no secret; anything else must be a
    // list of strong, unambiguous secrets.
    let secrets: Vec<String> = match s.webhook_secrets.as_slice() {
        [only] if only.is_empty() => Vec::new(),
        all => all.to_vec(),
    };
    crate::webhook::check_secrets("COCREATE_WEBHOOK_SECRET", &secrets)?;
    let verifier = Verifier::new(secrets, s.signing_keys.clone(), s.signature_window);
    if verifier.is_open() {
        if s.gitlab.token.is_some() {
            return Err(StartError::NoSecret);
        }
        tracing::warn!("no webhook secret configured: accepting unauthenticated webhooks (allowed only in a dry run)");
    }
    let client = connect(&s.gitlab).await?;
    let live = LiveConfig::start(s.policies.clone(), s.templates.clone(), client.clone()).await?;
    let first = live.current();
    let source = first.policies.source.clone();
    let mut ctx = context_with(
        client,
        first.policies.clone(),
        first.messages.clone(),
        s.clock,
    )
    .await?;
    ctx.live = Some(live.clone());
    if ctx.gitlab().is_none() {
        tracing::warn!("DRY RUN: no GITLAB_TOKEN set; planned actions are logged, nothing is written to GitLab");
    }
    // Stored error texts never hold the token or a webhook secret (a GitLab error body may
    // echo what it was sent).
    let scrub = crate::redact::Redactor::with_known(
        s.gitlab
            .token
            .iter()
            .cloned()
            .chain(s.webhook_secrets.iter().cloned()),
    );
    let wake = Arc::new(Notify::new());
    let queue: Arc<dyn Queue> = match &s.queue_url {
        Some(url) => {
            let queue = PostgresQueue::connect(url).await?.redacting(scrub);
            // A hint only: the worker polls anyway.
            queue.wake_on_notify(wake.clone());
            // Each organization's work is serialized across the replicas too.
            ctx.locks = KeyedLocks::shared(Arc::new(queue.key_locks()));
            Arc::new(queue)
        }
        None => Arc::new(SqliteQueue::open(&s.data_dir)?.redacting(scrub)),
    };
    let (tx, rx) = watch::channel(false);
    if s.limits.body_budget < s.body_limit {
        return Err(StartError::BodyBudget {
            budget: s.limits.body_budget,
            limit: s.body_limit,
        });
    }
    let mut conn_limits = s.limits.conn;
    let nofile = server::open_file_limit();
    conn_limits.max_connections = server::connection_cap(conn_limits.max_connections, nofile)
        .map_err(StartError::OpenFiles)?;
    if conn_limits.max_connections < s.limits.conn.max_connections {
        tracing::warn!(
            wanted = s.limits.conn.max_connections,
            allowed = conn_limits.max_connections,
            open_file_limit = nofile,
            "fewer connections than configured: the open-file limit must keep {} descriptors free",
            server::RESERVED_FDS
        );
    }
    let mut state = AppState::new(
        queue.clone(),
        verifier,
        wake.clone(),
        Some(source.clone()),
        s.worker.ready,
        server::BodyLimits {
            limit: s.body_limit,
            budget: s.limits.body_budget,
            timeout: s.limits.body_timeout,
        },
    );
    state.live = Some(live.clone());
    state.token = ctx.token.clone();
    let listener = tokio::net::TcpListener::bind(s.listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: s.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Listen {
        addr: s.listen,
        source,
    })?;
    let hook_check = match (ctx.gitlab(), &s.hook_check) {
        (Some(gitlab), Some(check)) if !check.every.is_zero() => {
            let live = live.clone();
            let mut check = check.clone();
            if let crate::reload::ConfigSource::Gitlab(repo) = &s.policies {
                check.policy_project = Some(repo.project.clone());
            }
            Some(tokio::spawn(server::hook_health::run(
                gitlab.client.clone(),
                move || live.current().policies.clone(),
                check,
                state.hooks.clone(),
                rx.clone(),
            )))
        }
        _ => None,
    };
    let server = tokio::spawn(server::run(listener, state, conn_limits, rx.clone()));
    let gauges =
        match (ctx.gitlab(), s.overdue_refresh) {
            (Some(live), Some(every)) if !every.is_zero() => Some(tokio::spawn(
                refresh_overdue_gauge(live.clone(), ctx.policies.clone(), every, rx.clone()),
            )),
            _ => None,
        };
    let reloader = tokio::spawn(
        live.clone()
            .run(s.policy_poll, s.policy_fallback, rx.clone()),
    );
    let mut worker_cfg = s.worker.clone();
    worker_cfg.token_recheck = s.token_recheck;
    let worker = tokio::spawn(worker::run(ctx, queue.clone(), worker_cfg, wake, rx));
    let queue_at = match &s.queue_url {
        Some(url) => crate::queue::describe_postgres_url(url),
        None => s.data_dir.display().to_string(),
    };
    tracing::info!(%addr, policies = %source, queue = %queue_at, "cocreate serve is listening");
    Ok(Running {
        addr,
        queue,
        shutdown: tx,
        server,
        worker,
        gauges,
        hook_check,
        reloader,
    })
}

/// Keeps the `cocreate_reviews_overdue` gauge current: reads the count from GitLab now and then
/// every `every` until shutdown. A failed read keeps the last value (and logs why).
async fn refresh_overdue_gauge(
    live: crate::handlers::Live,
    policies: Arc<crate::policy::Policies>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match crate::jobs::nudge::count_overdue(&live, &policies).await {
            Ok(n) => metrics::gauge!("cocreate_reviews_overdue").set(n as f64),
            Err(error) => {
                tracing::warn!(%error, "could not refresh cocreate_reviews_overdue; it keeps its last value")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_url_without_credentials_and_https_unless_loopback_or_allowed() {
        assert_eq!(
            check_gitlab_url("https://gitlab.example.com", false),
            Ok(())
        );
        assert_eq!(check_gitlab_url("http://127.0.0.1:8929", false), Ok(()));
        assert_eq!(check_gitlab_url("http://localhost", false), Ok(()));
        assert_eq!(check_gitlab_url("http://[::1]:80", false), Ok(()));
        let e = check_gitlab_url("https://bot:hunter2-password@gitlab.example.com", false);
        assert_eq!(e, Err(GitlabUrlError::Credentials));
        assert!(!e.unwrap_err().to_string().contains("hunter2"));
        assert_eq!(
            check_gitlab_url("https://glpat-abc@gitlab.example.com", false),
            Err(GitlabUrlError::Credentials)
        );
        assert_eq!(
            check_gitlab_url("http://gitlab.example.com", false),
            Err(GitlabUrlError::InsecureHttp {
                host: "gitlab.example.com".into()
            })
        );
        assert_eq!(check_gitlab_url("http://gitlab.example.com", true), Ok(()));
        assert!(matches!(
            check_gitlab_url("ftp://gitlab.example.com", true),
            Err(GitlabUrlError::Scheme(_))
        ));
    }
}
