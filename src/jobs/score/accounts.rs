//! The account export: CSV columns, parsing into rows or errors naming row and column.

use std::collections::BTreeMap;

use crate::decide::score::{AccountRow, RowError};
use crate::gitlab::GitlabError;
use crate::policy::Subscription;

/// The CSV columns, in the documented order; `required` ones must be present and non-empty.
pub const COLUMNS: &[(&str, bool, &str)] = &[
    ("organization", true, "the customer's name"),
    (
        "slug",
        false,
        "its slug in organizations.yml (lowercase, `-`); default: made from the name",
    ),
    ("subscription", true, "free, premium or ultimate"),
    ("seats", true, "seats bought, a whole number"),
    (
        "industry",
        true,
        "free text; Finance, Manufacturing, Telco (segmentation.yml) are preferred",
    ),
    (
        "prior_oss",
        true,
        "prior open source contribution experience: yes or no",
    ),
    (
        "usage_growth",
        true,
        "GitLab usage growth over the last year in percent, e.g. 25 or -5%",
    ),
    ("relationship", true, "relationship strength, 1 (weak) to 5"),
    ("features_used", true, "GitLab features in use, a count"),
    (
        "tech_overlap",
        true,
        "overlap with GitLab's tech stack, 0 (none) to 5",
    ),
    (
        "gitlab_usernames",
        false,
        "the customer's engineers on GitLab, separated by spaces or `;`",
    ),
    (
        "issues_mrs",
        false,
        "public issues + MRs, used with --offline (GitLab's count wins otherwise)",
    ),
    (
        "arr",
        false,
        "annual recurring revenue, e.g. 1250000 or 1,250,000 (not scored; `report --accounts` sums it)",
    ),
    (
        "spiff_target",
        false,
        "yes for a SPIFF target account (not scored: flagged in the output, its prospect tracking issue labelled); default no",
    ),
];

/// Why the account file cannot be scored at all.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error("the account file has bad rows (pass --skip-bad-rows to score the rest):\n{}", list(.0))]
    BadRows(Vec<RowError>),
    #[error("the account file's header is unusable:\n{}", list(.0))]
    BadHeader(Vec<RowError>),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
}

pub(crate) fn list(errors: &[RowError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A slug made from a name: `Example Freight, Inc.` → `example-freight-inc`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.trim().chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "1" => Some(true),
        "no" | "n" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses the export. Returns the rows that are valid and one error per bad cell (a bad row
/// may give several). Unknown extra columns are ignored; missing required columns are header
/// errors (line 1).
pub fn parse_accounts(text: &str) -> (Vec<AccountRow>, Vec<RowError>) {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut errors = Vec::new();
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h.iter().map(|s| s.trim().to_ascii_lowercase()).collect(),
        Err(e) => {
            errors.push(RowError {
                line: 1,
                column: "(header)".into(),
                message: e.to_string(),
            });
            return (Vec::new(), errors);
        }
    };
    let index: BTreeMap<&str, usize> = COLUMNS
        .iter()
        .filter_map(|(name, _, _)| headers.iter().position(|h| h == name).map(|i| (*name, i)))
        .collect();
    for (name, required, _) in COLUMNS {
        if *required && !index.contains_key(name) {
            errors.push(RowError {
                line: 1,
                column: (*name).into(),
                message: format!(
                    "required column `{name}` is missing (header: {})",
                    headers.join(",")
                ),
            });
        }
    }
    if !errors.is_empty() {
        return (Vec::new(), errors);
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                errors.push(RowError {
                    line,
                    column: "(row)".into(),
                    message: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        match parse_row(&record, &index, line) {
            Ok(r) => rows.push(r),
            Err(es) => errors.extend(es),
        }
    }
    (rows, errors)
}

/// Annual recurring revenue of each organization, by slug, from the `arr` column of an account
/// export (`report --accounts FILE`). Only `organization`, `slug` and `arr` are read; a row
/// with an empty `arr` gives no value. `Ok(None)` when the file has no `arr` column.
pub fn parse_arr(text: &str) -> Result<Option<BTreeMap<String, f64>>, ScoreError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header_error = |column: &str, message: String| {
        ScoreError::BadHeader(vec![RowError {
            line: 1,
            column: column.into(),
            message,
        }])
    };
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| header_error("(header)", e.to_string()))?
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let at = |name: &str| headers.iter().position(|h| h == name);
    let Some(arr_at) = at("arr") else {
        return Ok(None);
    };
    let (org_at, slug_at) = (at("organization"), at("slug"));
    if org_at.is_none() && slug_at.is_none() {
        return Err(header_error(
            "organization",
            "an `arr` needs an `organization` or `slug` column to belong to".into(),
        ));
    }
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                errors.push(RowError {
                    line: e.position().map(|p| p.line()).unwrap_or(0),
                    column: "(row)".into(),
                    message: format!("not readable as CSV: {e}"),
                });
                continue;
            }
        };
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim();
        let slug = match cell(slug_at) {
            "" => slugify(cell(org_at)),
            s => s.to_owned(),
        };
        let raw = cell(Some(arr_at));
        if raw.is_empty() || slug.is_empty() {
            continue;
        }
        let mut fail = |message: String| {
            errors.push(RowError {
                line,
                column: "arr".into(),
                message,
            })
        };
        match raw.replace(['_', ','], "").parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => {
                if out.insert(slug.clone(), v).is_some() {
                    fail(format!("`{slug}` has an ARR on an earlier row already"));
                }
            }
            _ => fail(format!(
                "`{raw}` is not an amount of 0 or more like 1250000 or 1,250,000"
            )),
        }
    }
    if errors.is_empty() {
        Ok(Some(out))
    } else {
        Err(ScoreError::BadRows(errors))
    }
}

pub(crate) fn parse_row(
    record: &csv::StringRecord,
    index: &BTreeMap<&str, usize>,
    line: u64,
) -> Result<AccountRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let cell = |name: &str| -> &str {
        index
            .get(name)
            .and_then(|&i| record.get(i))
            .map(str::trim)
            .unwrap_or("")
    };
    let mut fail = |column: &str, message: String| {
        errors.push(RowError {
            line,
            column: column.into(),
            message,
        })
    };
    let required = |name: &str, fail: &mut dyn FnMut(&str, String)| -> Option<String> {
        let v = cell(name);
        if v.is_empty() {
            fail(name, "is empty; it is required".into());
            None
        } else {
            Some(v.to_owned())
        }
    };
    let organization = required("organization", &mut fail);
    let slug = match cell("slug") {
        "" => organization.as_deref().map(slugify),
        s => Some(s.to_owned()),
    };
    if let Some(s) = &slug {
        if let Err(m) = crate::domain::OrgSlug::parse(s) {
            fail("slug", m);
        }
    }
    let subscription = required("subscription", &mut fail).and_then(|v| {
        let s = Subscription::parse(&v);
        if s.is_none() {
            fail(
                "subscription",
                format!("`{v}` is not free, premium or ultimate"),
            );
        }
        s
    });
    let whole = |name: &str, fail: &mut dyn FnMut(&str, String)| -> Option<u64> {
        let v = required(name, fail)?;
        match v.replace(['_', ','], "").parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                fail(name, format!("`{v}` is not a whole number of 0 or more"));
                None
            }
        }
    };
    let scale = |name: &str, lo: u8, hi: u8, fail: &mut dyn FnMut(&str, String)| -> Option<u8> {
        let v = required(name, fail)?;
        match v.parse::<u8>() {
            Ok(n) if (lo..=hi).contains(&n) => Some(n),
            _ => {
                fail(
                    name,
                    format!("`{v}` is not a whole number from {lo} to {hi}"),
                );
                None
            }
        }
    };
    let seats = whole("seats", &mut fail);
    let industry = required("industry", &mut fail);
    let prior_oss = required("prior_oss", &mut fail).and_then(|v| {
        let b = parse_bool(&v);
        if b.is_none() {
            fail("prior_oss", format!("`{v}` is not yes or no"));
        }
        b
    });
    let usage_growth_percent = required("usage_growth", &mut fail).and_then(|v| {
        match v.trim_end_matches('%').trim().parse::<f64>() {
            Ok(n) if n.is_finite() => Some(n),
            _ => {
                fail(
                    "usage_growth",
                    format!("`{v}` is not a percentage like 25 or -5%"),
                );
                None
            }
        }
    });
    let relationship = scale("relationship", 1, 5, &mut fail);
    let features_used = whole("features_used", &mut fail);
    let tech_overlap = scale("tech_overlap", 0, 5, &mut fail);
    let gitlab_usernames: Vec<String> = cell("gitlab_usernames")
        .split([' ', ';', ','])
        .map(|u| u.trim().trim_start_matches('@'))
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    for u in &gitlab_usernames {
        if !crate::neutralize::is_plain_username(u) {
            fail(
                "gitlab_usernames",
                format!("`{u}` is not a GitLab username"),
            );
        }
    }
    let issues_mrs = match cell("issues_mrs") {
        "" => None,
        v => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                fail(
                    "issues_mrs",
                    format!("`{v}` is not a whole number of 0 or more"),
                );
                None
            }
        },
    };
    let spiff_target = match cell("spiff_target") {
        "" => false,
        v => parse_bool(v).unwrap_or_else(|| {
            fail("spiff_target", format!("`{v}` is not yes or no"));
            false
        }),
    };
    match (
        organization,
        slug,
        subscription,
        seats,
        industry,
        prior_oss,
        usage_growth_percent,
        relationship,
        features_used,
        tech_overlap,
    ) {
        (
            Some(organization),
            Some(slug),
            Some(subscription),
            Some(seats),
            Some(industry),
            Some(prior_oss),
            Some(usage_growth_percent),
            Some(relationship),
            Some(features_used),
            Some(tech_overlap),
        ) if errors.is_empty() => Ok(AccountRow {
            line,
            organization,
            slug,
            subscription,
            seats,
            industry,
            prior_oss,
            usage_growth_percent,
            relationship,
            features_used,
            tech_overlap,
            gitlab_usernames,
            issues_mrs,
            spiff_target,
        }),
        _ => Err(errors),
    }
}
