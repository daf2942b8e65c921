use super::accounts::*;
use super::*;
use crate::decide::score::*;
use crate::policy::Segmentation;

const HEADER: &str = "organization,slug,subscription,seats,industry,prior_oss,usage_growth,relationship,features_used,tech_overlap,gitlab_usernames,issues_mrs\n";

fn row(line: &str) -> AccountRow {
    let (rows, errors) = parse_accounts(&format!("{HEADER}{line}\n"));
    assert!(errors.is_empty(), "{errors:?}");
    rows.into_iter().next().expect("one row")
}

#[test]
fn arr_is_read_by_slug() {
    let text = "organization,slug,arr,seats\nExample Aero,,\"1,250,000\",5\nExample Telco,telco-x,300000.5,1\nExample Bank,,,2\n";
    let arr = parse_arr(text).expect("ok").expect("arr column");
    assert_eq!(
        arr,
        BTreeMap::from([
            ("example-aero".to_owned(), 1_250_000.0),
            ("telco-x".to_owned(), 300_000.5),
        ])
    );
    // No `arr` column: nothing to sum.
    assert_eq!(parse_arr(HEADER).expect("ok"), None);
    let bad = parse_arr("organization,arr\nA,lots\nB,-5\nA,1\nA,2\n");
    let Err(ScoreError::BadRows(errors)) = bad else {
        panic!("{bad:?}")
    };
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, vec![2, 3, 5], "{errors:?}");
    assert!(errors[0].to_string().contains("line 2, column `arr`"));
}

#[test]
fn slugs_are_made_from_names() {
    for (name, slug) in [
        ("Example Freight, Inc.", "example-freight-inc"),
        ("  ACME  ", "acme"),
        ("Zeta--Labs", "zeta-labs"),
    ] {
        assert_eq!(slugify(name), slug);
    }
}

#[test]
fn bad_cells_name_line_and_column() {
    let text = format!(
        "{HEADER}Example A,,ultimate,100,Finance,yes,10,3,4,2,,\nExample B,,platinum,1x,Retail,maybe,fast,9,4,6,,\n,,free,1,Retail,no,0,1,0,0,,\n"
    );
    let (rows, errors) = parse_accounts(&text);
    assert_eq!(rows.len(), 1);
    let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        got,
        vec![
            "line 3, column `subscription`: `platinum` is not free, premium or ultimate",
            "line 3, column `seats`: `1x` is not a whole number of 0 or more",
            "line 3, column `prior_oss`: `maybe` is not yes or no",
            "line 3, column `usage_growth`: `fast` is not a percentage like 25 or -5%",
            "line 3, column `relationship`: `9` is not a whole number from 1 to 5",
            "line 3, column `tech_overlap`: `6` is not a whole number from 0 to 5",
            "line 4, column `organization`: is empty; it is required",
        ]
    );
}

#[test]
fn missing_required_columns_are_header_errors() {
    let (rows, errors) = parse_accounts("organization,seats\nA,1\n");
    assert!(rows.is_empty());
    let cols: Vec<&str> = errors.iter().map(|e| e.column.as_str()).collect();
    assert_eq!(
        cols,
        vec![
            "subscription",
            "industry",
            "prior_oss",
            "usage_growth",
            "relationship",
            "features_used",
            "tech_overlap"
        ]
    );
    assert!(errors.iter().all(|e| e.line == 1));
}

#[test]
fn scores_are_the_weighted_fractions_out_of_100() {
    let p = Segmentation::default();
    // (row, issues/MRs, expected score, expected tier)
    let cases = [
        // Everything full: 100.
        ("Max,,ultimate,5000,Telco,yes,80,5,12,5,,", 25, 100.0, 1),
        // Nothing: free (0), 0 seats, other industry, no OSS, shrinking, weak, 0 features, 0 overlap.
        ("Min,,free,0,Retail,no,-20,1,0,0,,", 0, 0.0, 3),
        // issues 10/20*20=10, features 5/10*10=5, premium .6*15=9, seats 1000/2000*10=5,
        // industry 10, oss 15, growth 25/50*5=2.5, relationship 3/5 → .5*10=5, overlap 3/5*5=3
        // = 64.5
        ("Mid,,premium,1000,finance,yes,25,3,5,3,,", 10, 64.5, 1),
        // Same without history and OSS: 64.5 - 10 - 15 = 39.5; overlap 3 → Tier 2.
        ("Mid2,,premium,1000,finance,no,25,3,5,3,,", 0, 39.5, 2),
    ];
    for (line, history, score, tier) in cases {
        let s = score_row(&row(line), history, HistorySource::Gitlab, &p);
        assert_eq!(s.score, score, "{line}: {:?}", s.criteria);
        assert_eq!(s.tier, tier, "{line}: {}", s.tier_reason);
        let sum: f64 = s.criteria.iter().map(|c| c.points).sum();
        assert!((sum - score).abs() < 0.5, "{line}");
    }
}

#[test]
fn tiers_follow_the_action_plan() {
    let p = Segmentation::default();
    // (subscription, prior_oss, overlap, issues/MRs) → tier
    let cases = [
        ("ultimate", "yes", 0, 10, 1),
        ("premium", "yes", 0, 50, 1),
        ("free", "yes", 0, 50, 3),    // not Premium/Ultimate, no overlap
        ("free", "yes", 4, 50, 2),    // … but clear overlap
        ("ultimate", "no", 3, 50, 2), // no prior contribution
        ("ultimate", "yes", 2, 9, 3), // weak history, little overlap
        ("ultimate", "yes", 3, 9, 2),
    ];
    for (sub, oss, overlap, history, tier) in cases {
        let r = row(&format!("T,,{sub},10,Retail,{oss},0,3,1,{overlap},,"));
        let (got, why) = tier_of(&r, history, &p);
        assert_eq!(got, tier, "{sub} {oss} {overlap} {history}: {why}");
    }
}

#[test]
fn ties_are_broken_by_tier_then_name_then_slug() {
    let p = Segmentation::default();
    let mk = |name: &str, slug: &str, score: f64, tier: u8| Scored {
        score,
        tier,
        slug: slug.into(),
        organization: name.into(),
        ..score_row(
            &row("X,,free,0,Retail,no,0,1,0,0,,"),
            0,
            HistorySource::Unknown,
            &p,
        )
    };
    let input = vec![
        mk("beta", "b", 50.0, 2),
        mk("Alpha", "a2", 50.0, 2),
        mk("alpha", "a1", 50.0, 2),
        mk("Zulu", "z", 50.0, 1),
        mk("Top", "t", 70.0, 3),
    ];
    let mut reversed = input.clone();
    reversed.reverse();
    for order in [input, reversed] {
        let ranked = rank(order);
        let slugs: Vec<&str> = ranked.iter().map(|s| s.slug.as_str()).collect();
        assert_eq!(slugs, vec!["t", "z", "a1", "a2", "b"]);
        assert_eq!(ranked[4].rank, 5);
    }
}

#[test]
fn coverage_counts_tier_1_and_2_against_the_prospect_target() {
    let p = Segmentation::default();
    let mk = |tier: u8| Scored {
        tier,
        ..score_row(
            &row("X,,free,0,Retail,no,0,1,0,0,,"),
            0,
            HistorySource::Unknown,
            &p,
        )
    };
    for (tiers, qualified, covered) in [
        (vec![1; 21], 21, true),
        (vec![2; 20], 20, false),
        ([vec![1; 10], vec![2; 11], vec![3; 5]].concat(), 21, true),
        (vec![3; 40], 0, false),
    ] {
        let scored: Vec<Scored> = tiers.into_iter().map(mk).collect();
        let c = coverage(&scored, &p);
        assert_eq!((c.qualified, c.covered), (qualified, covered));
    }
}

#[test]
fn csv_history_is_used_only_without_a_gitlab_count() {
    let p = Segmentation::default();
    let rows = vec![
        row("A,,free,0,Retail,no,0,1,0,0,,7"),
        row("B,,free,0,Retail,no,0,1,0,0,,7"),
        row("C,,free,0,Retail,no,0,1,0,0,,"),
    ];
    let counts = BTreeMap::from([("a".to_owned(), 3u64)]);
    let r = build_report(&rows, &counts, false, vec![], &p, 2);
    let by: BTreeMap<&str, (u64, HistorySource)> = r
        .accounts
        .iter()
        .map(|s| (s.slug.as_str(), (s.issues_mrs, s.history_source)))
        .collect();
    assert_eq!(by["a"], (3, HistorySource::Gitlab));
    assert_eq!(by["b"], (7, HistorySource::Csv));
    assert_eq!(by["c"], (0, HistorySource::Unknown));
}
