//! The `cocreate` command line: settings parsed by clap, one file per command next to its
//! output. `src/main.rs` only parses and calls [`main`].

mod cca_check;
mod nudge;
mod plan;
mod policies;
mod reconcile;
mod recover;
mod report;
mod score;
mod serve;
mod setup;
mod site;

use cca_check::CcaCheckArgs;
use nudge::NudgeArgs;
use plan::PlanArgs;
use reconcile::ReconcileArgs;
use recover::RecoverArgs;
use report::ReportArgs;
use score::ScoreArgs;
use serve::ServeArgs;
use setup::SetupArgs;
use site::SiteArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{self, ConfigSource, GitlabSettings};

/// Runs the Co-Create program inside GitLab: routes Co-Create merge requests (labels, a
/// Contributor Success reviewer, one welcome note) from GitLab webhooks, driven by policies/*.yml.
///
/// Without GITLAB_TOKEN every command is a dry run: it logs what it would write and writes nothing.
#[derive(Parser, Debug)]
#[command(name = "cocreate", version, propagate_version = true)]
pub struct Cli {
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
    Serve(Box<ServeArgs>),
    /// Print what cocreate would do for one webhook payload, touching nothing (payload facts only).
    Plan(PlanArgs),
    /// Scheduled job: check that every open Co-Create MR's organization has a valid Corporate
    /// Contributor Agreement; swap `CCA::…` labels, set the `cocreate/cca` commit status, and
    /// post one note when the state changes. Then the CLA managers' worklist: engaged
    /// organizations without a valid (or with an expiring) agreement, one note per state on
    /// their tracking issue. Writes JUnit, Markdown and JSON reports.
    CcaCheck(CcaCheckArgs),
    /// Scheduled sweep: first `recover` (with --webhook-url: the deliveries GitLab failed to
    /// make, from its webhook events API, into serve's queue), then re-route every open MR
    /// updated within --since. A second run right after writes nothing.
    Reconcile(ReconcileArgs),
    /// Scheduled job: store every webhook delivery GitLab failed to make (its webhook events
    /// API, 7 days) into serve's queue through the receiver's dedupe, oldest first; report
    /// hooks GitLab disabled (exit 1). Where the API is missing (404/403) it sweeps instead:
    /// open MRs, the tracking project's new issues, command comments on open Co-Create MRs.
    Recover(RecoverArgs),
    /// Scheduled job: ping the reviewer of a Co-Create MR waiting past the review-response SLO
    /// (business days, policies/routing.yml `review_slo`), hand it on after a second period,
    /// remind the author kindly when it has long been their turn. Each once per period. Then
    /// the open tracking issues: one note to the CSM of an engagement stuck at contacted or
    /// meeting, to the lead of one aligned without onboarding (`engagement_stalls`).
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
    Queue(crate::ops::QueueArgs),
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

impl SigningKeyArgs {
    /// Whether any key is set (deliveries are signed, and deduped by the signed id).
    fn any(&self) -> bool {
        self.signing_key.iter().any(|k| !k.trim().is_empty())
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Every log line is scrubbed of the configured secrets and token-shaped strings; colors
    // only on a terminal (a journal or log file gets plain text).
    let writer =
        crate::ops::log_scrub::Scrubbed::new(crate::redact::Redactor::from_env(), std::io::stderr);
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

/// Runs one command line (logs set up first); an error is printed and exits 1.
pub async fn main(cli: Cli) -> ExitCode {
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
        Command::Serve(args) => serve::run(*args, policies, templates).await,
        Command::Plan(args) => plan::run(args, policies, templates).await,
        Command::Queue(args) => Ok(crate::ops::queue_cmd::run(args, &mut std::io::stdout()).await?),
        Command::CcaCheck(args) => cca_check::run(args, policies, templates).await,
        Command::Reconcile(args) => reconcile::run(args, policies, templates).await,
        Command::Recover(args) => recover::run(args, policies, templates).await,
        Command::Setup(args) => setup::run(args, policies, templates).await,
        Command::Nudge(args) => nudge::run(args, policies, templates).await,
        Command::Score(args) => score::run(args, policies, templates).await,
        Command::Report(args) => report::run(args, policies, templates).await,
        Command::Site(args) => site::run(args, policies, templates).await,
        Command::Policies {
            command: PoliciesCommand::Check,
        } => Ok(policies::check(&policies)),
    }
}

/// The end of a job that reports (`recover`, `reconcile`): writes the JUnit file when asked,
/// prints the report as JSON or its summary, names the problems on stderr; exit 1 when `failed`.
struct JobOutput<'a> {
    command: &'a str,
    json: bool,
    junit: Option<&'a Path>,
}

impl JobOutput<'_> {
    fn finish<T: serde::Serialize>(
        &self,
        report: &T,
        junit: impl FnOnce(&T) -> Result<String, quick_junit::SerializeError>,
        summary: impl FnOnce(&T) -> String,
        problems: &[String],
        failed: bool,
    ) -> anyhow::Result<ExitCode> {
        if let Some(path) = self.junit {
            std::fs::write(path, junit(report)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(report)?);
        } else {
            print!("{}", summary(report));
        }
        if !problems.is_empty() {
            eprintln!("{}: {}", self.command, problems.join("; "));
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

/// The handler context of a scheduled job: connected to GitLab (a token is required to read it).
async fn job_context(
    job: JobArgs,
    policies: ConfigSource,
    templates: ConfigSource,
    command: &str,
) -> anyhow::Result<crate::jobs::JobContext> {
    let url = job.gitlab.checked_url()?;
    let Some(token) = job.gitlab.gitlab_token.filter(|t| !t.trim().is_empty()) else {
        bail!("{command} reads GitLab: set GITLAB_TOKEN (add --dry-run to write nothing)");
    };
    let clock = match job.now {
        Some(t) => crate::clock::Clock::fixed(
            chrono::DateTime::parse_from_rfc3339(&t)
                .with_context(|| {
                    format!("--now `{t}` is not an RFC 3339 time like 2026-11-23T12:00:00Z")
                })?
                .to_utc(),
        ),
        None => crate::clock::Clock::system(),
    };
    let settings = GitlabSettings {
        url,
        token: Some(token),
        retry: Default::default(),
    };
    // One read of the policies, from a directory or (`gitlab:…`) the policy project's branch.
    let client = app::connect(&settings).await?;
    let config = crate::reload::LiveConfig::start(policies, templates, client.clone())
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
    // A token was given, so the context is connected; the check keeps the type honest.
    crate::jobs::JobContext::new(ctx).with_context(|| format!("{command} reads GitLab"))
}
