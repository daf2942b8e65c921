//! `cocreate nudge`: Co-Create MRs never wait silently. Pings the reviewer when an MR has waited
//! past the review-response SLO, hands it to another roster member after a second period, and
//! reminds the author kindly, once per period, when it has been their turn for a long time.
//!
//! It then walks the open tracking issues for stalled engagements ([`super::stalls`]).
//!
//! Cost: the pages of the open-MR list, one notes read per MR (whose turn it is lives in the
//! notes), the roster's load once, and the writes; then the stall walk's reads.

use serde::Serialize;

use super::stalls::StallReport;
use super::{Progress, Spend};
use crate::decide::nudge::{decide_nudge, NudgeFacts, NudgeNeed, NudgeOutcome};
use crate::decide::Step;
use crate::domain::MrRef;
use crate::gitlab::{ExecuteError, FactSource, GitlabError};
use crate::handlers::Live;
use crate::jobs::JobContext;
use crate::messages::TemplateError;
use crate::policy::Policies;

#[derive(Debug, Clone, Serialize)]
pub struct Nudged {
    pub mr: MrRef,
    pub outcome: NudgeOutcome,
    pub changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NudgeReport {
    pub mrs: Vec<Nudged>,
    pub overdue: usize,
    pub errors: Vec<(MrRef, String)>,
    /// The open tracking issues: stalled engagements and their notes.
    pub stalls: StallReport,
    pub api_reads: u64,
    pub api_writes: u64,
    pub elapsed_ms: u128,
}

impl NudgeReport {
    /// The operator's text: one line per change (`would` in a dry run), then the totals.
    pub fn summary(&self, dry_run: bool) -> String {
        let verb = if dry_run { "would" } else { "did" };
        let mut out = String::new();
        let changes = self.mrs.iter().flat_map(|n| &n.changes);
        let stall_changes = self.stalls.engagements.iter().flat_map(|s| &s.changes);
        for c in changes.chain(stall_changes) {
            out.push_str(&format!("{verb}: {c}\n"));
        }
        for (issue, e) in &self.stalls.errors {
            out.push_str(&format!("error: {issue}: {e}\n"));
        }
        out.push_str(&format!(
            "nudge: {} open Co-Create MRs, {} overdue, {} errors; {} open engagements, {} stalled, {} errors; {} API reads, {} writes, {} ms\n",
            self.mrs.len(),
            self.overdue,
            self.errors.len(),
            self.stalls.engagements.len(),
            self.stalls.stalled(),
            self.stalls.errors.len(),
            self.api_reads,
            self.api_writes,
            self.elapsed_ms
        ));
        out
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NudgeError {
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Execute(#[from] ExecuteError),
    #[error("the nudge rules still need {0:?} after it was read")]
    StillNeeds(NudgeNeed),
}

pub async fn run(ctx: &JobContext) -> Result<NudgeReport, NudgeError> {
    let live = ctx.live();
    let spend = Spend::start(&live.client);
    let c = &live.client;
    let mrs = live.facts.open_cocreate_mrs(c, &ctx.policies).await?;
    let mut report = NudgeReport {
        mrs: vec![],
        overdue: 0,
        errors: vec![],
        stalls: StallReport::default(),
        api_reads: 0,
        api_writes: 0,
        elapsed_ms: 0,
    };
    let mut roster = None;
    let mut progress = Progress::new("nudge", mrs.len());
    let now = ctx.clock.now();
    for (mr_ref, mr) in &mrs {
        let result: Result<Nudged, NudgeError> = async {
            let notes = live.facts.mr_notes(c, *mr_ref).await?;
            let activity = FactSource::activity_of(&notes);
            let markers = live.facts.bot_markers_in(&notes);
            let reviewers: Vec<(u64, String)> = mr
                .reviewers
                .iter()
                .map(|r| (r.id, r.username.clone()))
                .collect();
            let mut facts = NudgeFacts {
                mr: *mr_ref,
                created_at: mr.created_at.unwrap_or(now),
                author: &mr.author.username,
                labels: &mr.labels,
                reviewers: &reviewers,
                activity: &activity,
                markers: &markers,
                now,
                roster: None,
                bot: &ctx.bot_username,
            };
            let (outcome, actions) = match decide_nudge(&facts, &ctx.policies, &ctx.messages)? {
                Step::Act(decided) => decided,
                Step::Need(NudgeNeed::Roster) => {
                    // The roster's load is read once per run, only when a hand-over asks.
                    if roster.is_none() {
                        roster = Some(live.facts.roster(c, &ctx.policies, None).await?);
                    }
                    facts.roster = roster.as_ref();
                    match decide_nudge(&facts, &ctx.policies, &ctx.messages)? {
                        Step::Act(decided) => decided,
                        Step::Need(need) => return Err(NudgeError::StillNeeds(need)),
                    }
                }
            };
            ctx.executor().run(Some(c), &actions).await?;
            Ok(Nudged {
                mr: *mr_ref,
                outcome,
                changes: actions.iter().map(|a| a.summary()).collect(),
            })
        }
        .await;
        match result {
            Ok(n) => {
                report.overdue += usize::from(n.outcome.overdue);
                report.mrs.push(n);
            }
            Err(e) => {
                tracing::warn!(mr = %mr_ref, error = %e, "nudge could not handle this MR; the next run retries");
                report.errors.push((*mr_ref, e.to_string()));
            }
        }
        progress.tick();
    }
    report.stalls = super::stalls::run(ctx, live).await?;
    let spent = spend.so_far();
    report.api_reads = spent.reads;
    report.api_writes = spent.writes;
    report.elapsed_ms = spent.elapsed_ms;
    Ok(report)
}

/// Open Co-Create MRs that carry the overdue label (which this job keeps exactly on the MRs
/// whose review is overdue). `serve` publishes it as the `cocreate_reviews_overdue` gauge.
/// Cost: one page per 100 such MRs and watched scope.
pub async fn count_overdue(live: &Live, policies: &Policies) -> Result<usize, GitlabError> {
    let labels = &policies.routing.labels;
    let mrs = live
        .facts
        .mrs_in_scope(
            &live.client,
            policies,
            &[
                ("state", "opened".into()),
                // Comma-separated labels: MRs with all of them.
                ("labels", format!("{},{}", labels.cocreate, labels.overdue)),
            ],
        )
        .await?;
    Ok(mrs.len())
}
