//! Every message the bot writes, each a pure function from data to Markdown.
//!
//! Bodies come from Markdown templates (`templates/*.md`, rendered with minijinja). Values that
//! users control are neutralized (see [`crate::neutralize`]) before a template sees them, and each
//! note starts with a hidden marker so the bot can find its own notes and never post one twice.

use std::path::Path;

use minijinja::{context, Environment, UndefinedBehavior};

use crate::neutralize;

mod marker;
pub use marker::{Marker, Note};

/// The templates shipped in `templates/`, embedded so the binary runs anywhere.
const EMBEDDED: &[(&str, &str)] = &[
    ("welcome.md", include_str!("../../templates/welcome.md")),
    (
        "cca_instructions.md",
        include_str!("../../templates/cca_instructions.md"),
    ),
    (
        "cca_missing.md",
        include_str!("../../templates/cca_missing.md"),
    ),
    (
        "cca_expired.md",
        include_str!("../../templates/cca_expired.md"),
    ),
    (
        "cca_signed.md",
        include_str!("../../templates/cca_signed.md"),
    ),
    (
        "engagement.md",
        include_str!("../../templates/engagement.md"),
    ),
    (
        "engagement_checklist.md",
        include_str!("../../templates/engagement_checklist.md"),
    ),
    (
        "intake_invalid.md",
        include_str!("../../templates/intake_invalid.md"),
    ),
    (
        "intake_duplicate.md",
        include_str!("../../templates/intake_duplicate.md"),
    ),
    ("mr_link.md", include_str!("../../templates/mr_link.md")),
    (
        "stage_skip.md",
        include_str!("../../templates/stage_skip.md"),
    ),
    (
        "command_help.md",
        include_str!("../../templates/command_help.md"),
    ),
    (
        "command_unknown.md",
        include_str!("../../templates/command_unknown.md"),
    ),
    (
        "command_denied.md",
        include_str!("../../templates/command_denied.md"),
    ),
    (
        "command_ready.md",
        include_str!("../../templates/command_ready.md"),
    ),
    (
        "command_recheck.md",
        include_str!("../../templates/command_recheck.md"),
    ),
    (
        "command_ready_unassigned.md",
        include_str!("../../templates/command_ready_unassigned.md"),
    ),
    (
        "nudge_ping.md",
        include_str!("../../templates/nudge_ping.md"),
    ),
    (
        "nudge_escalate.md",
        include_str!("../../templates/nudge_escalate.md"),
    ),
    (
        "nudge_author.md",
        include_str!("../../templates/nudge_author.md"),
    ),
    (
        "account_team.md",
        include_str!("../../templates/account_team.md"),
    ),
    (
        "meeting_request.md",
        include_str!("../../templates/meeting_request.md"),
    ),
    (
        "engagement_doc.md",
        include_str!("../../templates/engagement_doc.md"),
    ),
    ("stall_csm.md", include_str!("../../templates/stall_csm.md")),
    ("thanks.md", include_str!("../../templates/thanks.md")),
    (
        "cca_worklist.md",
        include_str!("../../templates/cca_worklist.md"),
    ),
    ("mr_merged.md", include_str!("../../templates/mr_merged.md")),
    (
        "stall_aligned.md",
        include_str!("../../templates/stall_aligned.md"),
    ),
];

/// The issue templates account teams pick in GitLab (`.gitlab/issue_templates/` ships copies).
pub const ISSUE_TEMPLATES: &[(&str, &str)] = &[
    (
        "Co-Create engagement request.md",
        include_str!("../../templates/issue_templates/Co-Create engagement request.md"),
    ),
    (
        "Co-Create pathway decision.md",
        include_str!("../../templates/issue_templates/Co-Create pathway decision.md"),
    ),
    (
        "Co-Create alignment meeting notes.md",
        include_str!("../../templates/issue_templates/Co-Create alignment meeting notes.md"),
    ),
    (
        "Co-Create onboarding session.md",
        include_str!("../../templates/issue_templates/Co-Create onboarding session.md"),
    ),
];

/// The name GitLab gives the meeting-notes template (`?issuable_template=`).
pub const MEETING_NOTES_TEMPLATE: &str = "Co-Create alignment meeting notes";

/// Data for an engagement tracking issue (internal: it lives in a confidential issue).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Engagement<'a> {
    pub org_name: &'a str,
    pub slug: &'a str,
    pub tier: u8,
    pub csm: Option<&'a str>,
    pub ae: Option<&'a str>,
    pub sa: Option<&'a str>,
    pub dri: Option<&'a str>,
    pub slack_channel: &'a str,
    pub cca: &'a str,
    pub first_mr: Option<&'a str>,
    /// The curated issue list (`routing.yml` `site.issue_list_url`), when configured.
    pub issue_list: Option<&'a str>,
}

/// An error in a template, with its name and line.
#[derive(Debug, thiserror::Error)]
#[error("template `{name}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    pub name: String,
    pub line: Option<usize>,
    pub message: String,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        Self {
            name: e.name().unwrap_or("?").to_owned(),
            line: e.line(),
            message: e
                .detail()
                .map(str::to_owned)
                .unwrap_or_else(|| e.kind().to_string()),
        }
    }
}

/// The loaded templates.
#[derive(Debug)]
pub struct Messages {
    env: Environment<'static>,
}

/// Data for the welcome note. Strings are raw; this module neutralizes them.
#[derive(Debug, Clone)]
pub struct Welcome<'a> {
    pub author_username: &'a str,
    pub title: &'a str,
    pub reviewer_username: Option<&'a str>,
    pub bot_username: &'a str,
    /// Signing instructions to include when the organization's CCA is not valid.
    pub cca: Option<CcaNotice<'a>>,
    /// The curated issue list (`routing.yml` `site.issue_list_url`), when configured.
    pub issue_list: Option<&'a str>,
    /// The contribution guide (`routing.yml` `site.contribution_guide_url`), when configured.
    pub contribution_guide: Option<&'a str>,
}

/// Which CCA problem to explain, and whom to write to.
#[derive(Debug, Clone)]
pub struct CcaNotice<'a> {
    /// The state the note is about.
    pub marker: Marker,
    /// The label the MR carries meanwhile.
    pub label: &'a str,
    /// The CLA managers' address from `agreements.yml`.
    pub contact: Option<&'a str>,
}

impl CcaNotice<'_> {
    fn kind(&self) -> &'static str {
        match self.marker {
            Marker::CcaExpired => "expired",
            _ => "missing",
        }
    }
}

impl Messages {
    /// The embedded templates.
    pub fn embedded() -> Result<Self, TemplateError> {
        Self::from_sources(EMBEDDED.iter().map(|(n, t)| (n.to_string(), t.to_string())))
    }

    /// Templates from a directory; files missing there fall back to the embedded ones.
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        let mut sources = Vec::new();
        for (name, text) in EMBEDDED {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => text.to_string(),
                Err(e) => {
                    return Err(TemplateError {
                        name: path.display().to_string(),
                        line: None,
                        message: format!("cannot be read: {e}"),
                    })
                }
            };
            sources.push((name.to_string(), text));
        }
        Self::from_sources(sources.into_iter())
    }

    /// Templates from named texts (e.g. read from a repository); names missing there fall
    /// back to the embedded ones, names the tool does not use are ignored.
    pub fn from_named(named: Vec<(String, String)>) -> Result<Self, TemplateError> {
        let mut named: std::collections::HashMap<String, String> = named.into_iter().collect();
        Self::from_sources(EMBEDDED.iter().map(|(name, text)| {
            let text = named.remove(*name).unwrap_or_else(|| text.to_string());
            (name.to_string(), text)
        }))
    }

    fn from_sources(
        sources: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for (name, text) in sources {
            env.add_template_owned(name, text)?;
        }
        Ok(Self { env })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        Ok(self.env.get_template(name)?.render(ctx)?)
    }

    /// The welcome note on a new Co-Create MR. Names the reviewer; carries no customer data.
    /// With CCA instructions, the note also carries that CCA marker (no second note follows).
    pub fn welcome(&self, w: &Welcome<'_>) -> Result<Note, TemplateError> {
        let body = self.render(
            "welcome.md",
            context! {
                author => neutralize::mention(w.author_username),
                title => neutralize::inline(w.title),
                reviewer => w.reviewer_username.map(neutralize::mention),
                bot => neutralize::inline(w.bot_username),
                cca => w.cca.as_ref().map(|c| c.kind()),
                // Label and contact come from the policies (trusted configuration).
                label => w.cca.as_ref().map(|c| c.label),
                contact => w.cca.as_ref().and_then(|c| c.contact),
                issue_list => w.issue_list,
                contribution_guide => w.contribution_guide,
            },
        )?;
        let note = Note::new(Marker::Welcome, body);
        // With CCA instructions, the note also carries that CCA marker (no second note follows),
        // written first.
        Ok(match &w.cca {
            Some(c) => Note {
                markers: vec![c.marker.clone(), Marker::Welcome],
                body: note.body,
            },
            None => note,
        })
    }

    /// The note an MR gets when its organization's CCA state changes: how to sign (missing,
    /// expired) or thanks (signed).
    pub fn cca_note(
        &self,
        author_username: &str,
        notice: CcaNotice<'_>,
    ) -> Result<Note, TemplateError> {
        let template = match notice.marker {
            Marker::CcaSigned => "cca_signed.md",
            Marker::CcaExpired => "cca_expired.md",
            _ => "cca_missing.md",
        };
        let body = self.render(
            template,
            context! {
                author => neutralize::mention(author_username),
                cca => notice.kind(),
                label => notice.label,
                contact => notice.contact,
            },
        )?;
        Ok(Note::new(notice.marker, body))
    }
}

impl Messages {
    fn labels_ctx(labels: &crate::policy::Labels) -> (String, String, String) {
        (
            labels.stage_prefix.clone(),
            labels.pathway_prefix.clone(),
            labels.onsite.clone(),
        )
    }

    /// The body of a tracking issue the bot opens. Names from the policies are trusted
    /// configuration; usernames become mentions only when well-formed.
    pub fn engagement(
        &self,
        e: &Engagement<'_>,
        labels: &crate::policy::Labels,
    ) -> Result<String, TemplateError> {
        let (stage_prefix, pathway_prefix, onsite) = Self::labels_ctx(labels);
        let body = self.render(
            "engagement.md",
            context! {
                org_name => neutralize::inline(e.org_name),
                slug => e.slug,
                tier => e.tier,
                csm => e.csm.map(neutralize::mention),
                ae => e.ae.map(neutralize::mention),
                sa => e.sa.map(neutralize::mention),
                dri => e.dri.map(neutralize::mention),
                slack_channel => e.slack_channel,
                cca => e.cca,
                first_mr => e.first_mr,
                issue_list => e.issue_list,
                stage_prefix, pathway_prefix, onsite,
            },
        )?;
        Ok(Marker::Engagement(e.slug.to_owned()).before(&body))
    }

    /// The checklist appended to an account team's intake issue, keeping what they wrote.
    pub fn checklist(
        &self,
        slack_channel: &str,
        cca: &str,
        labels: &crate::policy::Labels,
    ) -> Result<String, TemplateError> {
        let (stage_prefix, pathway_prefix, onsite) = Self::labels_ctx(labels);
        let body = self.render(
            "engagement_checklist.md",
            context! { slack_channel, cca, stage_prefix, pathway_prefix, onsite },
        )?;
        Ok(Marker::Checklist("v2".into()).before(&body))
    }

    /// One note on an invalid intake issue: exactly what is missing. `problems` are already
    /// neutralized by the caller where they quote user text.
    /// `known`: the organizations to list, only on a confidential issue.
    pub fn intake_invalid(
        &self,
        marker: Marker,
        problems: &[String],
        known: Option<&str>,
    ) -> Result<Note, TemplateError> {
        let body = self.render("intake_invalid.md", context! { problems, known })?;
        Ok(Note::new(marker, body))
    }

    /// `org_name`: only on a confidential issue.
    pub fn intake_duplicate(
        &self,
        marker: Marker,
        org_name: Option<&str>,
        existing_iid: u64,
    ) -> Result<Note, TemplateError> {
        let body = self.render(
            "intake_duplicate.md",
            context! { org_name => org_name.map(neutralize::inline), existing => existing_iid },
        )?;
        Ok(Note::new(marker, body))
    }

    /// The note linking one MR to its engagement. `org_name`: only on a confidential issue.
    pub fn mr_link(
        &self,
        marker: Marker,
        org_name: Option<&str>,
        mr_url: &str,
        title: &str,
    ) -> Result<Note, TemplateError> {
        let body = self.render(
            "mr_link.md",
            context! {
                org_name => org_name.map(neutralize::inline),
                mr_url => mr_url,
                title => neutralize::inline(title),
            },
        )?;
        Ok(Note::new(marker, body))
    }

    /// The text of a reply to a contributor command (the rule adds its markers: which command
    /// it answers, to whom). `who` is already a safe mention; `extra` is the
    /// reviewer to ping, the unknown word, or the CCA state, already neutralized.
    pub fn command_reply(
        &self,
        template: &str,
        who: &str,
        bot: &str,
        extra: Option<&str>,
    ) -> Result<String, TemplateError> {
        let body = self.render(
            template,
            context! { who, bot => neutralize::inline(bot), extra },
        )?;
        Ok(body.trim_end().to_owned())
    }

    /// A nudge: `who` and `other` are already safe mentions.
    pub fn nudge(
        &self,
        template: &str,
        who: &str,
        other: &str,
        days: u32,
        bot: &str,
    ) -> Result<String, TemplateError> {
        let body = self.render(
            template,
            context! { who, other, days, bot => neutralize::inline(bot) },
        )?;
        Ok(body.trim_end().to_owned())
    }

    /// The note listing and pinging a tracking issue's account team. `team`: (role, username)
    /// pairs, usernames already checked well-formed; `dri` likewise.
    pub fn account_team(
        &self,
        team: &[(&str, &str)],
        dri: Option<&str>,
    ) -> Result<Note, TemplateError> {
        let team: Vec<(String, String)> = team
            .iter()
            .map(|(role, user)| ((*role).to_owned(), neutralize::mention(user)))
            .collect();
        let body = self.render(
            "account_team.md",
            context! { team, dri => dri.map(neutralize::mention) },
        )?;
        Ok(Note::new(Marker::AccountTeam, body))
    }

    /// The note asking the account team to hold the alignment meeting. `template_url`: where
    /// the meeting-notes issue is opened from its template (when the issue's address is known).
    pub fn meeting_request(
        &self,
        team: &[(&str, &str)],
        template_url: Option<&str>,
    ) -> Result<Note, TemplateError> {
        let team: Vec<String> = team.iter().map(|(_, u)| neutralize::mention(u)).collect();
        let body = self.render(
            "meeting_request.md",
            context! { team, template_url, template => MEETING_NOTES_TEMPLATE },
        )?;
        Ok(Note::new(Marker::MeetingRequest, body))
    }

    /// The note on a meeting-notes or onboarding issue: linked to tracking issue `iid`.
    /// `org_name`: only on a confidential issue.
    pub fn engagement_doc(
        &self,
        tracking_iid: u64,
        org_name: Option<&str>,
    ) -> Result<Note, TemplateError> {
        let body = self.render(
            "engagement_doc.md",
            context! { tracking => tracking_iid, org_name => org_name.map(neutralize::inline) },
        )?;
        Ok(Note::new(Marker::EngagementDoc(tracking_iid), body))
    }

    /// A stalled engagement's note: `who` is already a safe mention (or empty), `stage` one of
    /// our stage names.
    pub fn stall(
        &self,
        template: &str,
        marker: Marker,
        who: &str,
        stage: &str,
        days: u32,
        stage_prefix: &str,
    ) -> Result<Note, TemplateError> {
        let body = self.render(template, context! { who, stage, days, stage_prefix })?;
        Ok(Note::new(marker, body.trim_end()))
    }

    /// The thank-you on a merged Co-Create MR (public): counts only, no organization named.
    pub fn thanks(
        &self,
        marker: Marker,
        author: &str,
        merged: usize,
        contributors: usize,
    ) -> Result<Note, TemplateError> {
        let body = self.render(
            "thanks.md",
            context! { who => neutralize::mention(author), merged, contributors },
        )?;
        Ok(Note::new(marker, body.trim_end()))
    }

    /// The note on the tracking issue that one of its organization's MRs was merged.
    pub fn mr_merged(
        &self,
        marker: Marker,
        mr_url: &str,
        author: &str,
        merged: usize,
        contributors: usize,
        case_study: Option<&str>,
    ) -> Result<Note, TemplateError> {
        let body = self.render(
            "mr_merged.md",
            context! {
                mr_url,
                who => neutralize::mention(author),
                merged,
                contributors,
                case_study,
            },
        )?;
        Ok(Note::new(marker, body.trim_end()))
    }

    /// The CLA managers' note on a tracking issue. `org_name` and `date` only where the issue is
    /// confidential.
    #[allow(clippy::too_many_arguments)]
    pub fn cca_worklist(
        &self,
        marker: Marker,
        org_name: Option<&str>,
        state: &str,
        date: Option<chrono::NaiveDate>,
        stage: Option<&str>,
        open_mrs: usize,
        contact: Option<&str>,
    ) -> Result<Note, TemplateError> {
        let body = self.render(
            "cca_worklist.md",
            context! {
                org_name => org_name.map(neutralize::inline),
                state,
                date => date.map(|d| d.to_string()),
                stage,
                open_mrs,
                contact,
            },
        )?;
        Ok(Note::new(marker, body.trim_end()))
    }

    pub fn stage_skip(&self, marker: Marker, message: &str) -> Result<Note, TemplateError> {
        let body = self.render("stage_skip.md", context! { message })?;
        Ok(Note::new(marker, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_names_the_reviewer_and_carries_the_marker() {
        let m = Messages::embedded().expect("templates");
        let body = m
            .welcome(&Welcome {
                author_username: "aero-dev-1",
                title: "Add input validation",
                reviewer_username: Some("cs-reviewer-2"),
                bot_username: "cocreate-bot",
                cca: None,
                issue_list: None,
                contribution_guide: None,
            })
            .expect("renders")
            .render();
        insta::assert_snapshot!(body, @r"
        <!-- cocreate:welcome -->
        Hi @aero-dev-1, thank you for your merge request “Add input validation”, and welcome to the Co-Create program!

        @cs-reviewer-2 from the Contributor Success team will review it and coach you through to merge.

        A few things that help:
        - Keep the MR focused on one change, and describe what it does and why.
        - Pipelines may need a maintainer to start them; that is expected for contributions.
        - If you get stuck, write `@cocreate-bot help` in a comment.

        We are glad you are here.
        ");
    }

    #[test]
    fn the_welcome_note_and_the_tracking_issue_link_the_curated_list_when_configured() {
        let m = Messages::embedded().expect("templates");
        let list = "https://cocreate.example.com/?label=co-create";
        let welcome = |issue_list| {
            m.welcome(&Welcome {
                author_username: "aero-dev-1",
                title: "t",
                reviewer_username: None,
                bot_username: "cocreate-bot",
                cca: None,
                issue_list,
                contribution_guide: None,
            })
            .expect("renders")
            .render()
        };
        assert!(
            welcome(Some(list)).contains(&format!(
                "- Looking for your next change? The curated issue list: {list}\n"
            )),
            "{}",
            welcome(Some(list))
        );
        assert!(!welcome(None).contains("curated"), "{}", welcome(None));
        let engagement = |issue_list| {
            m.engagement(
                &Engagement {
                    org_name: "Example Aero",
                    slug: "example-aero",
                    tier: 1,
                    csm: None,
                    ae: None,
                    sa: None,
                    dri: None,
                    slack_channel: "#co-create-aero",
                    cca: "signed",
                    first_mr: None,
                    issue_list,
                },
                &crate::policy::Labels::default(),
            )
            .expect("renders")
        };
        let with = engagement(Some(list));
        assert!(
            with.contains(&format!(
                "Issues the customer's engineers can pick from: the curated issue list, {list}"
            )),
            "{with}"
        );
        assert!(!engagement(None).contains("curated"));
    }

    #[test]
    fn welcome_without_reviewer_says_one_will_come() {
        let m = Messages::embedded().expect("templates");
        let body = m
            .welcome(&Welcome {
                author_username: "aero-dev-1",
                title: "Add input validation",
                reviewer_username: None,
                bot_username: "cocreate-bot",
                cca: None,
                issue_list: None,
                contribution_guide: None,
            })
            .expect("renders")
            .render();
        assert!(body.contains("will be assigned shortly"), "{body}");
        assert!(Marker::Welcome.is_in(&body));
    }

    #[test]
    fn cca_notes_explain_and_thank() {
        let m = Messages::embedded().expect("templates");
        let notice = |marker| CcaNotice {
            marker,
            label: "CCA::missing",
            contact: Some("cla-managers@example.com"),
        };
        let missing = m
            .cca_note("aero-dev-1", notice(Marker::CcaMissing))
            .expect("renders")
            .render();
        insta::assert_snapshot!(missing, @r"
        <!-- cocreate:cca-missing -->
        Hi @aero-dev-1, one thing is needed before this merge request can be merged.

        **Before we can merge:** your organization has no Corporate Contributor Agreement (CCA) with us. Please ask the person who signs agreements for your company to write to cla-managers@example.com; we will send the agreement to sign.
        This MR is labelled `CCA::missing` until the agreement is on file; the label and the `cocreate/cca` status update by themselves once it is.
        ");
        let expired = m
            .cca_note(
                "aero-dev-1",
                CcaNotice {
                    label: "CCA::expired",
                    ..notice(Marker::CcaExpired)
                },
            )
            .expect("renders")
            .render();
        assert!(
            expired.starts_with("<!-- cocreate:cca-expired -->") && expired.contains("expired"),
            "{expired}"
        );
        let thanks = m
            .cca_note("aero-dev-1", notice(Marker::CcaSigned))
            .expect("renders")
            .render();
        assert!(
            thanks.starts_with("<!-- cocreate:cca-signed -->") && thanks.contains("Thank you"),
            "{thanks}"
        );
        let welcome = m
            .welcome(&Welcome {
                author_username: "d",
                title: "t",
                reviewer_username: None,
                bot_username: "b",
                cca: Some(notice(Marker::CcaMissing)),
                issue_list: None,
                contribution_guide: None,
            })
            .expect("renders")
            .render();
        assert_eq!(
            Marker::found_in(&welcome).collect::<Vec<_>>(),
            vec![Marker::Welcome, Marker::CcaMissing]
        );
        assert!(welcome.contains("cla-managers@example.com"), "{welcome}");
    }

    #[test]
    fn template_errors_name_template_and_line() {
        let err = Messages::from_sources(
            [("welcome.md".to_string(), "ok\n{% if %}\n".to_string())].into_iter(),
        )
        .expect_err("syntax error");
        assert_eq!(err.name, "welcome.md");
        assert_eq!(err.line, Some(2));
    }
}
