//! Handlers: merge requests (listing filters shared with issues, edit, notes).

use super::*;

/// Where a merge request or issue list endpoint looks.
pub(super) enum ListScope {
    /// `GET /merge_requests`, `GET /issues` (default `scope=created_by_me`).
    Instance,
    /// `GET /groups/:id/{merge_requests,issues}`: projects under this full path.
    Group(String),
    /// `GET /projects/:id/{merge_requests,issues}`.
    Project(u64),
}

/// One filter of a listing.
pub(super) type Predicate<T> = Box<dyn Fn(&T) -> bool>;
pub(super) type MrPredicate = Predicate<Mr>;

/// Builds the filters of the merge request list endpoints from the query.
pub(super) fn mr_list_filters(
    w: &World,
    q: &Params,
    scope: &ListScope,
) -> Result<Vec<MrPredicate>, Reply> {
    let mut preds: Vec<MrPredicate> = Vec::new();
    match scope {
        ListScope::Instance => {}
        ListScope::Group(full_path) => {
            let prefix = format!("{full_path}/");
            preds.push(Box::new(move |mr| mr.project_path.starts_with(&prefix)));
        }
        ListScope::Project(project_id) => {
            let project_id = *project_id;
            preds.push(Box::new(move |mr| mr.project_id == project_id));
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
                "reviews_for_me",
                "all",
            ],
        )?
        .unwrap_or_else(|| default_scope.to_owned());
    let bot = w.bot_id;
    match user_scope.replace('-', "_").as_str() {
        "created_by_me" => preds.push(Box::new(move |mr| mr.author_id == bot)),
        // The fake has no assignees.
        "assigned_to_me" => preds.push(Box::new(|_| false)),
        "reviews_for_me" => preds.push(Box::new(move |mr| mr.reviewer_ids.contains(&bot))),
        _ => {}
    }

    shared_list_filters(
        w,
        q,
        &["opened", "closed", "locked", "merged", "all"],
        &mut preds,
    )?;
    match q.get("reviewer_id") {
        None => {}
        Some(v) if v.eq_ignore_ascii_case("none") => {
            preds.push(Box::new(|mr| mr.reviewer_ids.is_empty()));
        }
        Some(v) if v.eq_ignore_ascii_case("any") => {
            preds.push(Box::new(|mr| !mr.reviewer_ids.is_empty()));
        }
        Some(_) => {
            let reviewer = q.u64("reviewer_id")?.unwrap_or_default();
            preds.push(Box::new(move |mr| mr.reviewer_ids.contains(&reviewer)));
        }
    }
    if let Some(username) = q.get("reviewer_username") {
        let reviewer = w.user_by_username(username).map(|u| u.spec.id);
        preds.push(Box::new(move |mr| {
            reviewer.is_some_and(|id| mr.reviewer_ids.contains(&id))
        }));
    }
    for (key, is_source) in [("source_branch", true), ("target_branch", false)] {
        if let Some(branch) = q.get(key).map(str::to_owned) {
            preds.push(Box::new(move |mr| {
                let actual = if is_source {
                    &mr.source_branch
                } else {
                    &mr.target_branch
                };
                *actual == branch
            }));
        }
    }
    if let Some(wip) = q.one_of("wip", &["yes", "no"])? {
        let want_draft = wip == "yes";
        preds.push(Box::new(move |mr| mr.draft == want_draft));
    }
    Ok(preds)
}

/// What the MR and issue listings filter alike.
pub(super) trait Listed: 'static {
    fn iid(&self) -> u64;
    fn author_id(&self) -> u64;
    fn state(&self) -> &str;
    fn labels(&self) -> &[String];
    fn created_at(&self) -> DateTime<Utc>;
    fn updated_at(&self) -> DateTime<Utc>;
}

macro_rules! listed {
    ($t:ty) => {
        impl Listed for $t {
            fn iid(&self) -> u64 {
                self.iid
            }
            fn author_id(&self) -> u64 {
                self.author_id
            }
            fn state(&self) -> &str {
                &self.state
            }
            fn labels(&self) -> &[String] {
                &self.labels
            }
            fn created_at(&self) -> DateTime<Utc> {
                self.created_at
            }
            fn updated_at(&self) -> DateTime<Utc> {
                self.updated_at
            }
        }
    };
}
listed!(Mr);
listed!(Issue);

/// The filters both listings share: `state` (one of `states`), `labels`, `author_id`,
/// `author_username`, the `created_*`/`updated_*` windows and `iids`.
pub(super) fn shared_list_filters<T: Listed>(
    w: &World,
    q: &Params,
    states: &[&str],
    preds: &mut Vec<Predicate<T>>,
) -> Result<(), Reply> {
    if let Some(state) = q.one_of("state", states)? {
        if state != "all" {
            preds.push(Box::new(move |x| x.state() == state));
        }
    }
    if let Some(labels) = q.list("labels") {
        match labels.as_slice() {
            [only] if only.eq_ignore_ascii_case("none") => {
                preds.push(Box::new(|x| x.labels().is_empty()));
            }
            [only] if only.eq_ignore_ascii_case("any") => {
                preds.push(Box::new(|x| !x.labels().is_empty()));
            }
            _ => preds.push(Box::new(move |x| {
                labels.iter().all(|l| x.labels().contains(l))
            })),
        }
    }
    if let Some(author_id) = q.u64("author_id")? {
        preds.push(Box::new(move |x| x.author_id() == author_id));
    }
    if let Some(username) = q.get("author_username") {
        let author = w.user_by_username(username).map(|u| u.spec.id);
        preds.push(Box::new(move |x| Some(x.author_id()) == author));
    }
    // GitLab's finders compare inclusively.
    if let Some(t) = q.time("updated_after")? {
        preds.push(Box::new(move |x| x.updated_at() >= t));
    }
    if let Some(t) = q.time("updated_before")? {
        preds.push(Box::new(move |x| x.updated_at() <= t));
    }
    if let Some(t) = q.time("created_after")? {
        preds.push(Box::new(move |x| x.created_at() >= t));
    }
    if let Some(t) = q.time("created_before")? {
        preds.push(Box::new(move |x| x.created_at() <= t));
    }
    if let Some(iids) = q.list("iids") {
        let iids: Vec<u64> = iids
            .iter()
            .map(|v| v.parse().map_err(|_| invalid_param("iids")))
            .collect::<Result<_, _>>()?;
        preds.push(Box::new(move |x| iids.contains(&x.iid())));
    }
    Ok(())
}

/// GitLab's list order: `order_by=created_at|updated_at` (default created_at), `sort=asc|desc`
/// (default desc), ties broken by id. `times` gives (created_at, updated_at, id).
pub(super) fn sort_listing<T>(
    q: &Params,
    items: &mut [&T],
    times: impl Fn(&T) -> (DateTime<Utc>, DateTime<Utc>, u64),
) -> Result<(), Reply> {
    let by_updated = q
        .one_of("order_by", &["created_at", "updated_at"])?
        .as_deref()
        == Some("updated_at");
    let ascending = q.one_of("sort", &["asc", "desc"])?.as_deref() == Some("asc");
    items.sort_by_key(|x| {
        let (created, updated, id) = times(x);
        (if by_updated { updated } else { created }, id)
    });
    if !ascending {
        items.reverse();
    }
    Ok(())
}

/// `GET /merge_requests`, `GET /groups/:id/merge_requests`, `GET /projects/:id/merge_requests`
pub(super) fn list_mrs(w: &mut World, ctx: &Ctx<'_>, scope: ListScope) -> HandlerResult {
    let preds = mr_list_filters(w, &ctx.query, &scope)?;
    let mut mrs: Vec<&Mr> = w
        .mrs
        .values()
        .filter(|mr| preds.iter().all(|p| p(mr)))
        .collect();
    sort_listing(&ctx.query, &mut mrs, |mr| {
        (mr.created_at, mr.updated_at, mr.id)
    })?;
    paginate(w, ctx, &mrs, |mr| mr_json(w, mr))
}

/// `GET /projects/:id/merge_requests/:iid`
pub(super) fn get_mr(w: &mut World, project: &str, iid: &str) -> HandlerResult {
    let key = find_mr_key(w, project, iid)?;
    Ok(Reply::json(200, mr_json(w, &w.mrs[&key])))
}

/// `PUT /projects/:id/merge_requests/:iid`
///
/// Supports `labels`, `add_labels`, `remove_labels` (comma lists or arrays), `reviewer_ids`
/// (`reviewer_ids[]=..` repeated, comma list, or `0`/empty for none), `state_event`
/// (`close`/`reopen`), `title`, `description`, `target_branch`. `updated_at` is bumped only
/// if something changed.
pub(super) fn put_mr(w: &mut World, ctx: &Ctx<'_>, project: &str, iid: &str) -> HandlerResult {
    const KEYS: [&str; 8] = [
        "labels",
        "add_labels",
        "remove_labels",
        "reviewer_ids",
        "state_event",
        "title",
        "description",
        "target_branch",
    ];
    let key = find_mr_key(w, project, iid)?;
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
    let set_labels = params.list("labels");
    let add_labels = params.list("add_labels");
    let remove_labels = params.list("remove_labels");
    let reviewer_ids = match params.list("reviewer_ids") {
        None => None,
        Some(raw) => {
            let mut ids = Vec::new();
            for v in raw {
                let id: u64 = v.parse().map_err(|_| invalid_param("reviewer_ids"))?;
                // 0 means "nobody"; GitLab silently drops ids of unknown users.
                if id != 0 && w.users.contains_key(&id) {
                    ids.push(id);
                }
            }
            dedup_keep_order(&mut ids);
            Some(ids)
        }
    };
    let state_event = params.one_of("state_event", &["close", "reopen"])?;
    let title = params.get("title").map(str::to_owned);
    let description = params.get("description").map(str::to_owned);
    let target_branch = params.get("target_branch").map(str::to_owned);

    let World { mrs, clock, .. } = &mut *w;
    let mr = mrs.get_mut(&key).expect("looked up above");
    let before = (
        mr.labels.clone(),
        mr.reviewer_ids.clone(),
        mr.state.clone(),
        mr.title.clone(),
        mr.description.clone(),
        mr.target_branch.clone(),
    );
    if let Some(labels) = set_labels {
        mr.labels = labels;
    }
    if let Some(add) = add_labels {
        mr.labels.extend(add);
    }
    if let Some(remove) = remove_labels {
        mr.labels.retain(|l| !remove.contains(l));
    }
    normalize_labels(&mut mr.labels);
    if let Some(ids) = reviewer_ids {
        mr.reviewer_ids = ids;
    }
    match (state_event.as_deref(), mr.state.as_str()) {
        (Some("close"), "opened") => mr.state = "closed".to_owned(),
        (Some("reopen"), "closed") => mr.state = "opened".to_owned(),
        _ => {}
    }
    if let Some(title) = title {
        mr.draft = is_draft_title(&title);
        mr.title = title;
    }
    if let Some(description) = description {
        mr.description = description;
    }
    if let Some(target_branch) = target_branch {
        mr.target_branch = target_branch;
    }
    let after = (
        mr.labels.clone(),
        mr.reviewer_ids.clone(),
        mr.state.clone(),
        mr.title.clone(),
        mr.description.clone(),
        mr.target_branch.clone(),
    );
    if before != after {
        mr.updated_at = clock.tick();
    }

    let mr = &w.mrs[&key];
    let mut body = mr_json(w, mr);
    body["diverged_commits_count"] = json!(0);
    Ok(Reply::json(200, body))
}

/// `GET /projects/:id/merge_requests/:iid/notes` (`sort=asc|desc`, `order_by=created_at|updated_at`)
pub(super) fn list_mr_notes(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let key = find_mr_key(w, project, iid)?;
    let mr = &w.mrs[&key];
    let notes = sorted_notes(ctx, &mr.notes)?;
    let noteable = Noteable::of_mr(mr);
    paginate(w, ctx, &notes, |n| note_json(w, &noteable, n))
}

/// Notes ordered by the query's `order_by` (`created_at`|`updated_at`) and `sort`
/// (`asc`|`desc`, default `desc` as in GitLab).
pub(super) fn sorted_notes<'n>(ctx: &Ctx<'_>, notes: &'n [Note]) -> Result<Vec<&'n Note>, Reply> {
    let order_by = ctx
        .query
        .one_of("order_by", &["created_at", "updated_at"])?
        .unwrap_or_else(|| "created_at".to_owned());
    let ascending = ctx.query.one_of("sort", &["asc", "desc"])?.as_deref() == Some("asc");
    let mut notes: Vec<&Note> = notes.iter().collect();
    notes.sort_by_key(|n| {
        let t = if order_by == "updated_at" {
            n.updated_at
        } else {
            n.created_at
        };
        (t, n.id)
    });
    if !ascending {
        notes.reverse();
    }
    Ok(notes)
}

/// The `body` of a note creation request (400 if missing or blank).
pub(super) fn note_body_param(params: &Params) -> Result<String, Reply> {
    let body = params
        .get("body")
        .ok_or_else(|| Reply::error(400, "body is missing"))?;
    if body.trim().is_empty() {
        return Err(Reply::error(400, "body is empty"));
    }
    Ok(body.to_owned())
}

/// The `internal` flag of a note creation request: `internal`, else the deprecated
/// `confidential` ("`internal` overrides `confidential` when both parameters are submitted";
/// default false), as in doc/api/notes.md.
pub(super) fn note_internal_param(params: &Params) -> Result<bool, Reply> {
    Ok(match params.bool("internal")? {
        Some(v) => v,
        None => params.bool("confidential")?.unwrap_or(false),
    })
}

/// `POST /projects/:id/merge_requests/:iid/notes` with `body` and optional `internal` (or the
/// deprecated `confidential`), form or JSON; authored by the token's user.
pub(super) fn post_mr_note(
    w: &mut World,
    ctx: &Ctx<'_>,
    project: &str,
    iid: &str,
) -> HandlerResult {
    let (project_id, iid) = find_mr_key(w, project, iid)?;
    let params = ctx.params()?;
    let body = note_body_param(&params)?;
    let internal = note_internal_param(&params)?;
    let note_id = w.create_mr_note(project_id, iid, w.bot_id, &body, false, internal);
    w.posted_notes.push(PostedNote {
        id: note_id,
        on: NoteOn::MergeRequest { project_id, iid },
        body: body.clone(),
    });
    let mr = &w.mrs[&(project_id, iid)];
    let note = mr
        .notes
        .iter()
        .find(|n| n.id == note_id)
        .expect("just created");
    Ok(Reply::json(201, note_json(w, &Noteable::of_mr(mr), note)))
}
