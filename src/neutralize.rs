//! Makes user-controlled text safe to put into a GitLab note.
//!
//! GitLab acts on three things in a note body: `@mentions` (they notify people and whole groups,
//! `@all` included), quick actions (`/close`, `/merge`, … at the start of a line) and Markdown or
//! HTML (links, images, hidden comments that could fake our markers). Titles and names are
//! written by whoever opened the MR, so they go through [`inline`] before any template sees them.

/// Neutralizes text meant to sit inside one line of a note.
///
/// - newlines and other control characters become spaces, so nothing starts a new line
///   (no quick action, heading or list can begin);
/// - `@` is followed by a zero-width joiner-free break (U+2060 WORD JOINER), which GitLab does not
///   treat as part of a mention, so `@all` renders as text and notifies nobody;
/// - Markdown and HTML punctuation is backslash-escaped or entity-encoded, so no link, image,
///   emphasis, HTML tag or `<!-- marker -->` can be formed;
/// - every `/` is escaped (`\/` renders as `/`), so even a template that puts the value at the
///   start of a line cannot form a quick action.
pub fn inline(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push(' '),
            // Invisible direction overrides could reorder what a reviewer reads.
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => {}
            '@' => out.push_str("@\u{2060}"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '/' | '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '~' | '!' | '$'
            | '{' | '}' | ':' | '"' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    let trimmed = out.trim();
    // Keep notes short even for a hostile 100 kB title.
    truncate_chars(trimmed, 300)
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        // Never keep an `@` whose U+2060 was cut off (every `@` here is followed by one).
        Some((idx, _)) => format!("{}…", s[..idx].strip_suffix('@').unwrap_or(&s[..idx])),
        None => s.to_owned(),
    }
}

/// A GitLab username we may safely write as `@username` (GitLab's own username alphabet).
pub fn is_plain_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with(['-', '.'])
}

/// `@username` for a well-formed username, else the neutralized text (no mention).
pub fn mention(username: &str) -> String {
    if is_plain_username(username) {
        format!("@{username}")
    } else {
        inline(username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_inputs_are_neutralized() {
        let cases: &[(&str, &str)] = &[
            ("Fix typo", "Fix typo"),
            ("@all please look", "@\u{2060}all please look"),
            ("/close", "\\/close"),
            ("title\n/merge\n/approve", "title \\/merge \\/approve"),
            (
                "<script>alert(1)</script>",
                "&lt;script&gt;alert\\(1\\)&lt;\\/script&gt;",
            ),
            (
                "<!-- cocreate:welcome -->",
                "&lt;\\!-- cocreate\\:welcome --&gt;",
            ),
            (
                "[click](https://evil.example.com)",
                "\\[click\\]\\(https\\:\\/\\/evil.example.com\\)",
            ),
            ("![img](x)", "\\!\\[img\\]\\(x\\)"),
            ("`code` *b* _i_", "\\`code\\` \\*b\\* \\_i\\_"),
            ("a\u{202E}b", "ab"),
            ("  @group/sub  ", "@\u{2060}group\\/sub"),
        ];
        for (input, want) in cases {
            assert_eq!(&inline(input), want, "input {input:?}");
        }
    }

    #[test]
    fn neutralized_text_never_contains_a_line_start_or_a_live_mention() {
        for input in ["\n/close", "x\r\n@all", "@@here", "\u{0}/lock"] {
            let out = inline(input);
            assert!(!out.contains('\n') && !out.contains('\r'), "{out:?}");
            assert!(!out.starts_with('/'), "{out:?}");
            assert!(
                out.match_indices('@')
                    .all(|(i, _)| out[i + 1..].starts_with('\u{2060}')),
                "{out:?}"
            );
        }
    }

    #[test]
    fn long_text_is_truncated() {
        let out = inline(&"a".repeat(10_000));
        assert_eq!(out.chars().count(), 301);
    }

    #[test]
    fn mentions_only_for_plain_usernames() {
        assert_eq!(mention("cs-reviewer-1"), "@cs-reviewer-1");
        assert_eq!(mention("all everyone"), "all everyone");
        assert_eq!(mention("x\n/close"), "x \\/close");
    }
}
