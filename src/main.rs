//! The `cocreate` command line. Parses settings, then calls one command; all logic is in the library.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use cocreate::app::{self, ConfigSource, GitlabSettings, ServeSettings};
use cocreate::decide::decide_merge_request;
use cocreate::events::{self, Event, EventKind};
use cocreate::handlers::merge_request;
use cocreate::server::{ConnLimits, ReceiverLimits, DEFAULT_BODY_BUDGET, DEFAULT_BODY_LIMIT};
use cocreate::webhook::SigningKey;
use cocreate::worker::WorkerConfig;

/// Runs the Co-Create program inside GitLab: routes Co-Create merge requests (labels, a
/// Contributor Success reviewer, one welcome note) from GitLab webhooks, driven by policies/*.yml.
///
/// Without GITLAB_TOKEN every command is a dry run: it logs what it would write and writes nothing.
#[derive(Parser, Debug)]
#[command(name = "cocreate", version, propagate_version = true)]
struct Cli {
    /// Log format: human-readable lines or one JSON object per line.
    #[arg(long, global = true, env = "COCREATE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Directory with organizations.yml and routing.yml, or (for `serve`) a GitLab project
    /// holding them in `policies/` (and templates in `templates/`): `gitlab:<group>/<project>[@<branch>]`.
    /// `serve` follows either live: a directory is re-read within seconds of a change and on
    /// SIGHUP; a GitLab project on every push to the branch and every 10 minutes. When unset and
    /// ./policies does not exist, the example policies built into the binary are used.
    #[arg(long, global = true, env = "COCREATE_POLICIES")]
    policies: Option<String>,

    /// Directory with note templates (welcome.md, …); missing files fall back to the built-in ones.
    #[arg(long, global = true, env = "COCREATE_TEMPLATES")]
    templates: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Receive GitLab webhooks, store them durably, and route Co-Create merge requests.
    Serve(ServeArgs),
    /// Print what cocreate would do for one webhook payload, touching nothing (payload facts only).
    Plan(PlanArgs),
    /// Scheduled job: check that every open Co-Create MR's organization has a valid Corporate
    /// Contributor Agreement; swap `CCA::…` labels, set the `cocreate/cca` commit status, and
    /// post one note when the state changes. Writes JUnit, Markdown and JSON reports.
    CcaCheck(CcaCheckArgs),
    /// Scheduled sweep: re-route every open MR updated within --since, recovering webhooks
    /// GitLab dropped (it never retries them). A second run right after writes nothing.
    Reconcile(ReconcileArgs),
    /// Scheduled job: store every webhook delivery GitLab failed to make (its webhook events
    /// API, 7 days) into serve's queue through the receiver's dedupe, oldest first; report
    /// hooks GitLab disabled (exit 1). Falls back to the MR sweep where the API is missing.
    Recover(RecoverArgs),
    /// Scheduled job: ping the reviewer of a Co-Create MR waiting past the review-response SLO
    /// (business days, policies/routing.yml `review_slo`), hand it on after a second period,
    /// remind the author kindly when it has long been their turn. Each once per period.
    Nudge(NudgeArgs),
    /// Create the tool's labels (with colors and descriptions) in the watched groups/projects and
    /// register its webhook there (merge request, issue, confidential issue and note events,
    /// with the webhook secret). Idempotent: a second run changes nothing.
    Setup(SetupArgs),
    /// Rank and tier customers from an account export (CSV) by the action plan's segmentation
    /// criteria (weights in policies/segmentation.yml), with their issue/MR counts from GitLab.
    Score(ScoreArgs),
    /// The program's success metrics for a fiscal quarter against the targets, from the
    /// tracking issues' label history: Markdown with Mermaid charts, or JSON.
    Report(ReportArgs),
    /// The program's static pages for GitLab Pages: the public curated issue list and, with
    /// --internal, the program dashboard and a page per organization.
    Site(SiteArgs),
    /// Inspect and repair the durable queue, also while `serve` runs: status, list, show,
    /// replay, purge.
    Queue(cocreate::ops::QueueArgs),
    /// Work with the policies directory.
    Policies {
        #[command(subcommand)]
        command: PoliciesCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PoliciesCommand {
    /// Validate the policies; errors name file, line and column. Exit code 1 when invalid.
    Check,
}

#[derive(Args, Debug)]
struct GitlabArgs {
    /// GitLab base URL.
    #[arg(long, env = "GITLAB_URL", default_value = "https://gitlab.com")]
    gitlab_url: String,

    /// API token of the bot account (scope `api`). Without it, a dry run.
    #[arg(long, env = "GITLAB_TOKEN", hide_env_values = true)]
    gitlab_token: Option<String>,

    /// Accept a plain http:// GITLAB_URL to a host other than loopback (the token then
    /// travels unencrypted).
    #[arg(long, env = "COCREATE_ALLOW_INSECURE_HTTP")]
    allow_insecure_http: bool,
}

impl GitlabArgs {
    /// The checked GITLAB_URL (see [`app::check_gitlab_url`]); the error never quotes it.
    fn checked_url(&self) -> anyhow::Result<String> {
        app::check_gitlab_url(&self.gitlab_url, self.allow_insecure_http)?;
        Ok(self.gitlab_url.clone())
    }
}

#[derive(Args, Debug)]
struct ServeArgs {
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
}

#[derive(Args, Debug)]
struct JobArgs {
    #[command(flatten)]
    gitlab: GitlabArgs,

    /// Read GitLab but write nothing; print what would be written.
    #[arg(long)]
    dry_run: bool,

    /// Pretend it is this time (RFC 3339, e.g. 2026-11-23T12:00:00Z) instead of the clock: the
    /// day agreements expire against, the end of --since, the business days of the review SLO,
    /// the default quarter and "as of" of report. For drills, tests and re-running a past day.
    #[arg(long, env = "COCREATE_NOW", value_name = "RFC3339")]
    now: Option<String>,
}

#[derive(Args, Debug)]
struct CcaCheckArgs {
    #[command(flatten)]
    job: JobArgs,

    /// Write a JUnit XML report (one test case per MR) for `artifacts:reports:junit`.
    #[arg(long)]
    junit: Option<PathBuf>,

    /// Write a Markdown summary.
    #[arg(long)]
    summary: Option<PathBuf>,

    /// Print the report as JSON on stdout (default: the Markdown summary).
    #[arg(long)]
    json: bool,

    /// Exit with code 1 when any MR's organization has no valid CCA.
    #[arg(long)]
    fail_on_missing: bool,
}

#[derive(Args, Debug)]
struct ReconcileArgs {
    #[command(flatten)]
    job: JobArgs,

    /// How far back to look, e.g. `2h`, `1d`, `90m`.
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    since: Duration,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RecoverArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The URL `setup` registered (serve's public /webhook): it identifies our hooks.
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: String,

    /// serve's data directory (its queue, and the job's cursor).
    #[arg(long, env = "COCREATE_DATA", default_value = "./data")]
    data: PathBuf,

    /// Look this far back (e.g. `2h`, `1d`) instead of from the last run's cursor.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,

    /// Handle the recovered events here and now (no serve running on this data directory).
    #[arg(long)]
    process: bool,

    #[command(flatten)]
    signing: SigningKeyArgs,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// Write a JUnit XML report (one test case per hook).
    #[arg(long)]
    junit: Option<PathBuf>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum ScoreFormat {
    Markdown,
    Csv,
    Json,
}

#[derive(Args, Debug)]
struct ScoreArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The account export (CSV; columns in the README).
    #[arg(long)]
    accounts: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = ScoreFormat::Markdown)]
    format: ScoreFormat,

    /// Write the output to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,

    /// Score the valid rows even when some rows are bad (they are listed).
    #[arg(long)]
    skip_bad_rows: bool,

    /// Do not read GitLab: issue/MR counts come from the CSV's `issues_mrs` column.
    #[arg(long)]
    offline: bool,

    /// Plan `stage::prospect` tracking issues for the top N organizations that have none.
    /// A dry run unless --yes is given.
    #[arg(long, value_name = "N")]
    open_prospects: Option<usize>,

    /// With --open-prospects: really open the issues.
    #[arg(long)]
    yes: bool,
}

#[derive(Args, Debug)]
struct ReportArgs {
    #[command(flatten)]
    job: JobArgs,

    /// Fiscal quarter, e.g. FY26Q1 (default: the current one).
    #[arg(long)]
    quarter: Option<String>,

    /// Print JSON instead of Markdown.
    #[arg(long)]
    json: bool,

    /// Write the Markdown (or JSON with --json) to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,

    /// Also write the JSON to this file (for artifacts).
    #[arg(long)]
    json_out: Option<PathBuf>,

    /// Create or update the quarter's dashboard issue in the tracking project.
    #[arg(long)]
    publish: bool,

    /// The account export of `score` (CSV): its `arr` column gives the influenced ARR of the
    /// quarter's contributing customers.
    #[arg(long, value_name = "FILE")]
    accounts: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SiteArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The directory to write the site to (created when missing).
    #[arg(long, default_value = "public")]
    out: PathBuf,

    /// Also build the program dashboard and the per-organization pages. They hold customer
    /// data: publish them only behind GitLab Pages access control (project members).
    #[arg(long)]
    internal: bool,

    /// Fiscal quarter of the dashboard, e.g. FY26Q1 (default: the current one).
    #[arg(long)]
    quarter: Option<String>,
}

#[derive(Args, Debug)]
struct NudgeArgs {
    #[command(flatten)]
    job: JobArgs,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SetupArgs {
    #[command(flatten)]
    job: JobArgs,

    /// The public URL of `cocreate serve`'s /webhook; without it no webhook is registered.
    #[arg(long, env = "COCREATE_WEBHOOK_URL")]
    webhook_url: Option<String>,

    #[command(flatten)]
    secret: WebhookSecretArgs,

    /// The GitLab project holding the policies (`group/project[@branch]`, default branch when
    /// no `@`): its webhook also sends pushes to that branch, so `serve` reloads them.
    #[arg(long, env = "COCREATE_POLICY_PROJECT", value_name = "PATH[@REF]")]
    policy_project: Option<cocreate::jobs::setup::PolicyRepo>,
}

/// The webhook secret, shared by `serve` (which checks it) and `setup` (which registers it).
#[derive(Args, Debug)]
struct WebhookSecretArgs {
    /// X-Gitlab-Token values, comma-separated (several while a secret is rotated). `serve`
    /// accepts any of them and requires one when GITLAB_TOKEN is set, unless a signing key is;
    /// `setup` registers the first on the webhook.
    #[arg(
        long,
        env = "COCREATE_WEBHOOK_SECRET",
        hide_env_values = true,
        value_delimiter = ','
    )]
    webhook_secret: Vec<String>,
}

/// Standard Webhooks signing keys, shared by `serve` (which verifies them) and `recover` (which
/// dedupes recovered deliveries by the signed id as `serve` does).
#[derive(Args, Debug)]
struct SigningKeyArgs {
    /// Standard Webhooks signing keys (`whsec_…`), comma-separated. When set, every delivery
    /// must carry a valid webhook-signature within the time window, and the signed webhook-id is
    /// the dedupe key.
    #[arg(
        long,
        env = "COCREATE_SIGNING_KEY",
        hide_env_values = true,
        value_delimiter = ','
    )]
    signing_key: Vec<String>,
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// A webhook body (JSON), as GitLab sends it.
    #[arg(long)]
    event: PathBuf,

    /// The X-Gitlab-Event header value; inferred from `object_kind` when omitted.
    #[arg(long)]
    event_type: Option<String>,

    /// Print the decision as JSON.
    #[arg(long)]
    json: bool,
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Every log line is scrubbed of the configured secrets and token-shaped strings; colors
    // only on a terminal (a journal or log file gets plain text).
    let writer = cocreate::ops::log_scrub::Scrubbed::new(
        cocreate::ops::redact::Redactor::from_env(),
        std::io::stderr,
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn config_source(
    explicit: Option<&str>,
    default_dir: &str,
    what: &str,
) -> anyhow::Result<ConfigSource> {
    if let Some(repo) = explicit.and_then(app::RepoSource::parse) {
        return Ok(ConfigSource::Gitlab(repo.map_err(anyhow::Error::msg)?));
    }
    match explicit.map(Path::new) {
        Some(p) if p.is_dir() => Ok(ConfigSource::Dir(p.to_owned())),
        Some(p) => bail!("{what} directory `{}` does not exist", p.display()),
        None if Path::new(default_dir).is_dir() => {
            Ok(ConfigSource::Dir(PathBuf::from(default_dir)))
        }
        None => {
            tracing::warn!(
                "no ./{default_dir} directory: using the example {what} built into the binary"
            );
            Ok(ConfigSource::Embedded)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let policies = config_source(cli.policies.as_deref(), "policies", "policies")?;
    let templates = match (&policies, &cli.templates) {
        // Templates follow policies kept in a GitLab project unless a directory is named.
        (ConfigSource::Gitlab(repo), None) => ConfigSource::Gitlab(repo.clone()),
        _ => config_source(
            cli.templates.as_deref().and_then(Path::to_str),
            "templates",
            "templates",
        )?,
    };
    match cli.command {
        Command::Serve(args) => serve(args, policies, templates).await,
        Command::Plan(args) => plan(args, policies, templates),
        Command::Queue(args) => {
            Ok(cocreate::ops::queue_cmd::run(args, &mut std::io::stdout()).await?)
        }
        Command::CcaCheck(args) => cca_check(args, policies, templates).await,
        Command::Reconcile(args) => reconcile(args, policies, templates).await,
        Command::Recover(args) => {
            let opts = cocreate::jobs::recover::RecoverOptions {
                webhook_url: args.webhook_url,
                data_dir: args.data,
                since: args.since,
                signed: args
                    .signing
                    .signing_key
                    .iter()
                    .any(|k| !k.trim().is_empty()),
                process: args.process,
                dry_run: args.job.dry_run,
            };
            let ctx = job_context(args.job, policies, templates, "recover").await?;
            cocreate::jobs::recover::cli(&ctx, &opts, args.json, args.junit.as_deref()).await
        }
        Command::Setup(args) => setup(args, policies, templates).await,
        Command::Nudge(args) => nudge(args, policies, templates).await,
        Command::Score(args) => score(args, policies, templates).await,
        Command::Report(args) => report(args, policies, templates).await,
        Command::Site(args) => site(args, policies, templates).await,
        Command::Policies {
            command: PoliciesCommand::Check,
        } => match app::load_policies(&policies) {
            Ok(p) => {
                for w in p.routing.watch.warnings() {
                    println!("warning: {w}");
                }
                println!(
                    "ok: {} organizations, {} Contributor Success reviewers ({})",
                    p.organizations.all().len(),
                    p.routing.roster.reviewers.len(),
                    p.source
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(errors) => {
                for e in &errors.0 {
                    println!("{e}");
                }
                println!("{} error(s)", errors.0.len());
                Ok(ExitCode::FAILURE)
            }
        },
    }
}

async fn serve(
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
            ready: cocreate::worker::ReadyLimits {
                max_dead: args.ready_max_dead,
                max_pending_age: args.ready_max_pending_age,
            },
            ..WorkerConfig::default()
        },
        overdue_refresh: Some(args.overdue_refresh),
        clock: cocreate::clock::Clock::system(),
        policy_poll: args.policy_poll.max(Duration::from_millis(100)),
        policy_fallback: args.policy_fallback.max(Duration::from_secs(1)),
        token_recheck: ServeSettings::DEFAULT_TOKEN_RECHECK,
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

/// The handler context of a scheduled job: connected to GitLab (a token is required to read it).
async fn job_context(
    job: JobArgs,
    policies: ConfigSource,
    templates: ConfigSource,
    command: &str,
) -> anyhow::Result<cocreate::handlers::Context> {
    let url = job.gitlab.checked_url()?;
    let Some(token) = job.gitlab.gitlab_token.filter(|t| !t.trim().is_empty()) else {
        bail!("{command} reads GitLab: set GITLAB_TOKEN (add --dry-run to write nothing)");
    };
    let clock = match job.now {
        Some(t) => cocreate::clock::Clock::fixed(
            chrono::DateTime::parse_from_rfc3339(&t)
                .with_context(|| {
                    format!("--now `{t}` is not an RFC 3339 time like 2026-11-23T12:00:00Z")
                })?
                .to_utc(),
        ),
        None => cocreate::clock::Clock::system(),
    };
    let settings = GitlabSettings {
        url,
        token: Some(token),
        retry: Default::default(),
    };
    // One read of the policies, from a directory or (`gitlab:…`) the policy project's branch.
    let client = app::connect(&settings).await?;
    let config = cocreate::reload::LiveConfig::start(policies, templates, client.clone())
        .await?
        .current();
    let mut ctx = app::context_with(
        client,
        config.policies.clone(),
        config.messages.clone(),
        clock,
    )
    .await?;
    if job.dry_run {
        tracing::warn!("DRY RUN (--dry-run): reading GitLab, writing nothing");
        ctx.mode = ctx.mode.dry_run();
    }
    Ok(ctx)
}

async fn cca_check(
    args: CcaCheckArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use cocreate::jobs::cca_check;
    let ctx = job_context(args.job, policies, templates, "cca-check").await?;
    let report = cca_check::run(&ctx).await?;
    if let Some(path) = &args.junit {
        std::fs::write(path, cca_check::junit(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let summary = cca_check::summary(&report);
    if let Some(path) = &args.summary {
        std::fs::write(path, &summary)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{summary}");
    }
    Ok(if args.fail_on_missing && report.failures() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn reconcile(
    args: ReconcileArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let ctx = job_context(args.job, policies, templates, "reconcile").await?;
    let report = cocreate::jobs::reconcile::run(&ctx, args.since).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let writes: usize = report.mrs.iter().map(|m| m.writes).sum();
        println!(
            "reconcile since {}: {} MRs looked at, {} writes, {} errors; {} API reads, {} writes, {} ms",
            report.since,
            report.mrs.len(),
            writes,
            report.errors.len(),
            report.api_reads,
            report.api_writes,
            report.elapsed_ms
        );
        for (mr, e) in &report.errors {
            println!("error: {mr}: {e}");
        }
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn setup(
    args: SetupArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let secret = args
        .secret
        .webhook_secret
        .into_iter()
        .map(|s| s.trim().to_owned())
        .find(|s| !s.is_empty())
        .map(cocreate::decide::setup::Secret);
    if args.webhook_url.is_some() && secret.is_none() {
        bail!("--webhook-url needs a secret: set COCREATE_WEBHOOK_SECRET (GitLab sends it as X-Gitlab-Token)");
    }
    if args.policy_project.is_some() && args.webhook_url.is_none() {
        bail!("--policy-project registers push events on a webhook: set --webhook-url (COCREATE_WEBHOOK_URL) too");
    }
    let dry = args.job.dry_run;
    let policy_repo = match &policies {
        ConfigSource::Gitlab(repo) => Some(repo.clone()),
        _ => None,
    };
    let issue_templates = cocreate::jobs::setup::issue_templates(&templates)?;
    let ctx = job_context(args.job, policies, templates, "setup").await?;
    let report = cocreate::jobs::setup::run(
        &ctx,
        cocreate::jobs::setup::SetupOptions {
            webhook_url: args.webhook_url,
            secret,
            // Policies read from a GitLab project: that project's hook sends its pushes.
            policy_repo: args.policy_project.or(policy_repo),
            templates: issue_templates,
        },
    )
    .await?;
    let verb = if dry { "would" } else { "did" };
    if report.changes.is_empty() {
        println!(
            "setup: everything is in place ({} API reads)",
            report.api_reads
        );
    }
    for c in &report.changes {
        println!("{verb}: {c}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn score(
    args: ScoreArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use cocreate::jobs::score;
    let text = std::fs::read_to_string(&args.accounts)
        .with_context(|| format!("cannot read {}", args.accounts.display()))?;
    if args.open_prospects.is_some() && args.offline {
        bail!("--open-prospects needs GitLab: drop --offline");
    }
    let mut ctx = None;
    let report = if args.offline {
        let policies = app::load_policies(&policies)
            .map_err(|e| anyhow::anyhow!("policies are invalid:\n{e}"))?;
        score::run(&policies, None, &text, args.skip_bad_rows).await
    } else {
        let c = ctx
            .insert(job_context(args.job, policies, templates, "score (or pass --offline)").await?);
        score::run(&c.policies, c.gitlab(), &text, args.skip_bad_rows).await
    }
    .with_context(|| format!("cannot score {}", args.accounts.display()))?;
    if let (Some(n), Some(ctx)) = (args.open_prospects, ctx.as_mut()) {
        if !args.yes {
            ctx.mode = ctx.mode.clone().dry_run();
        }
        let verb = if args.yes {
            "opened"
        } else {
            "would open (pass --yes)"
        };
        for line in score::open_prospects(ctx, &report, n).await? {
            eprintln!("{verb}: {line}");
        }
    }
    let output = match args.format {
        ScoreFormat::Markdown => score::markdown(&report),
        ScoreFormat::Csv => score::to_csv(&report)?,
        ScoreFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match &args.out {
        Some(path) => std::fs::write(path, &output)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{output}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn report(
    args: ReportArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use cocreate::jobs::report;
    let arr = match &args.accounts {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let arr = cocreate::jobs::score::parse_arr(&text)
                .with_context(|| format!("cannot read the ARR of {}", path.display()))?;
            if arr.is_none() {
                bail!("{} has no `arr` column", path.display());
            }
            arr
        }
        None => None,
    };
    let ctx = job_context(args.job, policies, templates, "report").await?;
    let quarter = match &args.quarter {
        Some(q) => report::Quarter::parse(q)?,
        None => report::Quarter::containing(
            ctx.clock.today(),
            ctx.policies.segmentation.fiscal_year_start_month,
        ),
    };
    let mut result = report::run_with(&ctx, quarter, arr).await?;
    if args.publish {
        result.dashboard = Some(report::publish(&ctx, &result).await?);
    }
    let json = serde_json::to_string_pretty(&result)? + "\n";
    let output = if args.json {
        json.clone()
    } else {
        report::markdown(&result)
    };
    if let Some(path) = &args.json_out {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match &args.out {
        Some(path) => std::fs::write(path, &output)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{output}"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn site(
    args: SiteArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    use cocreate::jobs::{report::Quarter, site};
    let ctx = job_context(args.job, policies, templates, "site").await?;
    let quarter = match &args.quarter {
        Some(q) => Quarter::parse(q)?,
        None => Quarter::containing(
            ctx.clock.today(),
            ctx.policies.segmentation.fiscal_year_start_month,
        ),
    };
    let built = site::run(&ctx, quarter, args.internal).await?;
    built.write(&args.out)?;
    println!(
        "site: {} files in {} ({}); {} GitLab API reads, {} ms",
        built.files.len(),
        args.out.display(),
        if args.internal { "internal" } else { "public" },
        built.api_reads,
        built.elapsed_ms
    );
    Ok(ExitCode::SUCCESS)
}

async fn nudge(
    args: NudgeArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let dry = args.job.dry_run;
    let ctx = job_context(args.job, policies, templates, "nudge").await?;
    let report = cocreate::jobs::nudge::run(&ctx).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if dry { "would" } else { "did" };
        for n in report.mrs.iter().filter(|n| !n.changes.is_empty()) {
            for c in &n.changes {
                println!("{verb}: {c}");
            }
        }
        println!(
            "nudge: {} open Co-Create MRs, {} overdue, {} errors; {} API reads, {} writes, {} ms",
            report.mrs.len(),
            report.overdue,
            report.errors.len(),
            report.api_reads,
            report.api_writes,
            report.elapsed_ms
        );
    }
    Ok(if report.errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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

fn plan(
    args: PlanArgs,
    policies: ConfigSource,
    templates: ConfigSource,
) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(&args.event)
        .with_context(|| format!("cannot read {}", args.event.display()))?;
    let kind_header = match args.event_type {
        Some(k) => k,
        None => {
            let v: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("{} is not JSON", args.event.display()))?;
            match v.get("object_kind").and_then(|k| k.as_str()) {
                Some("merge_request") => "Merge Request Hook".to_owned(),
                Some("issue") => "Issue Hook".to_owned(),
                Some("note") => "Note Hook".to_owned(),
                other => bail!(
                    "cannot tell the event type from object_kind {other:?}; pass --event-type"
                ),
            }
        }
    };
    let policies =
        app::load_policies(&policies).map_err(|e| anyhow::anyhow!("policies are invalid:\n{e}"))?;
    let messages = app::load_messages(&templates)?;
    let kind = EventKind::from_header(&kind_header);
    let event = match events::parse(kind, &body)? {
        Ok(e) => e,
        Err(ignored) => {
            println!("ignored: {ignored:?}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let ctx_bot = policies
        .routing
        .bot_username
        .clone()
        .unwrap_or_else(|| "cocreate-bot".into());
    let ctx = cocreate::handlers::Context {
        policies: std::sync::Arc::new(policies),
        messages: std::sync::Arc::new(messages),
        mode: cocreate::handlers::Mode::Offline,
        bot_username: ctx_bot,
        locks: Default::default(),
        clock: cocreate::clock::Clock::system(),
        live: None,
        token: Default::default(),
    };
    if let Event::Issue(_) = &event {
        println!("plan shows merge request routing only; issue events need GitLab (run serve)");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(input) = merge_request::parse(&event) else {
        println!("ignored: this merge request action is not routed");
        return Ok(ExitCode::SUCCESS);
    };
    let facts = merge_request::offline_facts(&input, &ctx);
    let decision = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?
        .act()
        .ok_or_else(|| anyhow::anyhow!("routing asked for GitLab reads; plan makes none"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        println!(
            "plan for {} (payload facts only; nothing is written)",
            input.mr
        );
        match (&decision.org, &decision.skip) {
            (_, Some(skip)) => println!("skip: {skip:?}"),
            (Some(org), None) => println!("organization: {} ({:?})", org.slug, org.evidence),
            (None, None) => {}
        }
        for a in &decision.actions {
            println!("- {}", a.summary());
            if let cocreate::decide::Action::PostNote { note, .. } = a {
                for line in note.render().lines() {
                    println!("    | {line}");
                }
            }
        }
        if decision.actions.is_empty() && decision.skip.is_none() {
            println!("nothing to do: everything is in place");
        }
    }
    Ok(ExitCode::SUCCESS)
}
