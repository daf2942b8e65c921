//! The quarter's dashboard issue in the tracking project: found by its marker, created once,
//! edited only when its body changes.

use super::markdown::markdown_body;
use super::{Dashboard, Report, ReportError};
use crate::decide::engagement::IssueRef;
use crate::decide::Action;
use crate::gitlab::{path_id, ApiIssue, Get, GitlabError};
use crate::jobs::JobContext;
use crate::messages::Marker;

pub fn marker(quarter: &str) -> String {
    Marker::Dashboard(quarter.to_owned()).to_string()
}

/// What the dashboard issue needs, from what is there. Pure.
pub fn dashboard_actions(
    existing: Option<(u64, &str)>,
    project: &str,
    quarter: &str,
    body: &str,
    confidential: bool,
) -> Vec<Action> {
    let description = format!("{}\n{body}", marker(quarter));
    match existing {
        Some((_, current)) if current == description => vec![],
        Some((iid, _)) => vec![Action::EditIssue {
            issue: IssueRef {
                project: project.to_owned(),
                iid,
            },
            add_labels: vec![],
            remove_labels: vec![],
            assignee_ids: None,
            description: Some(description),
            confidential: None,
        }],
        None => vec![Action::CreateIssue {
            project: project.to_owned(),
            title: format!("Co-Create program dashboard {quarter}"),
            description,
            labels: vec![],
            confidential,
            assignee_ids: vec![],
        }],
    }
}

/// The quarter's dashboard among `found`: the oldest issue the bot itself opened whose
/// description starts with the marker. Anyone can type the marker into an issue of their own; such
/// an issue is never taken for the dashboard, so the bot never overwrites a person's issue.
fn ours<'a>(found: &'a [ApiIssue], marker: &str, bot_username: &str) -> Option<&'a ApiIssue> {
    found
        .iter()
        .filter(|i| {
            i.author
                .as_ref()
                .is_some_and(|a| a.username == bot_username)
        })
        .filter(|i| {
            i.description
                .as_deref()
                .is_some_and(|d| d.starts_with(marker))
        })
        .min_by_key(|i| i.iid)
}

/// Creates or updates the quarter's dashboard issue (found by its marker; never a second one).
/// Cost: one search read, plus at most one write.
pub async fn publish(ctx: &JobContext, report: &Report) -> Result<Dashboard, ReportError> {
    let live = ctx.live();
    let tracking = &ctx.policies.routing.tracking;
    let term = Marker::Dashboard(report.quarter.clone()).search_term();
    let marker = marker(&report.quarter);
    let found: Vec<ApiIssue> = Get::new(format!("projects/{}/issues", path_id(&tracking.project)))
        .param("search", term)
        .param("state", "all")
        .param("scope", "all")
        .param("sort", "asc")
        .all(&live.client)
        .await
        .map_err(|e| {
            GitlabError::new(
                format!("looking for the dashboard issue in {}", tracking.project),
                e,
            )
        })?;
    let existing = ours(&found, &marker, &ctx.bot_username);
    let actions = dashboard_actions(
        existing.map(|i| (i.iid, i.description.as_deref().unwrap_or(""))),
        &tracking.project,
        &report.quarter,
        &markdown_body(report),
        tracking.confidential,
    );
    ctx.executor().run(Some(&live.client), &actions).await?;
    let dry = ctx.mode.is_dry_run();
    let outcome = match (actions.first(), dry) {
        (None, _) => "unchanged",
        (Some(Action::CreateIssue { .. }), false) => "created",
        (Some(Action::CreateIssue { .. }), true) => "would create",
        (Some(_), false) => "updated",
        (Some(_), true) => "would update",
    };
    Ok(Dashboard {
        outcome: outcome.to_owned(),
        issue: existing.map(|i| i.iid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_is_created_once_then_updated_only_when_it_differs() {
        let body = "# report";
        let created = dashboard_actions(None, "p", "FY26Q1", body, true);
        let Some(Action::CreateIssue {
            description,
            confidential,
            ..
        }) = created.first()
        else {
            panic!("{created:?}")
        };
        assert!(description.starts_with("<!-- cocreate:dashboard:FY26Q1 -->\n"));
        assert!(*confidential);
        assert!(dashboard_actions(Some((4, description)), "p", "FY26Q1", body, true).is_empty());
        let edit = dashboard_actions(Some((4, description)), "p", "FY26Q1", "# new", true);
        assert!(
            matches!(edit.as_slice(), [Action::EditIssue { issue, description: Some(_), .. }] if issue.iid == 4)
        );
    }
}
