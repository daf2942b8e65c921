//! The world the fake serves: users, groups, MRs, issues, notes, the clock, faults, and the
//! bookkeeping that creates notes and records label changes.

use super::*;

pub(super) struct User {
    pub(super) spec: UserSpec,
    pub(super) availability: String,
    pub(super) created_at: DateTime<Utc>,
}

pub(super) struct Group {
    pub(super) id: u64,
    pub(super) full_path: String,
    /// `(user id, access level)`.
    pub(super) members: Vec<(u64, u64)>,
}

pub(super) struct Mr {
    pub(super) id: u64,
    pub(super) iid: u64,
    pub(super) project_id: u64,
    pub(super) project_path: String,
    pub(super) title: String,
    pub(super) description: String,
    pub(super) author_id: u64,
    pub(super) state: String,
    pub(super) draft: bool,
    pub(super) labels: Vec<String>,
    pub(super) reviewer_ids: Vec<u64>,
    pub(super) sha: String,
    pub(super) source_branch: String,
    pub(super) target_branch: String,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) notes: Vec<Note>,
}

pub(super) struct Issue {
    pub(super) id: u64,
    pub(super) iid: u64,
    pub(super) project_id: u64,
    pub(super) title: String,
    /// `None` if never given (GitLab renders `null`).
    pub(super) description: Option<String>,
    pub(super) author_id: u64,
    pub(super) state: String,
    pub(super) confidential: bool,
    pub(super) labels: Vec<String>,
    pub(super) assignee_ids: Vec<u64>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
    pub(super) closed_at: Option<DateTime<Utc>>,
    pub(super) closed_by: Option<u64>,
    pub(super) notes: Vec<Note>,
    pub(super) links: Vec<IssueLink>,
    pub(super) label_events: Vec<LabelEvent>,
    /// Closings and reopenings, oldest first (`resource_state_events`; the initial "opened"
    /// is not recorded, as in GitLab).
    pub(super) state_events: Vec<StateEvent>,
}

impl Issue {
    /// An opened issue without title, labels or notes.
    pub(super) fn new(
        id: u64,
        (project_id, iid): (u64, u64),
        author_id: u64,
        now: DateTime<Utc>,
    ) -> Self {
        Issue {
            id,
            iid,
            project_id,
            title: String::new(),
            description: None,
            author_id,
            state: "opened".to_owned(),
            confidential: false,
            labels: Vec::new(),
            assignee_ids: Vec::new(),
            created_at: now,
            updated_at: now,
            closed_at: None,
            closed_by: None,
            notes: Vec::new(),
            links: Vec::new(),
            label_events: Vec::new(),
            state_events: Vec::new(),
        }
    }
}

/// One entry of an issue's state history.
pub(super) struct StateEvent {
    pub(super) id: u64,
    pub(super) user_id: u64,
    pub(super) created_at: DateTime<Utc>,
    /// `"closed"` or `"reopened"`.
    pub(super) state: &'static str,
}

/// One side of an issue link (each linked issue holds one, with the same id).
pub(super) struct IssueLink {
    pub(super) id: u64,
    /// The other issue, `(project id, iid)`.
    pub(super) target: (u64, u64),
    /// From this issue's point of view: `relates_to`, `blocks` or `is_blocked_by`.
    pub(super) link_type: String,
    pub(super) created_at: DateTime<Utc>,
}

pub(super) struct LabelEvent {
    pub(super) id: u64,
    pub(super) user_id: u64,
    pub(super) created_at: DateTime<Utc>,
    /// The label as it was when the event was recorded.
    pub(super) label: LabelState,
    /// `"add"` or `"remove"`.
    pub(super) action: &'static str,
}

pub(super) struct Note {
    pub(super) id: u64,
    pub(super) author_id: u64,
    pub(super) body: String,
    pub(super) system: bool,
    pub(super) internal: bool,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

/// Strictly increasing millisecond timestamps; real time unless frozen.
pub(super) struct Clock {
    pub(super) frozen: Option<DateTime<Utc>>,
    pub(super) last: Option<DateTime<Utc>>,
}

impl Clock {
    pub(super) fn peek(&self) -> DateTime<Utc> {
        let now = self.frozen.unwrap_or_else(Utc::now);
        DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
    }

    pub(super) fn tick(&mut self) -> DateTime<Utc> {
        let base = self.peek();
        let t = match self.last {
            Some(last) if base <= last => last + TimeDelta::milliseconds(1),
            _ => base,
        };
        self.last = Some(t);
        t
    }
}

pub(super) struct FaultRule {
    pub(super) method: Option<String>,
    pub(super) path_prefix: Option<String>,
    /// Only a request carrying this `X-Gitlab-Event-UUID` (made on behalf of that event).
    pub(super) event_uuid: Option<String>,
    pub(super) fault: Fault,
}

impl FaultRule {
    pub(super) fn matches(&self, ctx: &Ctx<'_>) -> bool {
        self.method.as_deref().is_none_or(|m| m == ctx.method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| ctx.path.starts_with(p))
            && self
                .event_uuid
                .as_deref()
                .is_none_or(|u| ctx.header("x-gitlab-event-uuid") == Some(u))
    }
}

pub(super) struct FailureRate {
    pub(super) rate: f64,
    pub(super) state: u64,
    pub(super) failures: u64,
}

impl FailureRate {
    pub(super) fn roll(&mut self) -> Option<Fault> {
        // splitmix64
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        if unit >= self.rate {
            return None;
        }
        self.failures += 1;
        Some(if self.failures % 2 == 1 {
            Fault::Status(500)
        } else {
            Fault::RateLimited {
                retry_after_secs: 0,
            }
        })
    }
}

pub(super) struct World {
    pub(super) token: String,
    /// `http://127.0.0.1:PORT`, for absolute `Link` URLs.
    pub(super) base_url: String,
    pub(super) bot_id: u64,
    pub(super) users: BTreeMap<u64, User>,
    pub(super) groups: BTreeMap<u64, Group>,
    /// Project id -> `path_with_namespace`.
    pub(super) projects: BTreeMap<u64, String>,
    /// Project id -> `visibility` (`private` unless set).
    pub(super) visibility: BTreeMap<u64, String>,
    pub(super) mrs: BTreeMap<(u64, u64), Mr>,
    /// Issues by (project id, iid).
    pub(super) issues: BTreeMap<(u64, u64), Issue>,
    pub(super) next_issue_id: u64,
    /// Ids given to labels used on issues that exist neither in the project nor in an
    /// ancestor group (GitLab would create them), by name.
    pub(super) implicit_label_ids: BTreeMap<String, u64>,
    /// Commit statuses by (project id, sha), oldest first.
    pub(super) statuses: BTreeMap<(u64, String), Vec<CommitStatus>>,
    pub(super) next_status_id: u64,
    /// Labels and webhooks by owner ("groups/<id>" or "projects/<id>").
    pub(super) labels: BTreeMap<String, Vec<LabelState>>,
    pub(super) hooks: BTreeMap<String, Vec<HookState>>,
    /// Calls made and hook states (see `hook_events`).
    pub(super) hook_log: super::hook_events::HookLog,
    pub(super) next_object_id: u64,
    pub(super) next_note_id: u64,
    /// Every note created through the API (`POST .../notes`), oldest first.
    pub(super) posted_notes: Vec<PostedNote>,
    pub(super) clock: Clock,
    pub(super) calls: Vec<RecordedCall>,
    pub(super) faults: VecDeque<FaultRule>,
    pub(super) failure: Option<FailureRate>,
    /// Every answer waits at least this long (a far-away GitLab), see `set_latency`.
    pub(super) latency: Option<std::time::Duration>,
    /// Git repositories by project id (see `repository`).
    pub(super) repos: BTreeMap<u64, repository::Repo>,
    /// Webhook calls not yet sent (see `deliveries`).
    pub(super) deliveries: Vec<Delivery>,
    pub(super) next_delivery: u64,
}

impl World {
    pub(super) fn new(token: &str, base_url: &str) -> World {
        let clock = Clock {
            frozen: None,
            last: None,
        };
        let bot = User {
            spec: UserSpec {
                id: BOT_USER_ID,
                username: BOT_USERNAME.to_owned(),
                name: "Co-Create Bot".to_owned(),
                public_email: None,
                organization: None,
                bot: true,
            },
            availability: "not_set".to_owned(),
            created_at: clock.peek(),
        };
        World {
            token: token.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            bot_id: BOT_USER_ID,
            users: BTreeMap::from([(BOT_USER_ID, bot)]),
            groups: BTreeMap::new(),
            projects: BTreeMap::new(),
            visibility: BTreeMap::new(),
            mrs: BTreeMap::new(),
            issues: BTreeMap::new(),
            next_issue_id: FIRST_ISSUE_ID,
            implicit_label_ids: BTreeMap::new(),
            statuses: BTreeMap::new(),
            next_status_id: 1,
            labels: BTreeMap::new(),
            hooks: BTreeMap::new(),
            hook_log: Default::default(),
            next_object_id: 1,
            next_note_id: 1,
            posted_notes: Vec::new(),
            clock,
            calls: Vec::new(),
            faults: VecDeque::new(),
            failure: None,
            latency: None,
            repos: BTreeMap::new(),
            deliveries: Vec::new(),
            next_delivery: 0,
        }
    }

    pub(super) fn user_by_username(&self, username: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.spec.username.eq_ignore_ascii_case(username))
    }

    /// The user, or a placeholder for ids that were never added (so rendering never fails).
    pub(super) fn user_or_placeholder(&self, id: u64) -> User {
        match self.users.get(&id) {
            Some(u) => User {
                spec: u.spec.clone(),
                availability: u.availability.clone(),
                created_at: u.created_at,
            },
            None => User {
                spec: UserSpec {
                    id,
                    username: format!("user{id}"),
                    name: format!("User {id}"),
                    ..UserSpec::default()
                },
                availability: "not_set".to_owned(),
                created_at: self.clock.peek(),
            },
        }
    }

    pub(super) fn mr_mut_or_panic(&mut self, project_id: u64, iid: u64) -> &mut Mr {
        self.mrs
            .get_mut(&(project_id, iid))
            .unwrap_or_else(|| panic!("no merge request {project_id}!{iid}"))
    }

    /// A new note stamped with the clock's next tick.
    pub(super) fn new_note(
        &mut self,
        author_id: u64,
        body: &str,
        system: bool,
        internal: bool,
    ) -> Note {
        let now = self.clock.tick();
        let id = self.next_note_id;
        self.next_note_id += 1;
        Note {
            id,
            author_id,
            body: body.to_owned(),
            system,
            internal,
            created_at: now,
            updated_at: now,
        }
    }

    pub(super) fn create_mr_note(
        &mut self,
        project_id: u64,
        iid: u64,
        author_id: u64,
        body: &str,
        system: bool,
        internal: bool,
    ) -> u64 {
        let note = self.new_note(author_id, body, system, internal);
        let (id, now) = (note.id, note.created_at);
        let mr = self.mr_mut_or_panic(project_id, iid);
        mr.notes.push(note);
        // GitLab touches the noteable when a note is saved.
        mr.updated_at = now;
        id
    }

    pub(super) fn issue_mut_or_panic(&mut self, project_id: u64, iid: u64) -> &mut Issue {
        self.issues
            .get_mut(&(project_id, iid))
            .unwrap_or_else(|| panic!("no issue {project_id}#{iid}"))
    }

    pub(super) fn create_issue_note(
        &mut self,
        project_id: u64,
        iid: u64,
        author_id: u64,
        body: &str,
        system: bool,
        internal: bool,
    ) -> u64 {
        let note = self.new_note(author_id, body, system, internal);
        let (id, now) = (note.id, note.created_at);
        let issue = self.issue_mut_or_panic(project_id, iid);
        issue.notes.push(note);
        issue.updated_at = now;
        id
    }

    pub(super) fn alloc_issue_id(&mut self) -> u64 {
        let id = self.next_issue_id;
        self.next_issue_id += 1;
        id
    }

    pub(super) fn alloc_object_id(&mut self) -> u64 {
        let id = self.next_object_id;
        self.next_object_id += 1;
        id
    }

    /// One more than the project's highest issue iid.
    pub(super) fn next_issue_iid(&self, project_id: u64) -> u64 {
        self.issues
            .range((project_id, 0)..=(project_id, u64::MAX))
            .next_back()
            .map_or(1, |(&(_, iid), _)| iid + 1)
    }

    pub(super) fn project_path(&self, project_id: u64) -> String {
        self.projects
            .get(&project_id)
            .cloned()
            .unwrap_or_else(|| format!("project-{project_id}"))
    }

    /// The label `name` as seen from a project: the project's own label, else the nearest
    /// ancestor group's, else a stand-in with a stable id and GitLab's default color.
    pub(super) fn label_for_project(&mut self, project_id: u64, name: &str) -> LabelState {
        let path = self.project_path(project_id);
        let mut groups: Vec<&Group> = self
            .groups
            .values()
            .filter(|g| path.starts_with(&format!("{}/", g.full_path)))
            .collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.full_path.len()));
        let owners = std::iter::once(format!("projects/{project_id}"))
            .chain(groups.iter().map(|g| format!("groups/{}", g.id)));
        for owner in owners {
            if let Some(label) = self
                .labels
                .get(&owner)
                .and_then(|ls| ls.iter().find(|l| l.name == name))
            {
                return label.clone();
            }
        }
        let id = match self.implicit_label_ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self.alloc_object_id();
                self.implicit_label_ids.insert(name.to_owned(), id);
                id
            }
        };
        LabelState {
            id,
            name: name.to_owned(),
            color: DEFAULT_LABEL_COLOR.to_owned(),
            description: String::new(),
        }
    }

    /// Records an `add` event per label in `after` but not `before`, then a `remove` event per
    /// label in `before` but not `after` (GitLab's order).
    pub(super) fn record_label_changes(
        &mut self,
        (project_id, iid): (u64, u64),
        before: &[String],
        after: &[String],
        user_id: u64,
        at: DateTime<Utc>,
    ) {
        let added = after
            .iter()
            .filter(|l| !before.contains(l))
            .map(|l| (l, "add"));
        let removed = before
            .iter()
            .filter(|l| !after.contains(l))
            .map(|l| (l, "remove"));
        let changes: Vec<(&String, &'static str)> = added.chain(removed).collect();
        let mut events = Vec::with_capacity(changes.len());
        for (name, action) in changes {
            let label = self.label_for_project(project_id, name);
            events.push(LabelEvent {
                id: self.alloc_object_id(),
                user_id,
                created_at: at,
                label,
                action,
            });
        }
        self.issue_mut_or_panic(project_id, iid)
            .label_events
            .extend(events);
    }

    pub(super) fn issue_state(&self, issue: &Issue) -> IssueState {
        IssueState {
            id: issue.id,
            iid: issue.iid,
            project_id: issue.project_id,
            title: issue.title.clone(),
            description: issue.description.clone().unwrap_or_default(),
            state: issue.state.clone(),
            confidential: issue.confidential,
            labels: issue.labels.clone(),
            assignee_ids: issue.assignee_ids.clone(),
            notes: issue.notes.iter().map(|n| self.note_state(n)).collect(),
            links: issue.links.iter().map(|l| l.target).collect(),
            updated_at: fmt_time(issue.updated_at),
        }
    }

    pub(super) fn note_state(&self, note: &Note) -> NoteState {
        NoteState {
            id: note.id,
            body: note.body.clone(),
            author_id: note.author_id,
            author_username: self.user_or_placeholder(note.author_id).spec.username,
            created_at: fmt_time(note.created_at),
            system: note.system,
            internal: note.internal,
        }
    }

    /// Records the call and answers it.
    pub(super) fn handle(&mut self, ctx: &Ctx<'_>) -> Reply {
        let mut reply = self.answer(ctx);
        // The wait happens after the world is released, so concurrent calls wait together.
        reply.delay = reply.delay.max(self.latency);
        self.calls.push(RecordedCall {
            method: ctx.method.clone(),
            path: ctx.path.clone(),
            query: ctx.raw_query.clone(),
            body: String::from_utf8_lossy(&ctx.req.body).into_owned(),
            event_uuid: ctx.header("x-gitlab-event-uuid").map(str::to_owned),
            status: reply.status,
        });
        reply
    }

    pub(super) fn answer(&mut self, ctx: &Ctx<'_>) -> Reply {
        let Some(rest) = ctx.path.strip_prefix(API_PREFIX) else {
            return Reply::error(404, "404 Not Found");
        };
        if ctx.header("private-token") != Some(self.token.as_str()) {
            return Reply::message(401, "401 Unauthorized");
        }
        let mut delay = None;
        match self.next_fault(ctx) {
            Some(Fault::Status(status)) => return Reply::status_fault(status),
            Some(Fault::RateLimited { retry_after_secs }) => {
                return Reply::rate_limited(retry_after_secs, self.clock.peek());
            }
            Some(Fault::Delay(d)) => delay = Some(d),
            None => {}
        }
        let decoded: Vec<String> = rest.split('/').map(percent_decode).collect();
        let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let mut reply = route(self, ctx, &segments).unwrap_or_else(|err| err);
        reply.delay = delay;
        reply
    }

    pub(super) fn next_fault(&mut self, ctx: &Ctx<'_>) -> Option<Fault> {
        if let Some(pos) = self.faults.iter().position(|rule| rule.matches(ctx)) {
            return self.faults.remove(pos).map(|rule| rule.fault);
        }
        self.failure.as_mut().and_then(FailureRate::roll)
    }
}
