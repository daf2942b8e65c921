//! The sweep of open MRs (`reconcile`'s second step, `recover`'s fallback): GitLab never retries
//! a failed webhook, so this re-derives the wanted state of every open MR updated in the window,
//! through the same handler as `serve`. A second run right after writes nothing.

use std::time::Duration;

use serde::Serialize;

use super::{Progress, Spend};
use crate::domain::MrRef;
use crate::gitlab::GitlabError;
use crate::handlers::merge_request::{self, MrInput};
use crate::handlers::Outcome;
use crate::jobs::JobContext;

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
    #[error("--since {0:?} reaches before the Unix epoch")]
    Window(Duration),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
}

pub async fn run(ctx: &JobContext, since: Duration) -> Result<ReconcileReport, ReconcileError> {
    let live = ctx.live();
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
