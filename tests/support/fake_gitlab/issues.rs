//! Handlers: issues (list, create, edit, notes, links).

use super::*;

pub(super) type IssuePredicate = Predicate<Issue>;

/// Builds the filters of the issue list endpoints from the query.
pub(super) fn issue_list_filters(
    w: &World,
    q: &Params,
    scope: &ListScope,
) -> Result<Vec<IssuePredicate>, Reply> {
    let mut preds: Vec<IssuePredicate> = Vec::new();
    match scope {
        ListScope::Instance => {}
        ListScope::Group(full_path) => {
            let prefix = format!("{full_path}/");
            let project_ids: Vec<u64> = w
                .projects
                .iter()
                .filter(|(_, path)| path.starts_with(&prefix))
                .map(|(&id, _)| id)
                .collect();
            preds.push(Box::new(move |i| project_ids.contains(&i.project_id)));
        }
        ListScope::Project(project_id) => {
            let project_id = *project_id;
            preds.push(Box::new(move |i| i.project_id == project_id));
        }
    }

    let default_scope = match scope {
        ListScope::Instance => "created_by_me",
        _ => "all",
    };
    let user_scope = q
        .one_of(
            "scope",
            &[
                "created_by_me",
                "created-by-me",
                "assigned_to_me",
                "assigned-to-me",
                "all",
            ],
        )?
        .unwrap_or_else(|| default_scope.to_owned());
    let bot = w.bot_id;
    match user_scope.replace('-', "_").as_str() {
        "created_by_me" => preds.push(Box::new(move |i| i.author_id == bot)),
        "assigned_to_me" => preds.push(Box::new(move |i| i.assignee_ids.contains(&bot))),
        _ => {}
    }

    shared_list_filters(w, q, &["opened", "closed", "all"], &mut preds)?;
    if let Some(search) = q.get("search").map(str::to_lowercase) {
        preds.push(Box::new(move |i| {
            i.title.to_lowercase().contains(&search)
                || i.description
                    .as_deref()
                    .is_some_and(|d| d.to_lowercase().contains(&search))
        }));
    }
    if let Some(confidential) = q.bool("confidential")? {
        preds.push(Box::new(move |i| i.confidential == confidential));
    }
    match q.get("assignee_id") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("none") => {
            preds.push(Box::new(|i| i.assignee_ids.is_empty()));
        }
        Some(v) if v.eq_ignore_ascii_case("any") => {
            preds.push(Box::new(|i| !i.assignee_ids.is_empty()));
        }
        Some(_) => {
            let assignee = q.u64("assignee_id")?.unwrap_or_default();
            preds.push(Box::new(move |i| i.assignee_ids.contains(&assignee)));
        }
    }
    if let Some(usernames) = q.list("assignee_username") {
        let ids: Vec<Option<u64>> = usernames
            .iter()
            .map(|name| w.user_by_username(name).map(|u| u.spec.id))
            .collect();
        preds.push(Box::new(move |i| {
            ids.iter()
                .all(|id| id.is_some_and(|id| i.assignee_ids.contains(&id)))
        }));
    }
    Ok(preds)
}

/// `GET /issues`, `GET /groups/:id/issues`, `GET /projects/:id/issues`
pub(super) fn list_issues(w: &mut World, ctx: &Ctx<'_>, scope: ListScope) -> HandlerResult {
    let preds = issue_list_filters(w, &ctx.query, &scope)?;
    let mut issues: Vec<&Issue> = w
        .issues
        .values()
        .filter(|i| preds.iter().all(|p| p(i)))
        .collect();
    sort_listing(&ctx.query, &mut issues, |i| {
        (i.created_at, i.updated_at, i.id)
    })?;
    paginate(w, ctx, &issues, |i| issue_json(w, i))
}

/// `assignee_ids` (`assignee_ids[]=..` repeated, JSON array, comma list; `0` or empty for
/// nobody) or the older scalar `assignee_id`. Ids of unknown users are dropped, as GitLab
/// drops users who cannot be assigned. `None` if neither is given.
pub(super) fn assignee_ids_param(w: &World, params: &Params) -> Result<Option<Vec<u64>>, Reply> {
    let (key, raw) = match params.list("assignee_ids") {
        Some(raw) => ("assignee_ids", raw),
        None => match params.get("assignee_id") {
            Some(v) => ("assignee_id", vec![v.trim().to_owned()]),
            None => return Ok(None),
        },
    };
    let mut ids = Vec::new();
    for v in raw.iter().filter(|v| !v.is_empty()) {
        let id: u64 = v.parse().map_err(|_| invalid_param(key))?;
        if id != 0 && w.users.contains_key(&id) {
            ids.push(id);
        }
    }
    dedup_keep_order(&mut ids);
    Ok(Some(ids))
}

pub(super) fn blank_title() -> Reply {
    Reply::json(400, json!({ "message": { "title": ["can't be blank"] } }))
}

/// `POST /projects/:id/issues` with `title` (required), `description`, `labels`,
/// `confidential`, `assignee_ids`/`assignee_id` (form or JSON); authored by the token's user.
pub(super) fn post_issue(w: &mut World, ctx: &Ctx<'_>, project: &str) -> HandlerResult {
    let project_id = lookup_project(w, project)?;
    let params = ctx.params()?;
    let title = params
        .get("title")
        .ok_or_else(|| Reply::message(400, "400 (Bad request) \"title\" not given"))?
        .to_owned();
    if title.trim().is_empty() {
        return Err(blank_title());
    }
    let description = params.get("description").map(str::to_owned);
    let mut labels = params.list("labels").unwrap_or_default();
    normalize_labels(&mut labels);
    let confidential = params.bool("confidential")?.unwrap_or(false);
    let assignee_ids = assignee_ids_param(w, &params)?.unwrap_or_default();

    let now = w.clock.tick();
    let id = w.alloc_issue_id();
    let key = (project_id, w.next_issue_iid(project_id));
    let bot = w.bot_id;
    let mut issue = Issue::new(id, key, bot, now);
    issue.title = title;
    issue.description = description;
    issue.confidential = confidential;
    issue.labels = labels.clone();
    issue.assignee_ids = assignee_ids;
    w.issues.insert(key, issue);
    w.record_label_changes(key, &[], &labels, bot, now);
    Ok(Reply::json(201, issue_json(w, &w.issues[&key])))
}

/// `GET /projects/:id/issues/:iid`
pub(super) fn get_issue(w: &mut World, project: &str, iid: &str) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    Ok(Reply::json(200, issue_json(w, &w.issues[&key])))
}

/// `PUT /projects/:id/issues/:iid`
///
/// Supports `title`, `description` (stored verbatim), `labels` (replace), `add_labels`,
/// `remove_labels`, `assignee_ids`/`assignee_id` (`0`/empty for nobody), `confidential` and
/// `state_event` (`close`/`reopen`). Every label actually added or removed is recorded as a
/// label event by the token's user; `updated_at` is bumped only if something changed.
pub(super) fn put_issue(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    const KEYS: [&str; 10] = [
        "title",
        "description",
        "labels",
        "add_labels",
        "remove_labels",
        "assignee_id",
        "assignee_ids",
        "confidential",
        "state_event",
        "discussion_locked",
    ];
    let key = find_issue_key(w, project, iid)?;
    let params = ctx.params()?;

    // Validate everything before touching the world.
    let provided = KEYS
        .iter()
        .any(|k| params.get(k).is_some() || params.get(&format!("{k}[]")).is_some());
    if !provided {
        return Err(Reply::error(
            400,
            &format!(
                "{}, {} are missing, at least one parameter must be provided",
                KEYS[..KEYS.len() - 1].join(", "),
                KEYS[KEYS.len() - 1]
            ),
        ));
    }
    let title = params.get("title").map(str::to_owned);
    if title.as_deref().is_some_and(|t| t.trim().is_empty()) {
        return Err(blank_title());
    }
    let description = params.get("description").map(str::to_owned);
    let set_labels = params.list("labels");
    let add_labels = params.list("add_labels");
    let remove_labels = params.list("remove_labels");
    let assignee_ids = assignee_ids_param(w, &params)?;
    let confidential = params.bool("confidential")?;
    // Accepted (and validated) but not modelled.
    params.bool("discussion_locked")?;
    let state_event = params.one_of("state_event", &["close", "reopen"])?;

    let bot = w.bot_id;
    let World { issues, clock, .. } = &mut *w;
    let issue = issues.get_mut(&key).expect("looked up above");
    let before = (
        issue.title.clone(),
        issue.description.clone(),
        issue.labels.clone(),
        issue.assignee_ids.clone(),
        issue.confidential,
        issue.state.clone(),
    );
    if let Some(title) = title {
        issue.title = title;
    }
    if let Some(description) = description {
        issue.description = Some(description);
    }
    if let Some(labels) = set_labels {
        issue.labels = labels;
    }
    if let Some(add) = add_labels {
        issue.labels.extend(add);
    }
    if let Some(remove) = remove_labels {
        issue.labels.retain(|l| !remove.contains(l));
    }
    normalize_labels(&mut issue.labels);
    if let Some(ids) = assignee_ids {
        issue.assignee_ids = ids;
    }
    if let Some(confidential) = confidential {
        issue.confidential = confidential;
    }
    match (state_event.as_deref(), issue.state.as_str()) {
        (Some("close"), "opened") => issue.state = "closed".to_owned(),
        (Some("reopen"), "closed") => issue.state = "opened".to_owned(),
        _ => {}
    }
    let after = (
        issue.title.clone(),
        issue.description.clone(),
        issue.labels.clone(),
        issue.assignee_ids.clone(),
        issue.confidential,
        issue.state.clone(),
    );
    if before != after {
        let now = clock.tick();
        issue.updated_at = now;
        if before.5 != after.5 {
            let closed = issue.state == "closed";
            issue.closed_at = closed.then_some(now);
            issue.closed_by = closed.then_some(bot);
        }
        let labels_after = issue.labels.clone();
        let closed = (before.5 != after.5).then_some(after.5 == "closed");
        w.record_label_changes(key, &before.2, &labels_after, bot, now);
        if let Some(closed) = closed {
            let id = w.alloc_object_id();
            w.issue_mut_or_panic(key.0, key.1)
                .state_events
                .push(StateEvent {
                    id,
                    user_id: bot,
                    created_at: now,
                    state: if closed { "closed" } else { "reopened" },
                });
        }
    }
    Ok(Reply::json(200, issue_json(w, &w.issues[&key])))
}

/// `GET /projects/:id/issues/:iid/notes` (`sort=asc|desc`, `order_by=created_at|updated_at`)
pub(super) fn list_issue_notes(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let issue = &w.issues[&key];
    let notes = sorted_notes(ctx, &issue.notes)?;
    let noteable = Noteable::of_issue(issue);
    paginate(w, ctx, &notes, |n| note_json(w, &noteable, n))
}

/// `POST /projects/:id/issues/:iid/notes` with `body` and optional `internal` (or the
/// deprecated `confidential`), form or JSON; authored by the token's user.
pub(super) fn post_issue_note(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let (project_id, iid) = find_issue_key(w, project, iid)?;
    let params = ctx.params()?;
    let body = note_body_param(&params)?;
    let internal = note_internal_param(&params)?;
    let note_id = w.create_issue_note(project_id, iid, w.bot_id, &body, false, internal);
    w.posted_notes.push(PostedNote {
        id: note_id,
        on: NoteOn::Issue { project_id, iid },
        body: body.clone(),
    });
    let issue = &w.issues[&(project_id, iid)];
    let note = issue
        .notes
        .iter()
        .find(|n| n.id == note_id)
        .expect("just created");
    Ok(Reply::json(
        201,
        note_json(w, &Noteable::of_issue(issue), note),
    ))
}

/// `GET /projects/:id/issues/:iid/links`: the linked issues (not paginated, as in GitLab),
/// each with `issue_link_id`, `link_type`, `link_created_at` and `link_updated_at`.
pub(super) fn list_issue_links(w: &mut World, project: &str, iid: &str) -> HandlerResult {
    let key = find_issue_key(w, project, iid)?;
    let body: Vec<Value> = w.issues[&key]
        .links
        .iter()
        .filter_map(|link| {
            let target = w.issues.get(&link.target)?;
            let mut v = issue_json(w, target);
            v["issue_link_id"] = json!(link.id);
            v["link_type"] = json!(link.link_type);
            v["link_created_at"] = json!(fmt_time(link.created_at));
            v["link_updated_at"] = json!(fmt_time(link.created_at));
            Some(v)
        })
        .collect();
    Ok(Reply::json(200, Value::Array(body)))
}

/// `POST /projects/:id/issues/:iid/links` with `target_project_id` (id or path),
/// `target_issue_iid` and optional `link_type` (`relates_to`, `blocks`, `is_blocked_by`).
/// Links both issues; 409 if they are linked already.
pub(super) fn post_issue_link(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let source = find_issue_key(w, project, iid)?;
    let params = ctx.params()?;
    let target_project = params
        .get("target_project_id")
        .ok_or_else(|| Reply::error(400, "target_project_id is missing"))?;
    let target_iid = params
        .get("target_issue_iid")
        .ok_or_else(|| Reply::error(400, "target_issue_iid is missing"))?;
    let link_type = params
        .one_of("link_type", &["relates_to", "blocks", "is_blocked_by"])?
        .unwrap_or_else(|| "relates_to".to_owned());
    let target = find_issue_key(w, target_project, target_iid)?;
    if target == source {
        return Err(Reply::message(
            404,
            "No matching issue found. Make sure that you are adding a valid issue URL.",
        ));
    }
    if w.issues[&source].links.iter().any(|l| l.target == target) {
        return Err(Reply::message(409, "Issue(s) already assigned"));
    }
    let reverse_type = match link_type.as_str() {
        "blocks" => "is_blocked_by",
        "is_blocked_by" => "blocks",
        other => other,
    }
    .to_owned();

    let id = w.alloc_object_id();
    let now = w.clock.tick();
    for (from, to, link_type) in [
        (source, target, link_type.clone()),
        (target, source, reverse_type),
    ] {
        w.issue_mut_or_panic(from.0, from.1).links.push(IssueLink {
            id,
            target: to,
            link_type,
            created_at: now,
        });
    }
    Ok(Reply::json(
        201,
        json!({
            "source_issue": issue_json(w, &w.issues[&source]),
            "target_issue": issue_json(w, &w.issues[&target]),
            "link_type": link_type,
        }),
    ))
}
