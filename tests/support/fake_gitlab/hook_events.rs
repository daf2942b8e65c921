//! GitLab's record of the webhook calls it made (`GET /projects/:id/hooks/:hook_id/events`,
//! `GET /groups/:id/hooks/:hook_id/events`, GitLab 17.3+, last 7 days, newest first, filter
//! `status`: `successful`, `client_failure` (4xx), `server_failure` (5xx, and "internal error",
//! GitLab's status for a call that got no answer), or a numeric code), and the state GitLab
//! keeps per hook (`alert_status`, `disabled_until`).
//!
//! [`FakeGitLab::send_deliveries`] records each call's outcome here. With
//! [`FakeGitLab::set_auto_disable_hooks`] on, a hook failing 4 times in a row is temporarily
//! disabled (1 minute, doubling per further failure, at most 24 hours) and after 40 failures
//! for good, as GitLab does; a disabled hook is not called, so nothing is recorded for it.
//! [`FakeGitLab::set_hook_events_api`] makes the events API answer like an older GitLab (404)
//! or a token without the Maintainer role (403).
//!
//! Also the user actions whose webhooks the drills need beyond `deliveries`: a comment on an
//! MR (Note Hook) and an edit of an MR (Merge Request Hook, `action: update`).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::{
    fixture, fmt_time, hook_json, paginate, Ctx, Delivery, FakeGitLab, HandlerResult, HookState,
    Reply, World, WEB_BASE,
};

/// One recorded webhook call.
#[derive(Debug, Clone, PartialEq)]
pub struct HookEvent {
    pub id: u64,
    /// `groups/50/hooks/7`.
    pub hook: String,
    pub url: String,
    pub trigger: String,
    pub request_headers: Vec<(String, String)>,
    pub request_data: Value,
    /// `"200"`, `"500"`, or `"internal error"` when the call got no answer.
    pub response_status: String,
    pub response_body: String,
    pub execution_duration: f64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
struct Health {
    failures: u32,
    disabled_for_good: bool,
    disabled_until: Option<DateTime<Utc>>,
}

/// The events and hook states of the world.
#[derive(Debug, Default)]
pub struct HookLog {
    events: Vec<HookEvent>,
    next_id: u64,
    health: BTreeMap<String, Health>,
    auto_disable: bool,
    /// `Some(status)`: the events API answers this (404 older GitLab, 403 role missing).
    api_missing: Option<u16>,
    /// Hook tests made, by owner, for the rate limit (see `hook_test`).
    pub(super) tests: Vec<(String, DateTime<Utc>)>,
    /// A hook test to call once the world is unlocked.
    pub(super) pending_test: Option<Delivery>,
}

const TEMPORARY_DISABLE_AFTER: u32 = 4;
const PERMANENT_DISABLE_AFTER: u32 = 40;

impl HookLog {
    fn alert_status(
        &self,
        hook: &str,
        now: DateTime<Utc>,
    ) -> (&'static str, Option<DateTime<Utc>>) {
        match self.health.get(hook) {
            Some(h) if h.disabled_for_good => ("disabled", None),
            Some(Health {
                disabled_until: Some(t),
                ..
            }) if *t > now => ("temporarily_disabled", Some(*t)),
            _ => ("executable", None),
        }
    }

    /// GitLab does not call a disabled hook.
    pub(super) fn is_disabled(&self, hook: &str, now: DateTime<Utc>) -> bool {
        self.alert_status(hook, now).0 != "executable"
    }

    fn record_outcome(&mut self, hook: &str, ok: bool, now: DateTime<Utc>) {
        let auto = self.auto_disable;
        let h = self.health.entry(hook.to_owned()).or_default();
        if ok {
            *h = Health::default();
            return;
        }
        h.failures += 1;
        if !auto {
            return;
        }
        if h.failures >= PERMANENT_DISABLE_AFTER {
            h.disabled_for_good = true;
        } else if h.failures >= TEMPORARY_DISABLE_AFTER {
            let doublings = (h.failures - TEMPORARY_DISABLE_AFTER).min(11);
            let minutes = (1i64 << doublings).min(24 * 60);
            h.disabled_until = Some(now + TimeDelta::minutes(minutes));
        }
    }
}

/// `merge_requests_events` → `merge_request_hooks` (GitLab's `trigger` names).
pub(super) fn trigger_of(flag: &str) -> String {
    match flag {
        "merge_requests_events" => "merge_request_hooks".into(),
        "issues_events" => "issue_hooks".into(),
        "confidential_issues_events" => "confidential_issue_hooks".into(),
        "note_events" => "note_hooks".into(),
        "confidential_note_events" => "confidential_note_hooks".into(),
        other => other.replace("_events", "_hooks"),
    }
}

impl World {
    /// Records one call of `d` and what it got (`None`: no answer).
    pub(super) fn record_hook_call(
        &mut self,
        d: &Delivery,
        headers: &[(String, String)],
        answer: Option<(u16, String)>,
        duration_ms: f64,
    ) {
        let now = self.clock.tick();
        let ok = matches!(answer, Some((s, _)) if (200..300).contains(&s));
        let (status, body) = match answer {
            Some((s, b)) => (s.to_string(), b),
            None => ("internal error".to_owned(), "connection refused".to_owned()),
        };
        let log = &mut self.hook_log;
        log.next_id += 1;
        log.events.push(HookEvent {
            id: log.next_id,
            hook: d.hook.clone(),
            url: d.url.clone(),
            trigger: d.trigger.clone(),
            request_headers: headers
                .iter()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("x-gitlab-token") {
                        "[REDACTED]".to_owned()
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect(),
            request_data: d.body.clone(),
            response_status: status,
            response_body: body,
            execution_duration: duration_ms,
            created_at: now,
        });
        log.record_outcome(&d.hook, ok, now);
    }

    fn hook_state_json(&self, owner: &str, h: &HookState) -> Value {
        let mut v = hook_json(h);
        let (status, until) = self
            .hook_log
            .alert_status(&format!("{owner}/hooks/{}", h.id), self.clock.peek());
        v["alert_status"] = status.into();
        v["disabled_until"] = until.map(fmt_time).into();
        v
    }
}

fn status_matches(filter: &str, status: &str) -> bool {
    let code: Option<u16> = status.parse().ok();
    match filter {
        "successful" => code.is_some_and(|c| (200..300).contains(&c)),
        "client_failure" => code.is_some_and(|c| (400..500).contains(&c)),
        "server_failure" => code.is_none_or(|c| (500..600).contains(&c)),
        n => n == status,
    }
}

/// `GET /<owner>/hooks`: as `list_hooks`, with each hook's `alert_status` and `disabled_until`.
pub(super) fn list_hooks(w: &mut World, ctx: &Ctx<'_>, key: &str) -> HandlerResult {
    let items: Vec<Value> = w
        .hooks
        .get(key)
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|h| w.hook_state_json(key, h))
        .collect();
    paginate(w, ctx, &items, Value::clone)
}

/// `GET /<owner>/hooks/:hook_id/events`.
pub(super) fn list_events(w: &mut World, ctx: &Ctx<'_>, key: &str, id: &str) -> HandlerResult {
    if let Some(status) = w.hook_log.api_missing {
        return Err(Reply::message(
            status,
            if status == 403 {
                "403 Forbidden"
            } else {
                "404 Not Found"
            },
        ));
    }
    let hook = format!("{key}/hooks/{id}");
    if !w
        .hooks
        .get(key)
        .is_some_and(|hs| hs.iter().any(|h| h.id.to_string() == id))
    {
        return Err(Reply::message(404, "404 Not found"));
    }
    let filters = ctx.query.list("status").unwrap_or_default();
    let week_ago = w.clock.peek() - TimeDelta::days(7);
    let mut items: Vec<HookEvent> = w
        .hook_log
        .events
        .iter()
        .filter(|e| e.hook == hook && e.created_at >= week_ago)
        .filter(|e| {
            filters.is_empty()
                || filters
                    .iter()
                    .any(|f| status_matches(f, &e.response_status))
        })
        .cloned()
        .collect();
    items.reverse(); // newest first
    paginate(w, ctx, &items, event_json)
}

fn event_json(e: &HookEvent) -> Value {
    let headers: serde_json::Map<String, Value> = e
        .request_headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": e.id,
        "url": e.url,
        "trigger": e.trigger,
        "request_headers": headers,
        "request_data": e.request_data,
        "response_headers": {},
        "response_body": e.response_body,
        "execution_duration": e.execution_duration,
        "response_status": e.response_status,
        "created_at": fmt_time(e.created_at),
    })
}

impl FakeGitLab {
    /// Every recorded webhook call, oldest first.
    pub fn hook_events(&self) -> Vec<HookEvent> {
        self.world().hook_log.events.clone()
    }

    /// GitLab's automatic disabling of failing hooks (off until turned on).
    pub fn set_auto_disable_hooks(&self, on: bool) {
        self.world().hook_log.auto_disable = on;
    }

    /// `Some(404)`: a GitLab without the events API; `Some(403)`: a token without the role.
    pub fn set_hook_events_api(&self, missing: Option<u16>) {
        self.world().hook_log.api_missing = missing;
    }

    /// `alert_status` and `disabled_until` of the hook `owner/hooks/id` as GitLab shows them.
    pub fn hook_alert(&self, owner: &str, id: u64) -> (String, Option<String>) {
        let w = self.world();
        let (s, until) = w
            .hook_log
            .alert_status(&format!("{owner}/hooks/{id}"), w.clock.peek());
        (s.to_owned(), until.map(fmt_time))
    }

    /// A user comments `body` on MR `!iid` in the UI: the note, then the Note Hook.
    pub fn comment_on_mr(&self, project_id: u64, iid: u64, author_id: u64, body: &str) -> u64 {
        let mut w = self.world();
        let note_id = w.create_mr_note(project_id, iid, author_id, body, false, false);
        let mr = &w.mrs[&(project_id, iid)];
        let (mr_id, mr_author, title, path, sha, source, target, state) = (
            mr.id,
            mr.author_id,
            mr.title.clone(),
            mr.project_path.clone(),
            mr.sha.clone(),
            mr.source_branch.clone(),
            mr.target_branch.clone(),
            mr.state.clone(),
        );
        let now = fmt_time(w.clock.peek());
        let mut v = fixture("payloads/note_merge_request.json");
        v["user"] = w.payload_user(author_id);
        v["project_id"] = project_id.into();
        v["project"] = w.payload_project(project_id);
        let a = &mut v["object_attributes"];
        a["id"] = note_id.into();
        a["note"] = body.into();
        a["noteable_type"] = "MergeRequest".into();
        a["author_id"] = author_id.into();
        a["project_id"] = project_id.into();
        a["noteable_id"] = mr_id.into();
        a["created_at"] = now.clone().into();
        a["updated_at"] = now.into();
        a["system"] = false.into();
        a["url"] = format!("{WEB_BASE}/{path}/-/merge_requests/{iid}#note_{note_id}").into();
        let m = &mut v["merge_request"];
        m["id"] = mr_id.into();
        m["iid"] = iid.into();
        m["author_id"] = mr_author.into();
        m["title"] = title.into();
        m["state"] = state.into();
        m["source_branch"] = source.into();
        m["target_branch"] = target.into();
        m["source_project_id"] = project_id.into();
        m["target_project_id"] = project_id.into();
        m["last_commit"]["id"] = sha.into();
        w.queue_delivery(project_id, "note_events", "Note Hook", v, None);
        note_id
    }

    /// A user edits MR `!iid` (its title) in the UI: the Merge Request Hook, `action: update`.
    pub fn edit_mr_title(&self, project_id: u64, iid: u64, title: &str) {
        let mut w = self.world();
        let now = w.clock.tick();
        let mr = w.mr_mut_or_panic(project_id, iid);
        mr.title = title.to_owned();
        mr.updated_at = now;
        w.queue_mr_hook((project_id, iid), "update");
    }
}
