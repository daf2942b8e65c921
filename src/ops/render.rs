//! Small text helpers for operator output: times, ages, sizes, aligned tables.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

/// `2026-04-20T10:31:05Z` (UTC, seconds).
pub fn time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// `2026-04-20T10:31:05.123Z`, for JSON.
pub fn time_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// A duration in whole seconds, e.g. `8d 3h`, `1h 2m 5s`; below a second, `0s`.
pub fn age(ms: i64) -> String {
    let mut secs = ms.max(0) / 1000;
    let mut parts = Vec::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            parts.push(format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if parts.is_empty() {
        "0s".to_owned()
    } else {
        parts.join(" ")
    }
}

/// [`age`] of a [`Duration`].
pub fn duration(d: Duration) -> String {
    age(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// `time (age ago)`, or `time (in age)` for the future.
pub fn when(ms: i64, now: i64) -> String {
    if ms <= now {
        format!("{} ({} ago)", time(ms), age(now - ms))
    } else {
        format!("{} (in {})", time(ms), age(ms - now))
    }
}

/// `812.4 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// One line of at most `max` characters (newlines become spaces; `…` marks a cut).
pub fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// What a webhook body is about, e.g. `vendor/product!16`, from the fields GitLab sends for
/// merge requests and issues; `None` when the body says nothing recognisable.
pub fn subject(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let project = v
        .pointer("/project/path_with_namespace")
        .and_then(Value::as_str);
    let attrs = v.get("object_attributes");
    let iid = attrs.and_then(|a| a.get("iid")).and_then(Value::as_u64);
    let kind = v
        .get("object_kind")
        .or_else(|| v.get("event_type"))
        .and_then(Value::as_str);
    let sigil = match kind {
        Some("merge_request") => "!",
        Some("issue" | "work_item") => "#",
        _ => "",
    };
    match (project, iid, kind) {
        (Some(p), Some(i), _) if !sigil.is_empty() => Some(format!("{p}{sigil}{i}")),
        (Some(p), _, Some(k)) => Some(format!("{p} ({k})")),
        (None, _, Some(k)) => Some(k.to_owned()),
        (Some(p), _, None) => Some(p.to_owned()),
        (None, _, None) => None,
    }
}

/// An aligned plain-text table; the last column is not padded.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i + 1 < columns {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.push_str(cell);
                text.push_str(&" ".repeat(pad + 2));
            } else {
                text.push_str(cell);
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_ages_and_sizes() {
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(age(3_725_999), "1h 2m 5s");
        assert_eq!(age(-5), "0s");
        assert_eq!(
            duration(Duration::from_secs(8 * 86_400 + 3 * 3600)),
            "8d 3h"
        );
        assert_eq!(
            when(1_700_000_000_000, 1_700_000_060_000),
            "2023-11-14T22:13:20Z (1m ago)"
        );
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 / 2), "1.5 MiB");
        assert_eq!(one_line("a\n  b\tc", 10), "a b c");
        assert_eq!(one_line("abcdefghijkl", 5), "abcd…");
    }

    #[test]
    fn subjects_of_gitlab_bodies() {
        let mr = br#"{"object_kind":"merge_request","project":{"path_with_namespace":"g/p"},"object_attributes":{"iid":16}}"#;
        assert_eq!(subject(mr).as_deref(), Some("g/p!16"));
        let note = br#"{"object_kind":"note","project":{"path_with_namespace":"g/p"},"object_attributes":{"id":5}}"#;
        assert_eq!(subject(note).as_deref(), Some("g/p (note)"));
        assert_eq!(subject(b"not json"), None);
    }

    #[test]
    fn tables_align_all_but_the_last_column() {
        let t = table(
            &["ID", "STATE", "ERROR"],
            &[
                vec!["7".into(), "dead".into(), "GitLab answered 500".into()],
                vec!["12".into(), "in_flight".into(), String::new()],
            ],
        );
        assert_eq!(
            t,
            "ID  STATE      ERROR\n7   dead       GitLab answered 500\n12  in_flight\n"
        );
    }
}
