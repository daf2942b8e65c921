//! Small utilities: times, percent-decoding, label and id normalization.

use super::*;

/// GitLab's timestamp format: `2022-05-14T03:38:31.354Z`.
pub(super) fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339, a naive `YYYY-MM-DDTHH:MM:SS[.fff]` (UTC) or a plain date.
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

/// Decodes `%XX` escapes (leaves `+` alone, as in paths).
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn normalize_labels(labels: &mut Vec<String>) {
    labels.sort();
    labels.dedup();
}

pub(super) fn dedup_keep_order(ids: &mut Vec<u64>) {
    let mut seen = Vec::new();
    ids.retain(|id| {
        if seen.contains(id) {
            return false;
        }
        seen.push(*id);
        true
    });
}

pub(super) fn is_draft_title(title: &str) -> bool {
    let lower = title.trim_start().to_ascii_lowercase();
    ["draft:", "[draft]", "(draft)", "draft -"]
        .iter()
        .any(|p| lower.starts_with(p))
}
