//! `cocreate score --accounts FILE.csv`: ranks and tiers customers by the action plan's
//! segmentation criteria, with the weights, thresholds and tier rules of `segmentation.yml`.
//!
//! Pure parts: [`parse_accounts`] (CSV → rows, or errors naming row and column), [`score_row`]
//! and [`rank`] (rows + policy → ranked, explained scores), the renderers. The one IO part,
//! [`history_counts`], reads each organization's issue and MR totals from GitLab list headers:
//! two calls per username and watched scope, whatever the counts.

mod accounts;
mod render;
#[cfg(test)]
mod tests;

pub use crate::decide::score::{
    build_report, coverage, rank, score_row, tier_of, usernames_of, AccountRow, Coverage,
    Criterion, HistorySource, RowError, ScoreReport, Scored,
};
pub use accounts::{parse_accounts, parse_arr, slugify, ScoreError, COLUMNS};
pub use render::{markdown, prospects_text, to_csv};
use std::collections::BTreeMap;

use crate::gitlab::{scope_prefixes, Get, GitlabClient, GitlabError};
use crate::handlers::Live;
use crate::jobs::JobContext;
use crate::policy::{Policies, Watch};

/// Issues + MRs created by these users in the watched scope (the instance when none is set),
/// from list totals: 2 calls per user and scope.
pub async fn history_count(
    client: &GitlabClient,
    watch: &Watch,
    usernames: &[String],
) -> Result<u64, GitlabError> {
    let scopes = scope_prefixes(watch);
    let mut total = 0u64;
    for user in usernames {
        for scope in &scopes {
            for kind in ["issues", "merge_requests"] {
                let n = Get::new(format!("{scope}{kind}"))
                    .param("scope", "all")
                    .param("state", "all")
                    .param("author_username", user.clone())
                    .total(client)
                    .await
                    .map_err(|e| GitlabError::new(format!("counting the {kind} of `{user}`"), e))?;
                // GitLab leaves x-total out above 10,000: a lower bound is enough here.
                total += n.unwrap_or(10_000);
            }
        }
    }
    Ok(total)
}

/// Parses, counts (unless `live` is `None`: offline) and scores an account export.
pub async fn run(
    policies: &Policies,
    live: Option<&Live>,
    accounts_csv: &str,
    skip_bad_rows: bool,
) -> Result<ScoreReport, ScoreError> {
    let (rows, errors) = parse_accounts(accounts_csv);
    if errors.iter().any(|e| e.line == 1) {
        return Err(ScoreError::BadHeader(errors));
    }
    if !errors.is_empty() && !skip_bad_rows {
        return Err(ScoreError::BadRows(errors));
    }
    let mut counts = BTreeMap::new();
    let mut api_reads = 0;
    if let Some(live) = live {
        let spend = super::Spend::start(&live.client);
        let mut progress = super::Progress::new("score", rows.len());
        for r in &rows {
            let users = usernames_of(r, &policies.organizations);
            if !users.is_empty() && !counts.contains_key(&r.slug) {
                let n = history_count(&live.client, &policies.routing.watch, &users).await?;
                counts.insert(r.slug.clone(), n);
            }
            progress.tick();
        }
        api_reads = spend.so_far().reads;
    }
    Ok(build_report(
        &rows,
        &counts,
        live.is_none(),
        errors,
        &policies.segmentation,
        api_reads,
    ))
}

/// Opens `stage::prospect` tracking issues for the top `n` scored organizations that have no open
/// tracking issue (in a dry-run [`Mode`](crate::handlers::Mode), only plans). Returns what was
/// (to be) written.
pub async fn open_prospects(
    ctx: &JobContext,
    report: &ScoreReport,
    n: usize,
) -> Result<Vec<String>, crate::gitlab::ExecuteError> {
    use crate::decide::engagement::{plan_prospects, plan_spiff_labels, Prospect};
    let live = ctx.live();
    let policies = &ctx.policies;
    let labels = &policies.routing.labels;
    let project = &policies.routing.tracking.project;
    let open: Vec<crate::gitlab::ApiIssue> = crate::gitlab::Get::new(format!(
        "projects/{}/issues",
        crate::gitlab::path_id(project)
    ))
    .param("state", "opened")
    .param("labels", labels.engagement.clone())
    .all(&live.client)
    .await
    .map_err(|e| {
        crate::gitlab::GitlabError::new(format!("listing tracking issues in {project}"), e)
    })?;
    let tracked: Vec<String> = open
        .iter()
        .filter_map(|i| crate::decide::org_from_labels(&i.labels, &labels.org_prefix))
        .map(str::to_owned)
        .collect();
    let ranked: Vec<Prospect<'_>> = report
        .accounts
        .iter()
        .map(|a| Prospect {
            slug: &a.slug,
            name: &a.organization,
            tier: a.tier,
            score: a.score,
            spiff: a.spiff_target,
        })
        .collect();
    let mut actions = plan_prospects(
        &ranked,
        n,
        &tracked,
        policies,
        &ctx.messages,
        ctx.clock.today(),
    )
    .map_err(|e| {
        crate::gitlab::ExecuteError::Build("rendering the prospect checklist".into(), e.to_string())
    })?;
    let spiff: Vec<&str> = ranked.iter().filter(|p| p.spiff).map(|p| p.slug).collect();
    let open_now: Vec<(crate::decide::engagement::IssueRef, Vec<String>)> = open
        .iter()
        .map(|i| {
            (
                crate::decide::engagement::IssueRef {
                    project: project.clone(),
                    iid: i.iid,
                },
                i.labels.clone(),
            )
        })
        .collect();
    actions.extend(plan_spiff_labels(&open_now, &spiff, policies));
    ctx.executor().run(Some(&live.client), &actions).await?;
    Ok(actions.iter().map(|a| a.summary()).collect())
}
