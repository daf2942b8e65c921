//! The report as Markdown: tables against the targets, the activity numbers, Mermaid charts
//! and one line per organization.

use chrono::NaiveDate;

use super::Report;
use crate::decide::metrics::ResponseTimes;

/// `26.5 h (12 MRs answered, 2 waiting)`.
fn response_cell(t: &ResponseTimes, hours: Option<f64>) -> String {
    format!(
        "{} ({} MRs answered, {} waiting)",
        opt(hours, " h"),
        t.answered,
        t.waiting
    )
}

fn opt(v: Option<f64>, unit: &str) -> String {
    v.map(|x| format!("{x}{unit}"))
        .unwrap_or_else(|| "—".to_owned())
}

fn check(ok: bool) -> &'static str {
    if ok {
        "✅"
    } else {
        "❌"
    }
}

/// `1250000.4` → `1,250,000` (whole units; the currency is the account export's).
pub fn money(x: f64) -> String {
    let whole = x.round();
    let digits = format!("{}", whole.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if whole < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// The time-to-start buckets around the target: (label, count).
pub fn distribution(weeks: &[f64], min: f64, max: f64) -> Vec<(String, usize)> {
    let lo = (min - 4.0).max(0.0);
    let hi = max + 4.0;
    let bucket = |w: f64| -> usize {
        if w < lo {
            0
        } else if w < min {
            1
        } else if w <= max {
            2
        } else if w <= hi {
            3
        } else {
            4
        }
    };
    let labels = [
        format!("< {lo}"),
        format!("{lo}-{min}"),
        format!("{min}-{max} target"),
        format!("{max}-{hi}"),
        format!("> {hi}"),
    ];
    labels
        .into_iter()
        .enumerate()
        .map(|(i, label)| (label, weeks.iter().filter(|w| bucket(**w) == i).count()))
        .collect()
}

/// The dashboard body: everything but the cost line (so identical data gives an identical
/// body and the dashboard issue is not rewritten).
pub fn markdown_body(r: &Report) -> String {
    let m = &r.metrics;
    let t = &r.targets;
    let last_day = r.end.pred_opt().unwrap_or(r.end);
    let mut out = format!(
        "# Co-Create program report {}\n\n{} to {} (as of {}).\n\n",
        r.quarter,
        r.start,
        last_day,
        r.as_of.format("%Y-%m-%d %H:%M UTC")
    );
    out.push_str(
        "## Against the targets\n\n| metric | value | target | |\n|---|---:|---:|:---:|\n",
    );
    out.push_str(&format!(
        "| pipeline (prospects) | {} | {} (3x projects) | {} |\n",
        m.pipeline,
        t.prospects,
        check(m.pipeline as u64 >= u64::from(t.prospects))
    ));
    out.push_str(&format!(
        "| projects initiated | {} | {} | {} |\n",
        m.projects_initiated,
        t.projects,
        check(m.projects_initiated as u64 >= u64::from(t.projects))
    ));
    out.push_str(&format!(
        "| conversion | {} | {}% | {} |\n",
        opt(m.conversion_percent, "%"),
        t.conversion_percent,
        check(
            m.conversion_percent
                .is_some_and(|c| c >= t.conversion_percent)
        )
    ));
    let on_time = |w: Option<f64>| w.is_some_and(|w| w <= t.time_to_start_weeks_max);
    out.push_str(&format!(
        "| time from contact to project start, median | {} | {}-{} weeks | {} |\n",
        opt(m.median_weeks_to_start, " weeks"),
        t.time_to_start_weeks_min,
        t.time_to_start_weeks_max,
        check(on_time(m.median_weeks_to_start))
    ));
    out.push_str(&format!(
        "| time from contact to project start, mean | {} | {}-{} weeks | {} |\n\n",
        opt(m.mean_weeks_to_start, " weeks"),
        t.time_to_start_weeks_min,
        t.time_to_start_weeks_max,
        check(on_time(m.mean_weeks_to_start))
    ));
    out.push_str("## Activity\n\n| metric | value |\n|---|---:|\n");
    let arr = m.influenced_arr.map(|a| {
        if m.arr_unknown.is_empty() {
            money(a)
        } else {
            format!("{} (no ARR for {})", money(a), m.arr_unknown.join(", "))
        }
    });
    for (k, v) in [
        (
            "contributing customers (opened at least one Co-Create MR in the quarter)",
            m.contributing_customers.to_string(),
        ),
        (
            "influenced ARR (of the contributing customers)",
            arr.unwrap_or_else(|| "— (no account export with `arr`)".to_owned()),
        ),
        ("initial meetings scheduled", m.initial_meetings.to_string()),
        (
            "SPIFF target engagements (in the pipeline)",
            m.spiff_engagements.to_string(),
        ),
        (
            "case-study candidates (label at the quarter's end)",
            if m.case_study_candidates.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "{} ({})",
                    m.case_study_candidates.len(),
                    m.case_study_candidates.join(", ")
                )
            },
        ),
        (
            "active customer conversations (contacted or meeting, open)",
            m.active_conversations.to_string(),
        ),
        (
            "post-project MRs (after completion, in the quarter)",
            m.post_project_mrs.to_string(),
        ),
        (
            "post-project issues (after completion, in the quarter)",
            m.post_project_issues.to_string(),
        ),
        (
            "post-project comments (after completion, in the quarter)",
            m.post_project_comments.to_string(),
        ),
        (
            "organizations with multiple contributions",
            format!(
                "{} of {} ({})",
                m.multi_contributing_organizations,
                m.contributing_organizations,
                opt(m.multiple_contributions_percent, "%")
            ),
        ),
        (
            "average time between contributions",
            opt(m.mean_days_between_contributions, " days"),
        ),
        (
            "time to first response on Co-Create MRs opened in the quarter (CHAOSS), median",
            response_cell(&m.first_response, m.first_response.median_hours),
        ),
        (
            "time to first response, mean",
            response_cell(&m.first_response, m.first_response.mean_hours),
        ),
    ] {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    out.push_str("\n## Funnel\n\n```mermaid\nflowchart LR\n");
    for (i, (stage, n)) in m.funnel.iter().enumerate() {
        out.push_str(&format!("  s{i}[\"{stage}: {n}\"]\n"));
    }
    let chain: Vec<String> = (0..m.funnel.len()).map(|i| format!("s{i}")).collect();
    if !chain.is_empty() {
        out.push_str(&format!("  {}\n", chain.join(" --> ")));
    }
    out.push_str("```\n\n## Time from contact to project start\n\n");
    let dist = distribution(
        &m.weeks_to_start,
        t.time_to_start_weeks_min,
        t.time_to_start_weeks_max,
    );
    let top = dist.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    out.push_str(&format!(
        "```mermaid\nxychart-beta\n  title \"Projects by weeks from contact to start\"\n  x-axis [{}]\n  y-axis \"projects\" 0 --> {top}\n  bar [{}]\n```\n\n",
        dist.iter()
            .map(|(l, _)| format!("\"{l}\""))
            .collect::<Vec<_>>()
            .join(", "),
        dist.iter()
            .map(|(_, n)| n.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let with_arr = m.influenced_arr.is_some();
    out.push_str("## Organizations\n\n| organization | engagement | stage | contacted | started | weeks to start | completed | MRs | MRs in the quarter | post-project MRs | post-project issues | post-project comments | first response, median | MRs waiting for one |");
    out.push_str(if with_arr { " ARR |" } else { "" });
    out.push_str(
        " other engagements |\n|---|---|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    );
    out.push_str(if with_arr { "---:|" } else { "" });
    out.push_str("---|\n");
    let d = |d: Option<NaiveDate>| d.map(|d| d.to_string()).unwrap_or_else(|| "—".into());
    for l in &m.organizations {
        let others: Vec<String> = l
            .other_engagements
            .iter()
            .map(|o| {
                let stage = o.stage.as_deref().unwrap_or("—");
                match o.completed {
                    Some(c) => format!("#{} {stage} (completed {c})", o.iid),
                    None => format!("#{} {stage}", o.iid),
                }
            })
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            l.org,
            l.engagement
                .map(|i| format!("#{i}"))
                .unwrap_or_else(|| "—".into()),
            l.stage.as_deref().unwrap_or("—"),
            d(l.contacted),
            d(l.started),
            opt(l.weeks_to_start, ""),
            d(l.completed),
            l.mrs,
            l.quarter_mrs,
            l.post_project_mrs,
            l.post_project_issues,
            l.post_project_comments,
            opt(l.first_response.median_hours, " h"),
            l.first_response.waiting
        ));
        if with_arr {
            out.push_str(&format!(
                " {} |",
                l.arr.map(money).unwrap_or_else(|| "—".into())
            ));
        }
        out.push_str(&format!(
            " {} |\n",
            if others.is_empty() {
                "—".to_owned()
            } else {
                others.join("; ")
            }
        ));
    }
    let merged: Vec<&crate::decide::metrics::OrgLine> = m
        .organizations
        .iter()
        .filter(|l| l.merged_mrs > 0)
        .collect();
    if !merged.is_empty() || !m.case_study_candidates.is_empty() {
        out.push_str("\n## Recognition\n\n| organization | merged Co-Create MRs | case-study candidate |\n|---|---:|:---:|\n");
        for l in &merged {
            let candidate = m.case_study_candidates.contains(&l.org);
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                l.org,
                l.merged_mrs,
                if candidate { "yes" } else { "" }
            ));
        }
        for c in &m.case_study_candidates {
            if !merged.iter().any(|l| &l.org == c) {
                out.push_str(&format!("| {c} | 0 | yes |\n"));
            }
        }
    }
    if !r.not_measured.is_empty() {
        out.push_str("\n## Not measured\n\n");
        for n in &r.not_measured {
            out.push_str(&format!("- {n}\n"));
        }
    }
    out
}

/// The full Markdown: the body plus what the run cost.
pub fn markdown(r: &Report) -> String {
    let mut out = markdown_body(r);
    out.push_str(&format!(
        "\n{} GitLab API reads, {} writes, {} ms.\n",
        r.api_reads, r.api_writes, r.elapsed_ms
    ));
    if let Some(d) = &r.dashboard {
        out.push_str(&format!(
            "Dashboard issue: {}{}.\n",
            d.outcome,
            d.issue.map(|i| format!(" (#{i})")).unwrap_or_default()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_buckets_around_the_target() {
        let d = distribution(&[1.0, 4.0, 8.0, 10.0, 10.5, 15.0], 8.0, 10.0);
        let counts: Vec<usize> = d.iter().map(|(_, n)| *n).collect();
        assert_eq!(counts, vec![1, 1, 2, 1, 1]);
        assert_eq!(d[2].0, "8-10 target");
    }

    #[test]
    fn money_is_whole_units_with_separators() {
        for (x, s) in [
            (0.0, "0"),
            (999.4, "999"),
            (1000.0, "1,000"),
            (1_250_000.5, "1,250,001"),
            (12_345_678.0, "12,345,678"),
        ] {
            assert_eq!(money(x), s);
        }
    }
}
