//! Property-based fuzzing (proptest) of everything that reads outside input: webhook payload
//! parsing, signature and token verification, policy parsing, and note rendering with hostile
//! text. No input may panic; the safety properties of notes must hold for every input.
//!
//! The default run is short (CI). A long run:
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz` (see BENCHMARKS.md).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use proptest::prelude::*;
use serde_json::Value;

use cocreate::decide::commands::parse_command;
use cocreate::events::{self, EventKind};
use cocreate::messages::{Marker, Messages, Welcome};
use cocreate::neutralize;
use cocreate::policy::Policies;
use cocreate::webhook::{Rejection, SignatureHeaders, SigningKey, Verifier};

/// Cases per property: `PROPTEST_CASES` when set, else `default` (kept small for CI).
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        // Failures are shrunk and printed; a found case becomes a fixed test below.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const KINDS: &[&str] = &[
    "Merge Request Hook",
    "System Hook",
    "Issue Hook",
    "Confidential Issue Hook",
    "Note Hook",
    "Push Hook",
    "",
];

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gitlab/payloads")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn payload_fixtures() -> Vec<Value> {
    [
        "merge_request_open.json",
        "merge_request_update.json",
        "system_hook_merge_request.json",
        "issue_open.json",
    ]
    .iter()
    .map(|n| serde_json::from_slice(&fixture(n)).expect("fixture is JSON"))
    .collect()
}

/// Field names the parsers look at, so generated objects often hit real fields.
const KEYS: &[&str] = &[
    "object_kind",
    "event_name",
    "user",
    "project",
    "object_attributes",
    "labels",
    "reviewers",
    "changes",
    "previous",
    "current",
    "id",
    "iid",
    "title",
    "author_id",
    "state",
    "action",
    "draft",
    "username",
    "name",
    "email",
    "path_with_namespace",
    "target_project_id",
    "reviewer_ids",
    "project_id",
    "merge_request",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        prop::sample::select(vec!["merge_request", "opened", "open", "update", "issue"])
            .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(5, 96, 8, |inner| {
        let key = prop_oneof![prop::sample::select(KEYS).prop_map(str::to_owned), ".{0,8}"];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Replaces the value at a pseudo-random path of `doc` (chosen by `steps`) with `new`.
fn replace_at(doc: &mut Value, steps: &[usize], new: Value) {
    let child = match (doc, steps.split_first()) {
        (Value::Object(m), Some((s, _))) if !m.is_empty() => {
            let key = m.keys().nth(s % m.len()).cloned().expect("index in range");
            m.get_mut(&key)
        }
        (Value::Array(a), Some((s, _))) if !a.is_empty() => {
            let n = a.len();
            a.get_mut(s % n)
        }
        (doc, _) => {
            *doc = new;
            return;
        }
    };
    if let Some(child) = child {
        replace_at(child, &steps[1..], new);
    }
}

fn parse_all_kinds(body: &[u8]) {
    for kind in KINDS {
        let _ = events::parse(EventKind::from_header(kind), body);
    }
}

// ---------------------------------------------------------------------------------------------
// Payload parsing
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_all_kinds(&body);
    }

    #[test]
    fn parse_never_panics_on_json(v in json_value()) {
        parse_all_kinds(&serde_json::to_vec(&v).expect("json"));
    }

    #[test]
    fn parse_never_panics_on_mutated_gitlab_payloads(
        which in 0usize..4,
        steps in prop::collection::vec(any::<usize>(), 1..6),
        new in json_value(),
    ) {
        let mut doc = payload_fixtures().swap_remove(which);
        replace_at(&mut doc, &steps, new);
        parse_all_kinds(&serde_json::to_vec(&doc).expect("json"));
    }

    #[test]
    fn parse_never_panics_on_byte_edits_of_gitlab_payloads(
        which in 0usize..4,
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let mut body = serde_json::to_vec(&payload_fixtures().swap_remove(which)).expect("json");
        for (at, byte, op) in edits {
            let i = at % (body.len() + 1);
            match op {
                0 if i < body.len() => body[i] = byte,
                1 => body.insert(i, byte),
                _ if i < body.len() => { body.remove(i); }
                _ => {}
            }
        }
        parse_all_kinds(&body);
    }

    /// Valid payloads keep what matters, whatever users put in the free-text fields.
    #[test]
    fn valid_merge_request_payloads_round_trip(
        iid in any::<u64>(),
        project in any::<u64>(),
        title in any::<String>(),
        username in any::<String>(),
    ) {
        let mut doc: Value = serde_json::from_slice(&fixture("merge_request_open.json")).expect("json");
        doc["object_attributes"]["iid"] = iid.into();
        doc["object_attributes"]["target_project_id"] = project.into();
        doc["object_attributes"]["title"] = title.clone().into();
        doc["user"]["username"] = username.clone().into();
        let body = serde_json::to_vec(&doc).expect("json");
        let parsed = events::parse(EventKind::MergeRequest, &body)
            .expect("valid")
            .expect("supported");
        #[allow(irrefutable_let_patterns)] // more event kinds may come
        let events::Event::MergeRequest(mr) = parsed else {
            panic!("a merge request event");
        };
        prop_assert_eq!(mr.mr().iid, iid);
        prop_assert_eq!(mr.mr().project_id, project);
        prop_assert_eq!(&mr.object_attributes.title, &title);
        prop_assert_eq!(&mr.user.username, &username);
    }
}

#[test]
fn deeply_nested_payloads_are_errors_not_stack_overflows() {
    for depth in [1_000, 100_000] {
        for body in [
            "[".repeat(depth),
            format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
            "{\"a\":".repeat(depth),
            format!("{{\"object_attributes\":{}", "{\"x\":".repeat(depth)),
        ] {
            parse_all_kinds(body.as_bytes());
            assert!(events::parse(EventKind::MergeRequest, body.as_bytes()).is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Signatures and tokens
// ---------------------------------------------------------------------------------------------

fn key_from(bytes: &[u8]) -> SigningKey {
    let raw = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    SigningKey::parse(&raw).expect("a whsec_ key always parses")
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn signing_key_parse_never_panics(raw in any::<String>()) {
        let _ = SigningKey::parse(&raw);
    }

    #[test]
    fn check_signature_never_panics_and_refuses_junk(
        key in prop::collection::vec(any::<u8>(), 0..48),
        id in prop::option::of(any::<String>()),
        ts in prop::option::of(prop_oneof![any::<String>(), any::<i64>().prop_map(|t| t.to_string())]),
        sig in prop::option::of(prop_oneof![
            any::<String>(),
            "(v1,[A-Za-z0-9+/=]{0,60} ?){0,4}",
        ]),
        body in prop::collection::vec(any::<u8>(), 0..256),
        now in any::<i64>(),
    ) {
        let v = Verifier::new(vec![], vec![key_from(&key)], Duration::from_secs(300));
        let h = SignatureHeaders { id: id.as_deref(), timestamp: ts.as_deref(), signature: sig.as_deref() };
        prop_assert!(v.check_signature(h, &body, now).is_err());
    }

    #[test]
    fn signatures_verify_exactly_inside_the_window(
        key in prop::collection::vec(any::<u8>(), 1..64),
        id in "[ -~]{0,40}",
        ts in 0i64..4_000_000_000,
        skew in -600i64..=600,
        body in prop::collection::vec(any::<u8>(), 0..512),
        flip in any::<prop::sample::Index>(),
    ) {
        let k = key_from(&key);
        let v = Verifier::new(vec![], vec![k.clone()], Duration::from_secs(300));
        let sig = k.sign(&id, ts, &body);
        let ts_s = ts.to_string();
        let h = SignatureHeaders { id: Some(&id), timestamp: Some(&ts_s), signature: Some(&sig) };
        let got = v.check_signature(h, &body, ts + skew);
        if skew.abs() <= 300 {
            prop_assert_eq!(got, Ok(()));
            // Among other signatures (sender-side rotation) it still verifies.
            let several = format!("v1,AAAA {sig} v1,BBBB");
            let h2 = SignatureHeaders { signature: Some(&several), ..h };
            prop_assert_eq!(v.check_signature(h2, &body, ts), Ok(()));
        } else {
            prop_assert_eq!(got, Err(Rejection::StaleTimestamp));
        }
        if !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 0x01;
            prop_assert_eq!(v.check_signature(h, &tampered, ts), Err(Rejection::BadSignature));
        }
        // Another key never verifies it.
        let mut other_key = key.clone();
        other_key[0] ^= 0x80;
        let other = Verifier::new(vec![], vec![key_from(&other_key)], Duration::from_secs(300));
        prop_assert_eq!(other.check_signature(h, &body, ts), Err(Rejection::BadSignature));
    }

    #[test]
    fn tokens_match_exactly_one_of_the_configured(
        tokens in prop::collection::vec("[ -~]{0,24}", 0..4),
        given in prop::option::of(prop::collection::vec(any::<u8>(), 0..32)),
        pick in any::<prop::sample::Index>(),
    ) {
        let v = Verifier::new(tokens.clone(), vec![], Duration::from_secs(300));
        let configured: Vec<&str> = tokens.iter().map(|t| t.trim()).filter(|t| !t.is_empty()).collect();
        let got = v.check_token(given.as_deref());
        let want = if configured.is_empty() {
            Ok(())
        } else {
            match &given {
                None => Err(Rejection::MissingToken),
                Some(g) if configured.iter().any(|t| t.as_bytes() == g.as_slice()) => Ok(()),
                Some(_) => Err(Rejection::BadToken),
            }
        };
        prop_assert_eq!(got, want);
        if !configured.is_empty() {
            let t = configured[pick.index(configured.len())];
            prop_assert_eq!(v.check_token(Some(t.as_bytes())), Ok(()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------------------------

fn repo_policy(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(name),
    )
    .unwrap_or_default()
}

fn load(orgs: &str, routing: &str, agreements: Option<&str>) -> Result<Policies, String> {
    let mut sources: Vec<(PathBuf, &str)> = vec![
        (PathBuf::from("organizations.yml"), orgs),
        (PathBuf::from("routing.yml"), routing),
    ];
    if let Some(a) = agreements {
        sources.push((PathBuf::from("agreements.yml"), a));
    }
    Policies::from_sources(&sources, "fuzz".into()).map_err(|e| {
        for err in &e.0 {
            let file = err.file.display().to_string();
            assert!(
                ["organizations.yml", "routing.yml", "agreements.yml"]
                    .iter()
                    .any(|f| file.ends_with(f)),
                "an error names its file: {err}"
            );
            assert!(err.line.is_none_or(|l| l >= 1), "{err}");
            assert!(!err.message.is_empty(), "{err}");
        }
        e.to_string()
    })
}

/// A YAML organizations document from a small grammar: valid and invalid slugs, tiers,
/// usernames that collide across organizations, unknown keys.
fn organizations_yaml() -> impl Strategy<Value = String> {
    let slug = prop_oneof![
        "org[0-9]{1,2}",
        Just("Bad_Slug".to_owned()),
        Just(String::new()),
        "[a-z-]{1,12}"
    ];
    let user = prop_oneof!["dev-[0-9]", "Dev-[0-9]", "[a-zA-Z0-9@ ./-]{0,10}"];
    let org = (
        slug,
        ".{0,10}",
        0u8..6,
        prop::collection::vec(user, 0..4),
        prop::collection::vec("[a-z]{1,6}\\.example\\.com", 0..3),
        prop::option::of(prop::sample::select(vec![
            "groups: [vendor/customer]",
            "trust_profile_organization: Example",
            "account_team: {csm: csm-x}",
            "slack_channel: \"#x\"",
            "unknown_key: 1",
            "tier: [1, 2]",
        ])),
    );
    prop::collection::vec(org, 0..5).prop_map(|orgs| {
        let mut y = String::from("organizations:\n");
        for (slug, name, tier, users, domains, extra) in orgs {
            y.push_str(&format!(
                "  - slug: {}\n    name: {}\n    tier: {tier}\n    usernames: {}\n    email_domains: {}\n",
                serde_json::to_string(&slug).expect("json"),
                serde_json::to_string(&name).expect("json"),
                serde_json::to_string(&users).expect("json"),
                serde_json::to_string(&domains).expect("json"),
            ));
            if let Some(e) = extra {
                y.push_str(&format!("    {e}\n"));
            }
        }
        y
    })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn policies_never_panic_on_arbitrary_text(orgs in any::<String>(), routing in any::<String>(), agreements in prop::option::of(any::<String>())) {
        let _ = load(&orgs, &routing, agreements.as_deref());
    }

    #[test]
    fn policies_never_panic_on_yaml_shaped_text(
        orgs in "([a-z_:\\-\\[\\]{}&*!|>'\"#, ]|\\n  |\\n    ){0,200}",
        routing in "([a-z_:\\-\\[\\]{}&*!|>'\"#, ]|\\n  |\\n    ){0,200}",
    ) {
        let _ = load(&orgs, &routing, None);
        let _ = load(&orgs, &repo_policy("routing.yml"), Some(&routing));
    }

    /// What validation promises: an accepted policy has unique slugs, tiers 1–3, and no
    /// username (in any letter case) claimed by two organizations.
    #[test]
    fn accepted_organizations_are_consistent(orgs in organizations_yaml()) {
        if let Ok(p) = load(&orgs, &repo_policy("routing.yml"), None) {
            let all = p.organizations.all();
            let mut slugs: Vec<String> = all.iter().map(|o| o.slug.to_string()).collect();
            slugs.sort();
            slugs.dedup();
            prop_assert_eq!(slugs.len(), all.len());
            prop_assert!(all.iter().all(|o| (1..=3).contains(&o.tier.get())));
            // A name may repeat inside one organization (harmless), never across two.
            let mut owners: std::collections::BTreeMap<String, String> = Default::default();
            for o in all {
                let slug = o.slug.to_string();
                for u in &o.usernames {
                    let owner = owners.entry(u.to_lowercase()).or_insert_with(|| slug.clone());
                    prop_assert_eq!(
                        &*owner,
                        &slug,
                        "username {} accepted for two organizations:\n{}",
                        u,
                        orgs
                    );
                }
            }
        }
    }
}

#[test]
fn deeply_nested_and_aliased_policies_are_errors_not_crashes() {
    let routing = repo_policy("routing.yml");
    for depth in [1_000, 100_000] {
        for text in [
            "[".repeat(depth),
            "{a: ".repeat(depth),
            "- ".repeat(depth),
            format!("organizations:\n{}", "  - ".repeat(depth)),
        ] {
            assert!(load(&text, &routing, None).is_err());
            assert!(load(&repo_policy("organizations.yml"), &text, None).is_err());
        }
    }
    // An alias bomb in a place that takes a list.
    let mut bomb = String::from("organizations:\n  - slug: bomb\n    name: B\n    tier: 1\n    usernames: &a0 [a, b, c, d, e, f, g, h, i, j]\n");
    for i in 1..10 {
        let p = format!("*a{}", i - 1);
        bomb.push_str(&format!(
            "  - slug: bomb{i}\n    name: B\n    tier: 1\n    usernames: &a{i} [{}]\n",
            vec![p; 10].join(", ")
        ));
    }
    assert!(load(&bomb, &routing, None).is_err());
}

// ---------------------------------------------------------------------------------------------
// Neutralization and note rendering
// ---------------------------------------------------------------------------------------------

/// Text built from the pieces attackers use, long enough to reach the truncation.
fn hostile_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "@",
        "all",
        "here",
        "/",
        "close",
        "merge",
        "\n",
        "\r\n",
        "\r",
        "\t",
        "<",
        ">",
        "!",
        "[",
        "]",
        "(",
        ")",
        "`",
        "*",
        "_",
        "&",
        "#",
        "|",
        "~",
        ":",
        "\\",
        "\"",
        "<!--",
        "-->",
        "cocreate:welcome",
        "\u{202E}",
        "\u{2066}",
        "\u{2060}",
        "\u{85}",
        "\u{2028}",
        "\u{2029}",
        "\u{200B}",
        "\u{200D}",
        "\u{200F}",
        "\u{061C}",
        "\u{FEFF}",
        "\u{202A}",
        "\u{2069}",
        "\u{E0041}",
        "\u{0}",
        "\u{1b}[31m",
        " ",
        "  ",
        "a",
        "é",
        "日本",
        "👍",
        "http://evil.example.com",
        "&lt;",
        "&#64;",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(piece.clone(), 0..40).prop_map(|p| p.concat()),
        // Around the 300-character cut.
        (280usize..320, prop::collection::vec(piece.clone(), 0..6)).prop_map(|(n, p)| format!(
            "{}{}",
            "a".repeat(n),
            p.concat()
        )),
        (296usize..301, prop::collection::vec(piece, 1..4)).prop_map(|(n, p)| format!(
            "{}{}",
            "a".repeat(n),
            p.concat()
        )),
    ]
}

/// The safety properties of text that goes into a note.
fn assert_inline_safe(input: &str, out: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        !out.chars().any(|c| c.is_control()),
        "no control characters (so no new line): {input:?} -> {out:?}"
    );
    prop_assert!(
        !out.starts_with('/'),
        "cannot start a quick action: {input:?} -> {out:?}"
    );
    prop_assert!(
        out.match_indices('@')
            .all(|(i, _)| out[i + 1..].starts_with('\u{2060}')),
        "every @ is followed by U+2060: {input:?} -> {out:?}"
    );
    prop_assert!(
        !out.contains('<') && !out.contains('>'),
        "no HTML: {input:?} -> {out:?}"
    );
    prop_assert!(
        !out.contains('\u{202E}') && !out.contains('\u{2066}'),
        "no direction overrides: {input:?} -> {out:?}"
    );
    // Invisible and direction-control characters are gone; the only one left is the word
    // joiner neutralize itself puts after each `@`.
    for (i, c) in out.char_indices() {
        let ours = c == '\u{2060}' && out[..i].ends_with('@');
        prop_assert!(
            ours || !neutralize::is_invisible(c),
            "invisible {c:?} left: {input:?} -> {out:?}"
        );
    }
    prop_assert!(
        !out.contains('\u{2028}') && !out.contains('\u{2029}'),
        "no line or paragraph separators: {input:?} -> {out:?}"
    );
    // Cut only between whole escapes: every backslash escapes a character, every `&` starts a
    // whole entity.
    let body = out.strip_suffix('…').unwrap_or(out);
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            prop_assert!(
                chars.next().is_some(),
                "dangling backslash: {input:?} -> {out:?}"
            );
        }
    }
    for (i, _) in body.match_indices('&') {
        prop_assert!(
            ["&amp;", "&lt;", "&gt;"]
                .iter()
                .any(|e| body[i..].starts_with(e)),
            "half an entity: {input:?} -> {out:?}"
        );
    }
    prop_assert!(
        out.chars().count() <= 301,
        "short: {} chars",
        out.chars().count()
    );
    Ok(())
}

/// Found by `inline_is_always_safe`: the 300-character cut fell between an `@` and its U+2060.
#[test]
fn the_cut_never_leaves_a_bare_at_sign() {
    for n in 290..302 {
        for tail in ["@all", "@&@", "@", "/close", "<b>"] {
            let input = format!("{}{tail}", "a".repeat(n));
            let out = neutralize::inline(&input);
            assert!(
                out.match_indices('@')
                    .all(|(i, _)| out[i + 1..].starts_with('\u{2060}')),
                "{input:?} -> {out:?}"
            );
            assert!(!out.contains('<'), "{out:?}");
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn inline_is_always_safe(input in hostile_text()) {
        let out = neutralize::inline(&input);
        assert_inline_safe(&input, &out)?;
    }

    #[test]
    fn mention_is_a_plain_username_or_inert(input in hostile_text()) {
        let out = neutralize::mention(&input);
        if neutralize::is_plain_username(&input) {
            prop_assert_eq!(out, format!("@{input}"));
        } else {
            assert_inline_safe(&input, &out)?;
        }
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// Nobody reading the thread sees a command in an HTML comment or a quote, so none runs.
    #[test]
    fn commands_hidden_in_html_comments_or_quotes_never_run(text in hostile_text()) {
        let body = format!("@cocreate-bot ready {text}");
        let mut inner = body.clone();
        while inner.contains("-->") {
            inner = inner.replace("-->", "");
        }
        let commented = format!("<!-- {inner} -->");
        prop_assert_eq!(parse_command(&commented, "cocreate-bot"), None, "{:?}", commented);
        let quoted: String = body.lines().map(|l| format!("> {l}\n")).collect();
        prop_assert_eq!(parse_command(&quoted, "cocreate-bot"), None, "{:?}", quoted);
    }
}

/// `@`s GitLab would treat as mentions: not followed by U+2060 and not inside a word.
fn live_mentions(body: &str) -> Vec<String> {
    body.match_indices('@')
        .filter(|(i, _)| !body[i + 1..].starts_with('\u{2060}'))
        .filter(|(i, _)| {
            !body[..*i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .map(|(i, _)| {
            body[i + 1..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .collect::<String>()
        })
        .collect()
}

fn messages() -> &'static Messages {
    static M: std::sync::OnceLock<Messages> = std::sync::OnceLock::new();
    M.get_or_init(|| {
        Messages::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("templates")).expect("templates")
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn welcome_notes_ping_only_whom_they_mean_and_run_nothing(
        title in hostile_text(),
        author in prop_oneof![hostile_text(), "[a-z][a-z0-9-]{0,12}"],
        reviewer in prop::option::of(prop::sample::select(vec!["cs-reviewer-1", "cs-reviewer-2"])),
    ) {
        let m = messages();
        let body = m
            .welcome(&Welcome {
                author_username: &author,
                title: &title,
                reviewer_username: reviewer,
                bot_username: "cocreate-bot",
                cca: None,
                issue_list: None,
                contribution_guide: None,
            })
            .expect("the welcome note renders for any input")
            .render();
        let is_marker = |l: &str| l.starts_with("<!-- cocreate:") && l.ends_with(" -->");
        let welcome = Marker::Welcome.html();
        prop_assert_eq!(body.matches(&welcome).count(), 1, "{}", body);
        prop_assert!(body.starts_with(&welcome), "{}", body);
        for line in body.lines().skip_while(|l| is_marker(l)) {
            prop_assert!(!line.trim_start().starts_with('/'), "quick action line: {:?}\n{}", line, body);
            prop_assert!(!line.contains('<'), "HTML: {:?}\n{}", line, body);
        }
        let mut allowed = vec!["cocreate-bot".to_owned()];
        allowed.extend(reviewer.map(str::to_owned));
        if neutralize::is_plain_username(&author) {
            allowed.push(author.clone());
        }
        for m in live_mentions(&body) {
            let named = allowed.iter().any(|a| *a == m || *a == m.trim_end_matches('.'));
            prop_assert!(named, "unexpected mention @{} in\n{}", m, body);
        }
    }
}
