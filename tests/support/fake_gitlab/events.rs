//! Handlers: user contribution events and issue label and state events.

use super::*;

/// `GET /users/:id/events` (id or username): the user's contribution events, newest first
/// (`sort=asc` for oldest first). Only `commented` events are modelled (one per non-system
/// note the user wrote on an MR or issue); `after`/`before` are `YYYY-MM-DD` and exclusive, as
/// in GitLab.
pub(super) fn list_user_events(
    w: &mut World,
    ctx: &Ctx<'_>,
    id_or_username: &str,
) -> HandlerResult {
    let user_id = lookup_user_by_id_or_username(w, id_or_username)?.spec.id;
    let action = ctx.query.get("action");
    if action.is_some_and(|a| a != "commented") {
        return Err(Reply::error(
            400,
            "only action=commented is modelled by the fake GitLab",
        ));
    }
    let day = |key: &str| -> Result<Option<chrono::NaiveDate>, Reply> {
        ctx.query
            .get(key)
            .map(|v| {
                chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| invalid_param(key))
            })
            .transpose()
    };
    let (after, before) = (day("after")?, day("before")?);
    let ascending = ctx.query.one_of("sort", &["asc", "desc"])?.as_deref() == Some("asc");
    let mut events: Vec<(Noteable, &Note)> = w
        .mrs
        .values()
        .flat_map(|mr| mr.notes.iter().map(move |n| (Noteable::of_mr(mr), n)))
        .chain(
            w.issues
                .values()
                .flat_map(|i| i.notes.iter().map(move |n| (Noteable::of_issue(i), n))),
        )
        .filter(|(_, n)| n.author_id == user_id && !n.system)
        .filter(|(_, n)| after.is_none_or(|d| n.created_at.date_naive() > d))
        .filter(|(_, n)| before.is_none_or(|d| n.created_at.date_naive() < d))
        .collect();
    events.sort_by_key(|(_, n)| (n.created_at, n.id));
    if !ascending {
        events.reverse();
    }
    paginate(w, ctx, &events, |(noteable, note)| {
        let author = w.user_or_placeholder(note.author_id);
        json!({
            "id": note.id,
            "title": null,
            "project_id": noteable.project_id,
            "action_name": "commented on",
            "target_id": note.id,
            "target_iid": note.id,
            "target_type": "Note",
            "author_id": note.author_id,
            "target_title": null,
            "created_at": fmt_time(note.created_at),
            "note": note_json(w, noteable, note),
            "author": user_basic_json(&author),
            "author_username": author.spec.username,
            "imported": false,
            "imported_from": "none",
        })
    })
}

/// `GET /projects/:id/issues/:iid/resource_label_events`, oldest first.
pub(super) fn list_issue_label_events(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let issue = &w.issues[&key];
    paginate(w, ctx, &issue.label_events, |e| {
        label_event_json(w, issue, e)
    })
}

/// `GET /projects/:id/issues/:iid/resource_state_events`: closings and reopenings, oldest
/// first (an issue never closed has none: the initial state is not an event).
pub(super) fn list_issue_state_events(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let issue = &w.issues[&key];
    paginate(w, ctx, &issue.state_events, |e| {
        json!({
            "id": e.id,
            "user": user_basic_json(&w.user_or_placeholder(e.user_id)),
            "created_at": fmt_time(e.created_at),
            "resource_type": "Issue",
            "resource_id": issue.id,
            "state": e.state,
        })
    })
}
