//! Makes user-controlled text safe to put into a GitLab note.
//!
//! GitLab acts on three things in a note body: `@mentions` (they notify people and whole groups,
//! `@all` included), quick actions (`/close`, `/merge`, … at the start of a line) and Markdown or
//! HTML (links, images, hidden comments that could fake our markers). Titles and names are
//! written by whoever opened the MR, so they go through [`inline`] before any template sees them.

/// The longest neutralized text, in characters (an ellipsis follows when it was cut).
pub const MAX_CHARS: usize = 300;

/// Characters that render as nothing but change what a reader sees or how text is split:
/// zero-width spaces and joiners, direction marks, embeddings, overrides and isolates (which
/// can reorder what a reviewer reads), the word joiner and invisible operators, the byte
/// order mark, soft hyphens and Unicode tag characters (invisible "ASCII").
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'
        | '\u{061C}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}'
        | '\u{E0000}'..='\u{E007F}')
}

/// Neutralizes text meant to sit inside one line of a note.
///
/// - newlines, line and paragraph separators (U+2028, U+2029) and other control characters
///   become spaces, so nothing starts a new line (no quick action, heading or list can begin);
/// - invisible and direction-control characters ([`is_invisible`]) are removed;
/// - `@` is followed by U+2060 WORD JOINER, which GitLab does not treat as part of a mention,
///   so `@all` renders as text and notifies nobody;
/// - Markdown and HTML punctuation is backslash-escaped or entity-encoded, so no link, image,
///   emphasis, HTML tag or `<!-- marker -->` can be formed;
/// - every `/` is escaped (`\/` renders as `/`), so even a template that puts the value at the
///   start of a line cannot form a quick action;
/// - the result is at most [`MAX_CHARS`] characters (plus `…` when cut), and a cut falls only
///   between whole escapes: never after a lone `\`, inside an entity or between `@` and its
///   word joiner.
pub fn inline(text: &str) -> String {
    // Each input character becomes one unit, its escaped form; trims and the cut work on whole
    // units. Streaming: a hostile 100 kB title costs no more memory than the note it ends in.
    let mut out = String::with_capacity(text.len().min(4 * MAX_CHARS) + 4);
    let mut used = 0;
    // Blank units after the last kept one: kept only if something follows (trailing trim).
    let mut pending = String::new();
    let mut pending_chars = 0;
    let mut unit = String::with_capacity(8);
    for c in text.chars() {
        unit.clear();
        escape(c, &mut unit);
        if unit.is_empty() {
            continue;
        }
        let n = unit.chars().count();
        if unit.chars().all(char::is_whitespace) {
            if !out.is_empty() {
                pending.push_str(&unit);
                pending_chars += n;
            }
            continue;
        }
        if used + pending_chars + n > MAX_CHARS {
            // Keep notes short even for a hostile 100 kB title.
            out.push('…');
            return out;
        }
        out.push_str(&pending);
        used += pending_chars + n;
        pending.clear();
        pending_chars = 0;
        out.push_str(&unit);
    }
    out
}

/// The escaped form of one character (nothing for an invisible one).
fn escape(c: char, unit: &mut String) {
    match c {
        '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}' => unit.push(' '),
        c if c.is_control() => unit.push(' '),
        c if is_invisible(c) => {}
        '@' => unit.push_str("@\u{2060}"),
        '&' => unit.push_str("&amp;"),
        '<' => unit.push_str("&lt;"),
        '>' => unit.push_str("&gt;"),
        '/' | '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '~' | '!' | '$'
        | '{' | '}' | ':' | '"' => {
            unit.push('\\');
            unit.push(c);
        }
        c => unit.push(c),
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
            // Invisible and direction-control characters are removed.
            ("a\u{200B}b\u{200C}c\u{200D}d\u{200E}e\u{200F}f", "abcdef"),
            ("\u{061C}x\u{FEFF}y", "xy"),
            ("\u{202A}\u{202B}\u{202C}\u{202D}\u{202E}z", "z"),
            ("\u{2066}\u{2067}\u{2068}\u{2069}z", "z"),
            ("@\u{200B}all", "@\u{2060}all"),
            ("/\u{2060}close", "\\/close"),
            ("so\u{00AD}ft \u{E0041}\u{E0042}tag", "soft tag"),
            // Line and paragraph separators are spaces: no new line begins.
            ("one\u{2028}/close\u{2029}two", "one \\/close two"),
            ("\u{2028}\u{2029}x\u{2028}", "x"),
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
    fn the_cut_falls_only_between_whole_escapes() {
        // (filler length, tail): the cut lands inside the tail's escape for some lengths.
        for n in 290..=300 {
            for tail in [
                "\\\\\\",
                "&&&&",
                "<<<<",
                "////",
                "@@@@",
                "::::",
                "\u{2028}x",
            ] {
                let out = inline(&format!("{}{}", "a".repeat(n), tail.repeat(20)));
                let body = out.strip_suffix('…').unwrap_or(&out);
                assert!(body.chars().count() <= MAX_CHARS, "{out:?}");
                // Every backslash escapes something; every entity is whole.
                let trailing = body.len() - body.trim_end_matches('\\').len();
                assert!(trailing % 2 == 0, "dangling backslash: {out:?}");
                let tail_amp = body.rfind('&');
                if let Some(i) = tail_amp {
                    assert!(
                        ["&amp;", "&lt;", "&gt;"]
                            .iter()
                            .any(|e| body[i..].starts_with(e)),
                        "half entity: {out:?}"
                    );
                }
                assert!(!body.ends_with('@'), "{out:?}");
            }
        }
    }

    #[test]
    fn mentions_only_for_plain_usernames() {
        assert_eq!(mention("cs-reviewer-1"), "@cs-reviewer-1");
        assert_eq!(mention("all everyone"), "all everyone");
        assert_eq!(mention("x\n/close"), "x \\/close");
    }
}
