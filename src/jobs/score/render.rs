//! The score report as Markdown (ranked table, explanations, coverage) and CSV.

use crate::decide::score::{HistorySource, ScoreReport};

/// Markdown: the ranked table (top N), the per-criterion explanation, the coverage.
pub fn markdown(report: &ScoreReport) -> String {
    let mut out = String::from("# Co-Create customer segmentation\n\n");
    let c = &report.coverage;
    out.push_str(&format!(
        "**Pipeline coverage:** {} qualified prospects (Tier 1: {}, Tier 2: {}) for a target of {} (3x {} projects): **{}**.\n\n",
        c.qualified,
        c.tier1,
        c.tier2,
        c.needed,
        c.projects_target,
        if c.covered { "covered" } else { "not covered" }
    ));
    let shown = report.accounts.len().min(report.top);
    out.push_str(&format!(
        "## Top {shown} of {}\n\n| rank | organization | score | tier | issues + MRs | why this tier |\n|---:|---|---:|:---:|---:|---|\n",
        report.accounts.len()
    ));
    for s in report.accounts.iter().take(report.top) {
        let history = match s.history_source {
            HistorySource::Gitlab => s.issues_mrs.to_string(),
            HistorySource::Csv => format!("{} (csv)", s.issues_mrs),
            HistorySource::Unknown => "not known".to_owned(),
        };
        let spiff = if s.spiff_target {
            " (SPIFF target)"
        } else {
            ""
        };
        out.push_str(&format!(
            "| {} | {}{spiff} | {:.1} | {} | {} | {} |\n",
            s.rank,
            md_cell(&s.organization),
            s.score,
            s.tier,
            history,
            md_cell(&s.tier_reason)
        ));
    }
    out.push_str("\n## Scores explained (points per criterion)\n\n| organization |");
    let names: Vec<&str> = report
        .accounts
        .first()
        .map(|s| s.criteria.iter().map(|c| c.name).collect())
        .unwrap_or_default();
    for n in &names {
        out.push_str(&format!(" {n} |"));
    }
    out.push_str(" score |\n|---|");
    for _ in &names {
        out.push_str("---|");
    }
    out.push_str("---:|\n");
    for s in report.accounts.iter().take(report.top) {
        out.push_str(&format!("| {} |", md_cell(&s.organization)));
        for c in &s.criteria {
            out.push_str(&format!(
                " {:.1}/{} ({}) |",
                c.points,
                c.weight,
                md_cell(&c.value)
            ));
        }
        out.push_str(&format!(" {:.1} |\n", s.score));
    }
    if !report.skipped.is_empty() {
        out.push_str(&format!(
            "\n## Rows left out ({})\n\n",
            report.skipped.len()
        ));
        for e in &report.skipped {
            out.push_str(&format!("- {}\n", md_cell(&e.to_string())));
        }
    }
    let spiff = report.accounts.iter().filter(|a| a.spiff_target).count();
    if spiff > 0 {
        out.push_str(&format!("\n{spiff} SPIFF target accounts among them.\n"));
    }
    out.push_str(&format!(
        "\n{} organizations scored{}; {} GitLab API reads.\n",
        report.accounts.len(),
        if report.offline {
            " offline (issue/MR counts from the CSV)"
        } else {
            ""
        },
        report.api_reads
    ));
    out
}

pub(crate) fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// CSV: one line per organization, ranked, with the points per criterion.
pub fn to_csv(report: &ScoreReport) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec![
        "rank".to_owned(),
        "organization".into(),
        "slug".into(),
        "score".into(),
        "tier".into(),
        "issues_mrs".into(),
    ];
    if let Some(first) = report.accounts.first() {
        header.extend(first.criteria.iter().map(|c| format!("points_{}", c.name)));
    }
    header.push("tier_reason".into());
    header.push("spiff_target".into());
    w.write_record(&header)?;
    for s in &report.accounts {
        let mut rec = vec![
            s.rank.to_string(),
            s.organization.clone(),
            s.slug.clone(),
            format!("{:.1}", s.score),
            s.tier.to_string(),
            s.issues_mrs.to_string(),
        ];
        rec.extend(s.criteria.iter().map(|c| format!("{:.1}", c.points)));
        rec.push(s.tier_reason.clone());
        rec.push(if s.spiff_target { "yes" } else { "no" }.into());
        w.write_record(&rec)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The lines `score --open-prospects` prints (on stderr, beside the report): one per tracking
/// issue opened, or that would be opened without `--yes`.
pub fn prospects_text(issues: &[String], opened: bool) -> String {
    let verb = if opened {
        "opened"
    } else {
        "would open (pass --yes)"
    };
    issues.iter().map(|i| format!("{verb}: {i}\n")).collect()
}
