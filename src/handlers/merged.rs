//! A merged Co-Create MR: thanks to its author, a note on the engagement's tracking issue,
//! the case-study label when the threshold is reached (rules: [`crate::decide::celebrate`]).
//!
//! Cost: the MR as it is now and its notes, then, under the organization's lock and all
//! concurrently, the organization's merged Co-Create MRs (one page per 100 and watched scope)
//! and its tracking issues (one list), then the tracking issue and its notes; the writes.

use std::collections::BTreeSet;

use super::{Context, HandleError, Outcome};
use crate::decide::celebrate::{decide_merged, Contributions, MergedFacts, TrackingNow};
use crate::decide::funnel::Stage;
use crate::decide::Skip;
use crate::domain::{MrRef, OrgSlug};
use crate::events::Event;

/// What this handler needs from an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedInput {
    pub mr: MrRef,
    /// The MR's labels in the payload: a merge without the Co-Create label costs no read.
    pub labels: Vec<String>,
}

/// GitLab's `merge` action on a merge request.
pub fn parse(event: &Event) -> Option<MergedInput> {
    let Event::MergeRequest(ev) = event else {
        return None;
    };
    (ev.object_attributes.action.as_deref() == Some("merge")).then(|| MergedInput {
        mr: ev.mr(),
        labels: ev.labels.iter().map(|l| l.title.clone()).collect(),
    })
}

pub async fn handle(
    ctx: &Context,
    input: MergedInput,
    event_uuid: Option<&str>,
) -> Result<Outcome, HandleError> {
    if !input.labels.contains(&ctx.policies.routing.labels.cocreate) {
        return Ok(Outcome::Skipped(Skip::NotCoCreate));
    }
    let Some(live) = ctx.gitlab() else {
        // Without a token nothing says what the organization contributed.
        return Ok(Outcome::Skipped(Skip::MrActionNotRouted));
    };
    let c = live.client.for_event(event_uuid);
    let labels = &ctx.policies.routing.labels;
    let Some(mr) = live.facts.merge_request(&c, input.mr).await? else {
        return Ok(Outcome::Skipped(Skip::MrGone { mr: input.mr }));
    };
    if mr.state != "merged" {
        return Ok(Outcome::Skipped(Skip::NotOpen { state: mr.state }));
    }
    let org = crate::decide::org_from_labels(&mr.labels, &labels.org_prefix)
        .and_then(|s| OrgSlug::parse(s).ok());
    let (true, Some(org)) = (mr.labels.contains(&labels.cocreate), org) else {
        return Ok(Outcome::Skipped(Skip::NotCoCreate));
    };
    // The organization's work is serialized: read, decide, write.
    let guard = ctx.locks.lock(org.as_str()).await;
    let params = [
        ("state", "merged".to_owned()),
        (
            "labels",
            format!("{},{}", labels.cocreate, labels.org(&org)),
        ),
    ];
    let merged = live.facts.mrs_in_scope(&c, &ctx.policies, &params);
    let tracking = live.facts.tracking_list(&c, &ctx.policies, &org);
    let mr_markers = live.facts.all_bot_markers(&c, input.mr);
    let (merged, tracking, mr_markers) = tokio::try_join!(merged, tracking, mr_markers)?;
    let mut authors: BTreeSet<u64> = merged.values().map(|m| m.author.id).collect();
    authors.insert(mr.author.id);
    let mut mrs: BTreeSet<MrRef> = merged.keys().copied().collect();
    mrs.insert(input.mr);
    let contributions = Contributions {
        merged_mrs: mrs.len(),
        contributors: authors.len(),
    };
    let first = tracking
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.issue().issue.clone())
        .min_by_key(|i| i.iid);
    let now = match &first {
        Some(issue) => {
            let (current, markers) = tokio::try_join!(
                live.facts.issue(&c, issue),
                live.facts.issue_markers(&c, issue)
            )?;
            current.map(|i| (issue.clone(), i.labels, markers))
        }
        None => None,
    };
    let tracking = now
        .as_ref()
        .map(|(issue, labels_now, markers)| TrackingNow {
            issue: issue.clone(),
            stage: labels_now
                .iter()
                .find_map(|l| l.strip_prefix(&labels.stage_prefix))
                .and_then(Stage::parse),
            labels: labels_now,
            markers,
        });
    let actions = decide_merged(
        &MergedFacts {
            mr: input.mr,
            mr_url: &mr.web_url,
            author: &mr.author.username,
            mr_markers: &mr_markers,
            contributions,
            tracking,
        },
        &ctx.policies,
        &ctx.messages,
    )?;
    let report = ctx.execute(Some(&guard), Some(&c), &actions).await?;
    tracing::info!(mr = %input.mr, %org, merged = contributions.merged_mrs, writes = report.writes, "merged Co-Create MR recognized");
    Ok(Outcome::Done {
        writes: report.writes,
        planned: actions.len(),
    })
}
