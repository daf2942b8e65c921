//! `cocreate report --org SLUG`: one organization's page for a business review — its
//! engagement, contributions and responsiveness in the quarter, from the same metrics as the
//! report (so the two never disagree).

use super::markdown::money;
use super::Report;
use crate::decide::metrics::OrgLine;

fn date(d: Option<chrono::NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_else(|| "—".to_owned())
}

fn hours(h: Option<f64>) -> String {
    h.map(|h| format!("{h} h"))
        .unwrap_or_else(|| "—".to_owned())
}

/// The page, or `None` when the report has no line for `slug` (not a Co-Create organization
/// and no engagement).
pub fn org_page(report: &Report, slug: &str) -> Option<String> {
    let line: &OrgLine = report
        .metrics
        .organizations
        .iter()
        .find(|l| l.org == slug)?;
    let candidate = report
        .metrics
        .case_study_candidates
        .iter()
        .any(|o| o == slug);
    let mut out = format!(
        "# {slug}: Co-Create business review, {} ({} to {})\n\n",
        report.quarter, report.start, report.end
    );
    out.push_str("## Engagement\n\n| | |\n|---|---|\n");
    let engagement = line
        .engagement
        .map(|i| format!("#{i}"))
        .unwrap_or_else(|| "none".to_owned());
    for (k, v) in [
        ("tracking issue", engagement),
        (
            "stage at the quarter's end",
            line.stage.clone().unwrap_or_else(|| "—".to_owned()),
        ),
        ("contacted", date(line.contacted)),
        ("project started", date(line.started)),
        (
            "weeks from contact to start",
            line.weeks_to_start
                .map(|w| w.to_string())
                .unwrap_or_else(|| "—".to_owned()),
        ),
        ("completed", date(line.completed)),
        (
            "case-study candidate",
            if candidate { "yes" } else { "no" }.to_owned(),
        ),
    ] {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    if !line.other_engagements.is_empty() {
        let others: Vec<String> = line
            .other_engagements
            .iter()
            .map(|o| format!("#{} ({})", o.iid, o.stage.as_deref().unwrap_or("no stage")))
            .collect();
        out.push_str(&format!("| other engagements | {} |\n", others.join(", ")));
    }
    out.push_str("\n## Contributions\n\n| | |\n|---|---:|\n");
    let r = &line.first_response;
    for (k, v) in [
        ("Co-Create MRs so far", line.mrs.to_string()),
        (
            "Co-Create MRs opened in the quarter",
            line.quarter_mrs.to_string(),
        ),
        ("Co-Create MRs merged so far", line.merged_mrs.to_string()),
        ("after completion: MRs", line.post_project_mrs.to_string()),
        (
            "after completion: issues",
            line.post_project_issues.to_string(),
        ),
        (
            "after completion: comments",
            line.post_project_comments.to_string(),
        ),
        (
            "first response to its MRs (median, mean)",
            format!("{}, {}", hours(r.median_hours), hours(r.mean_hours)),
        ),
        (
            "MRs still waiting for a first response",
            r.waiting.to_string(),
        ),
        (
            "ARR",
            line.arr
                .map(money)
                .unwrap_or_else(|| "— (no account export)".to_owned()),
        ),
    ] {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out.push_str(&format!(
        "\nAs of {}. Internal: for the account team and Contributor Success.\n",
        report.as_of.format("%Y-%m-%d %H:%M UTC")
    ));
    Some(out)
}
