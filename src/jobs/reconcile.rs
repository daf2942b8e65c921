//! `cocreate reconcile --since DURATION`: first `recover` (the deliveries GitLab failed to make,
//! from its webhook events API), then the sweep of open MRs updated in the window
//! ([`super::mr_sweep`]). A second run right after writes nothing.

use std::time::Duration;

use serde::Serialize;

pub use super::mr_sweep::{run, ReconcileError, ReconcileReport, Reconciled};
use crate::jobs::JobContext;

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
    ctx: &JobContext,
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
