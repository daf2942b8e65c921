//! `plan`: what the bot would do for one webhook payload, from the payload alone (no GitLab
//! reads, nothing written), and its text for the operator.

use crate::decide::{decide_merge_request, Action, Decision};
use crate::domain::MrRef;
use crate::events::{self, Event, EventKind, PayloadError};
use crate::handlers::{merge_request, Context};
use crate::messages::TemplateError;

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the payload is not JSON")]
    NotJson(#[source] serde_json::Error),
    #[error("cannot tell the event type from object_kind {0:?}; pass --event-type")]
    UnknownKind(Option<String>),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("routing asked for GitLab reads; plan makes none")]
    NeedsGitlab,
}

/// The outcome of planning one payload.
#[derive(Debug)]
pub enum Plan {
    /// The payload is not an event the bot acts on (the parser's reason).
    Ignored(String),
    /// Issue events need GitLab's facts: `plan` does not show them.
    IssueEvent,
    /// A merge request action that is not routed (e.g. a close).
    NotRouted,
    /// The routing decision for a merge request, from the payload's facts.
    Decided { mr: MrRef, decision: Decision },
}

/// The `X-Gitlab-Event` header GitLab would have sent with `body`, from its `object_kind`.
pub fn event_type(body: &[u8]) -> Result<&'static str, PlanError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(PlanError::NotJson)?;
    match v.get("object_kind").and_then(|k| k.as_str()) {
        Some("merge_request") => Ok("Merge Request Hook"),
        Some("issue") => Ok("Issue Hook"),
        Some("note") => Ok("Note Hook"),
        other => Err(PlanError::UnknownKind(other.map(str::to_owned))),
    }
}

/// Decides on one webhook body with the facts it carries. `ctx` is an offline context: nothing
/// is read from GitLab or written.
pub fn run(ctx: &Context, event_type: &str, body: &[u8]) -> Result<Plan, PlanError> {
    let event = match events::parse(EventKind::from_header(event_type), body)? {
        Ok(e) => e,
        Err(ignored) => return Ok(Plan::Ignored(format!("{ignored:?}"))),
    };
    if let Event::Issue(_) = &event {
        return Ok(Plan::IssueEvent);
    }
    let Some(input) = merge_request::parse(&event) else {
        return Ok(Plan::NotRouted);
    };
    let facts = merge_request::offline_facts(&input, ctx);
    let decision = decide_merge_request(&facts, &ctx.policies, &ctx.messages)?
        .act()
        .ok_or(PlanError::NeedsGitlab)?;
    Ok(Plan::Decided {
        mr: input.mr,
        decision,
    })
}

/// The operator's text: the decision as JSON (`json`, for a decided MR) or as lines.
pub fn render(plan: &Plan, json: bool) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    match plan {
        Plan::Ignored(why) => out.push(format!("ignored: {why}")),
        Plan::IssueEvent => out.push(
            "plan shows merge request routing only; issue events need GitLab (run serve)".into(),
        ),
        Plan::NotRouted => out.push("ignored: this merge request action is not routed".into()),
        Plan::Decided { decision, .. } if json => out.push(serde_json::to_string_pretty(decision)?),
        Plan::Decided { mr, decision } => {
            out.push(format!(
                "plan for {mr} (payload facts only; nothing is written)"
            ));
            match (&decision.org, &decision.skip) {
                (_, Some(skip)) => out.push(format!("skip: {skip:?}")),
                (Some(org), None) => {
                    out.push(format!("organization: {} ({:?})", org.slug, org.evidence))
                }
                (None, None) => {}
            }
            for a in &decision.actions {
                out.push(format!("- {}", a.summary()));
                if let Action::PostNote { note, .. } = a {
                    out.extend(note.render().lines().map(|l| format!("    | {l}")));
                }
            }
            if decision.actions.is_empty() && decision.skip.is_none() {
                out.push("nothing to do: everything is in place".into());
            }
        }
    }
    let mut text = out.join("\n");
    text.push('\n');
    Ok(text)
}
