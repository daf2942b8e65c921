//! Handlers: group and project labels and webhooks.

use super::*;

/// A label of a group or project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelState {
    pub id: u64,
    pub name: String,
    pub color: String,
    pub description: String,
}

/// A webhook of a group or project (the secret token is write-only, as in GitLab).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookState {
    pub id: u64,
    pub url: String,
    pub token: Option<String>,
    pub events: BTreeMap<String, bool>,
    /// Project hooks: only pushes to matching branches are sent (`*` wildcards).
    pub push_events_branch_filter: Option<String>,
}

pub(super) const HOOK_EVENTS: &[&str] = &[
    "push_events",
    "merge_requests_events",
    "issues_events",
    "confidential_issues_events",
    "note_events",
    "confidential_note_events",
    "tag_push_events",
    "pipeline_events",
    "job_events",
    "wiki_page_events",
];

pub(super) fn owner_key(w: &World, kind: &str, owner: &str) -> Result<String, Reply> {
    let id = if kind == "groups" {
        lookup_group(w, owner)?.id
    } else {
        lookup_project(w, owner)?
    };
    Ok(format!("{kind}/{id}"))
}

pub(super) fn label_json(l: &LabelState) -> Value {
    json!({"id": l.id, "name": l.name, "color": l.color, "text_color": "#FFFFFF",
           "description": l.description, "description_html": l.description,
           "open_issues_count": 0, "closed_issues_count": 0, "open_merge_requests_count": 0,
           "subscribed": false, "priority": null, "is_project_label": false})
}

/// `GET /<owner>/labels`: the owner's labels, then (unless `include_ancestor_groups=false`,
/// GitLab's default being true) those of its ancestor groups, nearest first.
pub(super) fn list_labels(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let own: Vec<(LabelState, bool)> = w
        .labels
        .get(key)
        .into_iter()
        .flatten()
        .map(|l| (l.clone(), key.starts_with("projects/")))
        .collect();
    let mut items = own;
    if ctx.query.bool("include_ancestor_groups")?.unwrap_or(true) {
        let path = match key.split_once('/') {
            Some(("projects", id)) => id.parse().map(|id| w.project_path(id)).unwrap_or_default(),
            Some(("groups", id)) => id
                .parse::<u64>()
                .ok()
                .and_then(|id| w.groups.get(&id))
                .map(|g| g.full_path.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        let mut ancestors: Vec<&Group> = w
            .groups
            .values()
            .filter(|g| path.starts_with(&format!("{}/", g.full_path)))
            .collect();
        ancestors.sort_by_key(|g| std::cmp::Reverse(g.full_path.len()));
        for g in ancestors {
            items.extend(
                w.labels
                    .get(&format!("groups/{}", g.id))
                    .into_iter()
                    .flatten()
                    .map(|l| (l.clone(), false)),
            );
        }
    }
    paginate(w, ctx, &items, |(l, is_project_label)| {
        let mut v = label_json(l);
        v["is_project_label"] = json!(*is_project_label);
        v
    })
}

pub(super) fn create_label(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let p = ctx.params()?;
    let name = p
        .get("name")
        .ok_or_else(|| Reply::error(400, "name is missing"))?
        .to_owned();
    let color = p
        .get("color")
        .ok_or_else(|| Reply::error(400, "color is missing"))?
        .to_owned();
    if w.labels
        .get(key)
        .is_some_and(|ls| ls.iter().any(|l| l.name == name))
    {
        return Err(Reply::message(409, "Label already exists"));
    }
    let id = w.next_object_id;
    w.next_object_id += 1;
    let l = LabelState {
        id,
        name,
        color,
        description: p.get("description").unwrap_or("").to_owned(),
    };
    w.labels.entry(key.to_owned()).or_default().push(l.clone());
    Ok(Reply::json(201, label_json(&l)))
}

pub(super) fn update_label(w: &mut World, ctx: &Ctx<'_>, key: &str, id: &str) -> HandlerResult {
    let p = ctx.params()?;
    let l = w
        .labels
        .get_mut(key)
        .and_then(|ls| {
            ls.iter_mut()
                .find(|l| l.id.to_string() == id || l.name == id)
        })
        .ok_or_else(|| Reply::message(404, "404 Label Not Found"))?;
    if let Some(c) = p.get("new_color").or(p.get("color")) {
        l.color = c.to_owned();
    }
    if let Some(d) = p.get("description") {
        l.description = d.to_owned();
    }
    let l = l.clone();
    Ok(Reply::json(200, label_json(&l)))
}

pub(super) fn hook_json(h: &HookState) -> Value {
    let mut v = json!({"id": h.id, "url": h.url, "enable_ssl_verification": true,
                       "created_at": "2026-01-01T00:00:00.000Z", "alert_status": "executable",
                       "push_events_branch_filter": h.push_events_branch_filter.clone().unwrap_or_default(),
                       "branch_filter_strategy": "wildcard"});
    for e in HOOK_EVENTS {
        v[*e] = json!(h.events.get(*e).copied().unwrap_or(false));
    }
    v
}

pub(super) fn hook_events(p: &Params, base: &BTreeMap<String, bool>) -> BTreeMap<String, bool> {
    let mut events = base.clone();
    for e in HOOK_EVENTS {
        if let Ok(Some(v)) = p.bool(e) {
            events.insert(e.to_string(), v);
        } else if !events.contains_key(*e) {
            // GitLab's default: push events on, the rest off.
            events.insert(e.to_string(), *e == "push_events");
        }
    }
    events
}

pub(super) fn create_hook(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let p = ctx.params()?;
    let url = p
        .get("url")
        .ok_or_else(|| Reply::error(400, "url is missing"))?
        .to_owned();
    let id = w.next_object_id;
    w.next_object_id += 1;
    let h = HookState {
        id,
        url,
        token: p.get("token").map(str::to_owned),
        events: hook_events(&p, &BTreeMap::new()),
        push_events_branch_filter: p
            .get("push_events_branch_filter")
            .filter(|f| !f.is_empty())
            .map(str::to_owned),
    };
    w.hooks.entry(key.to_owned()).or_default().push(h.clone());
    Ok(Reply::json(201, hook_json(&h)))
}

pub(super) fn update_hook(w: &mut World, ctx: &Ctx<'_>, key: &str, id: &str) -> HandlerResult {
    let p = ctx.params()?;
    let h = w
        .hooks
        .get_mut(key)
        .and_then(|hs| hs.iter_mut().find(|h| h.id.to_string() == id))
        .ok_or_else(|| Reply::message(404, "404 Not found"))?;
    if let Some(u) = p.get("url") {
        h.url = u.to_owned();
    }
    if let Some(t) = p.get("token") {
        h.token = Some(t.to_owned());
    }
    h.events = hook_events(&p, &h.events);
    if let Some(f) = p.get("push_events_branch_filter") {
        h.push_events_branch_filter = Some(f.to_owned()).filter(|f| !f.is_empty());
    }
    let h = h.clone();
    Ok(Reply::json(200, hook_json(&h)))
}
