//! `serve`: the webhook receiver and the worker, until a signal and the drain deadline.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;

use super::{GitlabArgs, SigningKeyArgs, WebhookSecretArgs};
use crate::app::{self, ConfigSource, GitlabSettings, ServeSettings};
use crate::server::{ConnLimits, ReceiverLimits, DEFAULT_BODY_BUDGET, DEFAULT_BODY_LIMIT};
use crate::webhook::SigningKey;
use crate::worker::WorkerConfig;

#[derive(Args, Debug)]
pub(super) struct ServeArgs {
    #[command(flatten)]
    gitlab: GitlabArgs,

    /// Address to listen on.
    #[arg(long, env = "COCREATE_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    #[command(flatten)]
    secret: WebhookSecretArgs,

    #[command(flatten)]
    signing: SigningKeyArgs,

    /// Accepted clock difference for webhook-timestamp, in seconds.
    #[arg(long, env = "COCREATE_SIGNATURE_WINDOW", default_value_t = 300)]
    signature_window_secs: u64,

    /// Directory of the durable queue (SQLite, created if missing).
    #[arg(long, env = "COCREATE_DATA", default_value = "./data")]
    data: PathBuf,

    #[command(flatten)]
    queue: crate::ops::QueueUrlArg,

    /// Largest accepted webhook body in bytes (GitLab's own limit is 25 MiB).
    #[arg(long, env = "COCREATE_BODY_LIMIT", default_value_t = DEFAULT_BODY_LIMIT)]
    body_limit: usize,

    /// Bytes of webhook bodies held in memory at once, over all requests (at least the body
    /// limit); past it a delivery gets 503 with Retry-After.
    #[arg(long, env = "COCREATE_BODY_BUDGET", default_value_t = DEFAULT_BODY_BUDGET)]
    body_budget: usize,

    /// Longest time to receive a request's headers, e.g. `10s` (also how long a kept-alive
    /// connection may wait for its next request before the headers start).
    #[arg(long, env = "COCREATE_HEADER_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    header_timeout: Duration,

    /// Longest time to receive a webhook body once its headers are in.
    #[arg(long, env = "COCREATE_BODY_TIMEOUT", value_parser = humantime::parse_duration, default_value = "60s")]
    body_timeout: Duration,

    /// A connection on which nothing moved for this long (and no request is being answered)
    /// is closed.
    #[arg(long, env = "COCREATE_IDLE_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    idle_timeout: Duration,

    /// Most client connections open at once; lowered at start to leave 64 descriptors of the
    /// open-file limit (ulimit -n) free.
    #[arg(long, env = "COCREATE_MAX_CONNECTIONS", default_value_t = 512)]
    max_connections: usize,

    /// Events processed at once.
    #[arg(long, env = "COCREATE_CONCURRENCY", default_value_t = 8)]
    concurrency: usize,

    /// Attempts before an event is parked in the dead-letter table.
    #[arg(long, env = "COCREATE_MAX_ATTEMPTS", default_value_t = 8)]
    max_attempts: u32,

    /// First retry delay of a failed event, in seconds (doubles each attempt, with jitter).
    #[arg(long, env = "COCREATE_RETRY_BASE", default_value_t = 2.0)]
    retry_base_secs: f64,

    /// Longest retry delay of a failed event, in seconds.
    #[arg(long, env = "COCREATE_RETRY_CAP", default_value_t = 600.0)]
    retry_cap_secs: f64,

    /// Seconds a claimed event stays leased to this worker; after a crash it is claimed again
    /// once its lease expires. Keep it above the longest time one event can take.
    #[arg(long, env = "COCREATE_LEASE_SECS", default_value_t = 300)]
    lease_secs: u64,

    /// Days processed events are kept (dedupe of redeliveries, inspection) before pruning.
    #[arg(long, env = "COCREATE_RETENTION_DAYS", default_value_t = 7)]
    retention_days: u64,

    /// /readyz answers 503 when there are more dead letters than this (unset: no limit).
    #[arg(long, env = "COCREATE_READY_MAX_DEAD")]
    ready_max_dead: Option<u64>,

    /// /readyz answers 503 when the oldest pending event is older than this, e.g. `30m`
    /// (unset: no limit).
    #[arg(long, env = "COCREATE_READY_MAX_PENDING_AGE", value_parser = humantime::parse_duration)]
    ready_max_pending_age: Option<Duration>,

    /// How often /metrics' `cocreate_reviews_overdue` (open Co-Create MRs labelled overdue by
    /// `nudge`) is read from GitLab: one list page per 100 such MRs and watched scope. `0s`
    /// turns it off; without a token it is never read.
    #[arg(long, env = "COCREATE_OVERDUE_REFRESH", value_parser = humantime::parse_duration, default_value = "5m")]
    overdue_refresh: Duration,

    /// How often policy and template directories are checked for changes (SIGHUP checks at once).
    #[arg(long, env = "COCREATE_POLICY_POLL", value_parser = humantime::parse_duration, default_value = "5s")]
    policy_poll: Duration,

    /// How often policies in a GitLab project are checked when no Push Hook arrived.
    #[arg(long, env = "COCREATE_POLICY_FALLBACK", value_parser = humantime::parse_duration, default_value = "10m")]
    policy_fallback: Duration,

    /// The URL `setup` registered (this serve's public /webhook): with it, serve checks its
    /// hooks' state in GitLab every --hook-check (metric `cocreate_webhook_disabled`, a warning
    /// in /readyz's body, a WARN log per change).
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: Option<String>,

    /// How often our webhooks' state is read from GitLab (one list page per watched owner);
    /// `0s` turns it off.
    #[arg(long, env = "COCREATE_HOOK_CHECK", value_parser = humantime::parse_duration, default_value = "5m")]
    hook_check: Duration,
}

pub(super) async fn run(
    args: ServeArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let signing_keys = args
        .signing
        .signing_key
        .iter()
        .filter(|k| !k.trim().is_empty())
        .map(|k| SigningKey::parse(k).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let secs = |s: f64, name: &str| {
        Duration::try_from_secs_f64(s)
            .with_context(|| format!("{name} must be a positive number of seconds"))
    };
    let settings = ServeSettings {
        listen: args.listen,
        gitlab: GitlabSettings {
            url: args.gitlab.checked_url()?,
            token: args.gitlab.gitlab_token.filter(|t| !t.trim().is_empty()),
            retry: Default::default(),
        },
        webhook_secrets: args.secret.webhook_secret,
        signing_keys,
        signature_window: Duration::from_secs(args.signature_window_secs),
        policies,
        templates,
        data_dir: args.data,
        queue_url: args.queue.url,
        body_limit: args.body_limit,
        limits: ReceiverLimits {
            conn: ConnLimits {
                header_timeout: positive(args.header_timeout, "--header-timeout")?,
                idle_timeout: positive(args.idle_timeout, "--idle-timeout")?,
                max_connections: args.max_connections.max(1),
                ..ConnLimits::default()
            },
            body_budget: args.body_budget,
            body_timeout: positive(args.body_timeout, "--body-timeout")?,
        },
        worker: WorkerConfig {
            concurrency: args.concurrency.max(1),
            max_attempts: args.max_attempts.max(1),
            backoff_base: secs(args.retry_base_secs, "--retry-base-secs")?,
            backoff_cap: secs(args.retry_cap_secs, "--retry-cap-secs")?,
            retention: Duration::from_secs(args.retention_days * 24 * 3600),
            lease: Duration::from_secs(args.lease_secs.max(1)),
            ready: crate::queue::ReadyLimits {
                max_dead: args.ready_max_dead,
                max_pending_age: args.ready_max_pending_age,
            },
            ..WorkerConfig::default()
        },
        overdue_refresh: Some(args.overdue_refresh),
        clock: crate::clock::Clock::system(),
        policy_poll: args.policy_poll.max(Duration::from_millis(100)),
        policy_fallback: args.policy_fallback.max(Duration::from_secs(1)),
        token_recheck: ServeSettings::DEFAULT_TOKEN_RECHECK,
        hook_check: args
            .webhook_url
            .filter(|u| !u.trim().is_empty())
            .map(|webhook_url| crate::server::hook_health::HookCheck {
                webhook_url,
                every: args.hook_check,
                policy_project: None, // set by app::start from --policies
            }),
    };
    let running = app::start(settings).await?;
    let stop = running.shutdown_handle();
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: no new deliveries, finishing in-flight events");
        let _ = stop.send(true);
        let _ = signalled_tx.send(());
    });
    exit_by_deadline(running.wait(), signalled).await
}

/// Longest time from SIGTERM to exit (systemd's default stop timeout is 30 s, Docker's 10 s
/// unless `--stop-timeout`/`stop_grace_period` is set: see the README).
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(25);

/// Waits for `stopped`; once `signalled`, for at most [`SHUTDOWN_DEADLINE`]. The receiver and
/// the worker each stop within their own grace periods, well inside it; this is the backstop
/// should anything hang (a stalled disk during the release of leases). Events not released
/// then are claimed again when their lease expires.
async fn exit_by_deadline(
    stopped: impl std::future::Future<Output = ()>,
    signalled: tokio::sync::oneshot::Receiver<()>,
) -> anyhow::Result<ExitCode> {
    tokio::pin!(stopped);
    tokio::select! {
        () = &mut stopped => return Ok(ExitCode::SUCCESS),
        Ok(()) = signalled => {}
    }
    match tokio::time::timeout(SHUTDOWN_DEADLINE, stopped).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(_) => {
            tracing::error!(
                deadline_secs = SHUTDOWN_DEADLINE.as_secs(),
                "shutdown did not finish in time; exiting anyway (unfinished events are claimed again after their lease)"
            );
            // Not a return: dropping the queue would wait for its writer thread, which is
            // what may hang.
            std::process::exit(1)
        }
    }
}

fn positive(d: Duration, name: &str) -> anyhow::Result<Duration> {
    if d.is_zero() {
        bail!("{name} must be more than 0s");
    }
    Ok(d)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
