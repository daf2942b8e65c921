//! The site's fixture: the report's first timeline ([`super::report_world::world`]) plus the
//! curated issues and one reviewed open MR, and the site built from it.

use cocreate::jobs::report::Quarter;
use cocreate::jobs::site::{self, Site};

use super::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec};
use super::harness::{PROJECT_ID, PROJECT_PATH, TELCO_DEV};
use super::notes::CheckedGitLab;
use super::report_world::{context, world};

/// Titles of the curated issues, by what the `?label=` filter must show.
pub const CO_CREATE: [&str; 3] = [
    "Document the retry settings",
    "Support HTTP proxies in the CLI",
    "Explain the audit log export",
];
pub const QUICK_WIN_ONLY: &str = "Add a --quiet flag";
/// Not on the list: closed, confidential, without a curated label, or in a private project.
pub const NOT_LISTED: [&str; 4] = [
    "Closed: fix the typo",
    "Confidential: customer crash",
    "Unlabelled refactor",
    "Private project: the internal roadmap",
];
/// A private project inside the watched group.
pub const PRIVATE_PROJECT: (u64, &str) = (77, "vendor/internal-tools");

fn issue(gitlab: &FakeGitLab, title: &str, labels: &[&str], state: &str, confidential: bool) {
    gitlab.add_issue(IssueSpec {
        project_id: PROJECT_ID,
        project_path: PROJECT_PATH.into(),
        title: title.into(),
        labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        state: state.into(),
        confidential,
        ..IssueSpec::default()
    });
}

/// The report's world and the site's additions (all after FY26Q1, so the quarter's numbers
/// are the report's).
pub async fn site_world() -> CheckedGitLab {
    let gitlab = world().await;
    gitlab.set_project_visibility(PROJECT_ID, "public");
    gitlab.set_time("2025-05-10T08:00:00Z");
    issue(
        &gitlab,
        CO_CREATE[0],
        &["co-create", "documentation"],
        "opened",
        false,
    );
    issue(&gitlab, QUICK_WIN_ONLY, &["quick win"], "opened", false);
    issue(
        &gitlab,
        CO_CREATE[1],
        &["co-create", "Seeking community contributions"],
        "opened",
        false,
    );
    // The program's own labels never reach the public page.
    issue(
        &gitlab,
        CO_CREATE[2],
        &["co-create", "Co-Create org::example-aero"],
        "opened",
        false,
    );
    issue(&gitlab, NOT_LISTED[0], &["co-create"], "closed", false);
    issue(&gitlab, NOT_LISTED[1], &["co-create"], "opened", true);
    issue(&gitlab, NOT_LISTED[2], &[], "opened", false);
    gitlab.add_issue(IssueSpec {
        project_id: PRIVATE_PROJECT.0,
        project_path: PRIVATE_PROJECT.1.into(),
        title: NOT_LISTED[3].into(),
        labels: vec!["co-create".into()],
        ..IssueSpec::default()
    });
    // An open Co-Create MR with a reviewer, opened after the quarter.
    gitlab.set_time("2025-05-20T10:00:00Z");
    gitlab.add_mr(MrSpec {
        project_id: PROJECT_ID,
        iid: 46,
        id: 7046,
        author_id: TELCO_DEV.0,
        title: "Add retry jitter".into(),
        labels: vec!["Co-Create".into(), "Co-Create org::example-telco".into()],
        reviewer_ids: vec![101],
        sha: format!("{:040x}", 46),
        project_path: PROJECT_PATH.into(),
        ..MrSpec::default()
    });
    gitlab
}

/// Builds the site of FY26Q1 at the report's `NOW` (2025-06-01 12:00).
pub async fn build(gitlab: &FakeGitLab, internal: bool) -> Site {
    let ctx = context(gitlab).await;
    site::run(&ctx, Quarter::parse("FY26Q1").expect("q"), internal)
        .await
        .expect("site")
}

/// The text of some HTML: tags dropped, entities of `&<>"'` decoded, whitespace collapsed.
pub fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode(&out)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// minijinja's HTML escapes (`&#x2f;` for `/`, …) decoded.
pub fn decode(html: &str) -> String {
    html.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}
