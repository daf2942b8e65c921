//! `cocreate reconcile --since DURATION`: GitLab never retries a failed webhook, so this sweep
//! re-derives the wanted state of every open MR updated in the window, through the same handler
//! as `serve`. A second run right after writes nothing.

use std::time::Duration;

use serde::Serialize;

use super::{Progress, Spend};
use crate::domain::MrRef;
use crate::gitlab::GitlabError;
use crate::handlers::merge_request::{self, MrInput};
use crate::handlers::{Context, Outcome};

#[derive(Debug, Clone, Serialize)]
pub struct Reconciled {
    pub mr: MrRef,
    pub outcome: String,
    pub writes: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub since: String,
    pub mrs: Vec<Reconciled>,
    pub errors: Vec<(MrRef, String)>,
    pub api_reads: u64,
    pub api_writes: u64,
    pub elapsed_ms: u128,
}

impl ReconcileReport {
    /// The operator's text: the totals, then one line per error.
    pub fn summary(&self) -> String {
        let writes: usize = self.mrs.iter().map(|m| m.writes).sum();
        let mut out = format!(
            "reconcile since {}: {} MRs looked at, {} writes, {} errors; {} API reads, {} writes, {} ms\n",
            self.since,
            self.mrs.len(),
            writes,
            self.errors.len(),
            self.api_reads,
            self.api_writes,
            self.elapsed_ms
        );
        for (mr, e) in &self.errors {
            out.push_str(&format!("error: {mr}: {e}\n"));
        }
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("reconcile needs GitLab: set GITLAB_TOKEN (without it there is nothing to sweep)")]
    NoGitlab,
    #[error("--since {0:?} reaches before the Unix epoch")]
    Window(Duration),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
}

pub async fn run(ctx: &Context, since: Duration) -> Result<ReconcileReport, ReconcileError> {
    let live = ctx.gitlab.as_ref().ok_or(ReconcileError::NoGitlab)?;
    let spend = Spend::start(&live.client);
    let after = chrono::Duration::from_std(since)
        .ok()
        .and_then(|d| ctx.clock.now().checked_sub_signed(d))
        .ok_or(ReconcileError::Window(since))?;
    let updated_after = after.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mrs = live
        .facts
        .mrs_in_scope(
            &live.client,
            &ctx.policies,
            &[
                ("state", "opened".into()),
                ("updated_after", updated_after.clone()),
            ],
        )
        .await?;
    let mut progress = Progress::new("reconcile", mrs.len());
    let mut report = ReconcileReport {
        since: updated_after,
        mrs: Vec::new(),
        errors: Vec::new(),
        api_reads: 0,
        api_writes: 0,
        elapsed_ms: 0,
    };
    for (mr_ref, mr) in &mrs {
        match merge_request::handle(ctx, MrInput::from_api(mr), None).await {
            Ok(outcome) => report.mrs.push(Reconciled {
                mr: *mr_ref,
                writes: match &outcome {
                    Outcome::Done { writes, .. } => *writes,
                    Outcome::Skipped(_) => 0,
                },
                outcome: match outcome {
                    Outcome::Done { .. } => "routed".into(),
                    Outcome::Skipped(why) => why.to_string(),
                },
            }),
            Err(e) => {
                tracing::warn!(mr = %mr_ref, error = %e, "reconcile could not handle this MR; the next run retries");
                report.errors.push((*mr_ref, e.to_string()));
            }
        }
        progress.tick();
    }
    let spent = spend.so_far();
    report.api_reads = spent.reads;
    report.api_writes = spent.writes;
    report.elapsed_ms = spent.elapsed_ms;
    Ok(report)
}

/// What `reconcile` runs: first `recover` (when it knows our hooks' URL), then the MR sweep.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    pub since: Duration,
    /// `recover`'s options; `None` skips the step (no `--webhook-url`).
    pub recover: Option<super::recover::RecoverOptions>,
}

/// The whole run: the sweep's report (its fields at the top level, as before) and the
/// recover step's.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileRun {
    #[serde(flatten)]
    pub sweep: ReconcileReport,
    /// The recover step, run first.
    pub recover: Option<super::recover::RecoverReport>,
    /// Why the recover step did not run.
    pub recover_skipped: Option<String>,
    /// Why the recover step failed (the sweep still ran; the job exits 1).
    pub recover_error: Option<String>,
}

/// Recovers from the webhook events API first (in its fallback, `recover` sweeps new issues
/// and command comments but leaves the MRs to this sweep), then sweeps open MRs. A failed
/// recover step does not stop the sweep.
pub async fn run_all(
    ctx: &Context,
    opts: &ReconcileOptions,
) -> Result<ReconcileRun, ReconcileError> {
    let (mut recover, mut recover_skipped, mut recover_error) = (None, None, None);
    match &opts.recover {
        Some(r) => {
            let r = super::recover::RecoverOptions {
                mr_sweep: false,
                window: Some(opts.since),
                ..r.clone()
            };
            match super::recover::run(ctx, &r).await {
                Ok(report) => recover = Some(report),
                Err(e) => {
                    tracing::error!(error = %e, "reconcile's recover step failed; sweeping anyway");
                    recover_error = Some(e.to_string());
                }
            }
        }
        None => {
            recover_skipped = Some(
                "no --webhook-url (COCREATE_WEBHOOK_URL): our hooks cannot be found".to_owned(),
            )
        }
    }
    let sweep = run(ctx, opts.since).await?;
    Ok(ReconcileRun {
        sweep,
        recover,
        recover_skipped,
        recover_error,
    })
}

impl ReconcileRun {
    /// Why the job fails: an MR it could not handle, a hook GitLab disabled, a recorded
    /// delivery that does not parse.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .sweep
            .errors
            .iter()
            .map(|(mr, e)| format!("{mr}: {e}"))
            .collect();
        if let Some(r) = &self.recover {
            out.extend(r.disabled.iter().cloned());
        }
        out.extend(
            self.recover_error
                .iter()
                .map(|e| format!("recover step failed: {e}")),
        );
        out
    }
}

/// The terminal / CI log summary.
pub fn summary(run: &ReconcileRun) -> String {
    let mut out = String::new();
    match (&run.recover, &run.recover_skipped) {
        (Some(rec), _) => out.push_str(&super::recover::summary(rec)),
        (None, Some(why)) => out.push_str(&format!("recover step skipped: {why}\n")),
        (None, None) => {}
    }
    if let Some(e) = &run.recover_error {
        out.push_str(&format!("error: recover step failed: {e}\n"));
    }
    out.push_str(&run.sweep.summary());
    out
}

/// A JUnit report: one test case per MR swept (failing when it could not be handled), then
/// the recover step's cases (one per hook).
pub fn junit(run: &ReconcileRun) -> Result<String, quick_junit::SerializeError> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let mut suite = TestSuite::new("reconcile");
    for m in &run.sweep.mrs {
        let mut case = TestCase::new(m.mr.to_string(), TestCaseStatus::success());
        case.set_classname("sweep");
        case.set_system_out(format!("{}, {} writes", m.outcome, m.writes));
        suite.add_test_case(case);
    }
    for (mr, e) in &run.sweep.errors {
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(e.clone());
        let mut case = TestCase::new(mr.to_string(), status);
        case.set_classname("sweep");
        suite.add_test_case(case);
    }
    let mut r = Report::new("cocreate");
    r.add_test_suite(suite);
    if let Some(rec) = &run.recover {
        for s in super::recover::suite(rec) {
            r.add_test_suite(s);
        }
    }
    if let Some(e) = &run.recover_error {
        let mut suite = TestSuite::new("recover");
        let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
        status.set_message(e.clone());
        suite.add_test_case(TestCase::new("recover step", status));
        r.add_test_suite(suite);
    }
    r.to_string()
}
