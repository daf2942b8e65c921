//! `cca-check` and `reconcile` sweeps against the fake GitLab.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

mod support;

use cocreate::clock::Clock;
use cocreate::jobs::JobContext;
use cocreate::jobs::{cca_check, reconcile};
use cocreate::policy::EMBEDDED;
use support::fake_gitlab::{FakeGitLab, IssueSpec, MrSpec, UserSpec};
use support::harness::{seed, AERO_DEV, TELCO_DEV, TRACKING_PROJECT, TRACKING_PROJECT_ID};
use support::jobs::{self, at};
use support::notes::CheckedGitLab;

const BANK_DEV: (u64, &str) = (503, "bdev");
const NOW: &str = "2026-11-23T12:00:00Z";
const BANK_SIGNED: &str = "  - organization: example-bank\n    signed: 2026-11-01\n    version: \"CCA 2.1\"\n    reference: \"contracts/cca/example-bank\"\n";

/// A job context whose agreements are the example ones plus `extra_agreement`.
async fn context(gitlab: &FakeGitLab, extra_agreement: &str, clock: Clock) -> JobContext {
    let agreements = format!("{}{extra_agreement}", EMBEDDED[2].1);
    let policies = jobs::policies(&[
        ("organizations.yml", EMBEDDED[0].1),
        ("routing.yml", EMBEDDED[1].1),
        ("agreements.yml", agreements.as_str()),
    ]);
    jobs::context(gitlab, policies, clock).await
}

/// `n` open Co-Create MRs over 3 projects, authors cycling aero (signed), telco (expired),
/// bank (missing). Every tenth has no organization label yet (recognised from its author).
fn world(n: u64) -> CheckedGitLab {
    let rt = tokio::runtime::Handle::current();
    let gitlab = tokio::task::block_in_place(|| rt.block_on(CheckedGitLab::start()));
    seed(&gitlab);
    gitlab.add_user(UserSpec {
        public_email: Some("dev@bank.example.com".into()),
        ..UserSpec::new(BANK_DEV.0, BANK_DEV.1)
    });
    let authors = [
        (AERO_DEV.0, "example-aero"),
        (TELCO_DEV.0, "example-telco"),
        (BANK_DEV.0, "example-bank"),
    ];
    for i in 0..n {
        let (author, org) = authors[(i % 3) as usize];
        let project = 10 + i % 3;
        let mut labels = vec![
            "Co-Create".to_string(),
            "Community contribution".to_string(),
        ];
        if i % 10 != 0 {
            labels.push(format!("Co-Create org::{org}"));
        }
        gitlab.add_mr(MrSpec {
            project_id: project,
            iid: 100 + i,
            id: 50_000 + i,
            title: format!("Change {i}"),
            author_id: author,
            labels,
            sha: format!("{:040x}", i + 1),
            project_path: format!("vendor/product-{project}"),
            ..MrSpec::default()
        });
    }
    gitlab
}

fn org_of(i: u64) -> &'static str {
    ["aero", "telco", "bank"][(i % 3) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_mrs_labels_statuses_notes_and_cost() {
    let gitlab = world(1000);
    let ctx = context(&gitlab, "", at(NOW)).await;
    gitlab.clear_calls();
    let report = cca_check::run(&ctx).await.expect("runs");
    assert_eq!(report.checked.len(), 1000);
    assert_eq!(report.count("signed"), 334);
    assert_eq!(report.count("expired"), 333);
    assert_eq!(report.count("missing"), 333);
    assert_eq!(report.failures(), 666);

    for i in [0u64, 1, 2, 3, 4, 5, 997, 998, 999] {
        let project = 10 + i % 3;
        let mr = gitlab.mr(project, 100 + i);
        let want = match org_of(i) {
            "aero" => "CCA::signed",
            "telco" => "CCA::expired",
            _ => "CCA::missing",
        };
        let cca: Vec<&String> = mr
            .labels
            .iter()
            .filter(|l| l.starts_with("CCA::"))
            .collect();
        assert_eq!(cca, vec![want], "MR {i}");
        let statuses = gitlab.commit_statuses(project, &mr.sha);
        assert_eq!(statuses.len(), 1, "MR {i}");
        assert_eq!(statuses[0].name, "cocreate/cca");
        assert_eq!(
            statuses[0].status,
            if org_of(i) == "aero" {
                "success"
            } else {
                "failed"
            },
            "MR {i}"
        );
        let notes = gitlab.take_mr_notes(project, 100 + i);
        if org_of(i) == "aero" {
            assert!(notes.is_empty(), "no note when the CCA is fine: {notes:#?}");
        } else {
            assert_eq!(notes.len(), 1, "MR {i}");
            assert!(
                notes[0].contains("cla-managers@example.com"),
                "{}",
                notes[0]
            );
        }
    }

    // Every MR without a valid agreement got one note, the others none.
    for i in 0..1000u64 {
        let notes = gitlab.take_mr_notes(10 + i % 3, 100 + i);
        let want = usize::from(org_of(i) != "aero");
        assert_eq!(notes.len(), want, "MR {i}: {notes:#?}");
    }

    // Cost: pages of the list + writes, plus one notes read per MR that gets a note.
    let calls = gitlab.calls();
    let pages = calls
        .iter()
        .filter(|c| c.path.ends_with("/merge_requests"))
        .count();
    let writes = calls.iter().filter(|c| c.method != "GET").count();
    let notes_posted = calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.ends_with("/notes"))
        .count();
    let author_reads = calls
        .iter()
        .filter(|c| c.path.starts_with("/api/v4/users/"))
        .count();
    assert_eq!(pages, 10);
    assert_eq!(notes_posted, 666);
    assert_eq!(
        author_reads, 3,
        "unlabelled MRs: one cached read per author"
    );
    assert_eq!(writes, 334 * 2 + 666 * 3);
    // One more: the open tracking-issue list (the CLA managers' worklist; none here).
    let tracking_lists = calls.iter().filter(|c| c.path.ends_with("/issues")).count();
    assert_eq!(tracking_lists, 1);
    assert!(
        calls.len() <= pages + writes + notes_posted + author_reads + tracking_lists,
        "{} calls",
        calls.len()
    );
    println!(
        "cca-check on 1000 MRs: {} calls ({pages} pages, {writes} writes), {} ms",
        calls.len(),
        report.elapsed_ms
    );

    // A second run writes nothing and costs the pages only (and the tracking-issue list).
    gitlab.clear_calls();
    let again = cca_check::run(&ctx).await.expect("runs");
    assert_eq!(again.api_writes, 0);
    assert_eq!(gitlab.calls().len(), 11, "{:#?}", &gitlab.calls()[..3]);
    println!(
        "second cca-check on 1000 MRs: {} calls, {} ms",
        gitlab.calls().len(),
        again.elapsed_ms
    );

    // The reports.
    let junit = cca_check::junit(&again).expect("junit");
    assert_eq!(junit.matches("<testcase").count(), 1000);
    assert_eq!(junit.matches("<failure").count(), 666);
    let summary = cca_check::summary(&again);
    assert!(summary.contains("| missing | 333 |"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agreement_lands_then_expires() {
    let gitlab = world(3);
    let before = context(&gitlab, "", at(NOW)).await;
    cca_check::run(&before).await.expect("runs");
    let bank = (12, 102);
    assert!(gitlab
        .mr(bank.0, bank.1)
        .labels
        .contains(&"CCA::missing".to_string()));

    // The telco agreement has expired: its engineer is asked for a renewal.
    let telco = gitlab.take_mr_notes(11, 101);
    assert_eq!(telco.len(), 1, "{telco:#?}");
    assert!(
        telco[0].starts_with("<!-- cocreate:cca-expired -->\nHi @tdev,"),
        "{}",
        telco[0]
    );

    // The CLA managers merge the bank's agreement.
    let after = context(&gitlab, BANK_SIGNED, at(NOW)).await;
    cca_check::run(&after).await.expect("runs");
    let mr = gitlab.mr(bank.0, bank.1);
    assert!(
        mr.labels.contains(&"CCA::signed".to_string())
            && !mr.labels.contains(&"CCA::missing".to_string()),
        "{:?}",
        mr.labels
    );
    let statuses = gitlab.commit_statuses(bank.0, &mr.sha);
    assert_eq!(statuses.last().map(|s| s.status.as_str()), Some("success"));
    let notes = gitlab.take_mr_notes(bank.0, bank.1);
    assert_eq!(notes.len(), 2, "instructions, then thanks: {notes:#?}");
    assert!(notes[1].starts_with("<!-- cocreate:cca-signed -->"));
    gitlab.clear_calls();
    let again = cca_check::run(&after).await.expect("runs");
    assert_eq!(again.api_writes, 0, "thanked once");

    // Time passes: the aero agreement (expires 2028-01-15) runs out.
    let later = context(&gitlab, BANK_SIGNED, at("2028-01-16T00:00:00Z")).await;
    cca_check::run(&later).await.expect("runs");
    let aero = gitlab.mr(10, 100);
    assert!(
        aero.labels.contains(&"CCA::expired".to_string()),
        "{:?}",
        aero.labels
    );
    let notes = gitlab.take_mr_notes(10, 100);
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0].starts_with("<!-- cocreate:cca-expired -->"),
        "{}",
        notes[0]
    );
    insta::assert_snapshot!(gitlab.posted_with("cocreate:cca-expired"), @r#"
    <!-- cocreate:cca-expired -->
    Hi @tdev, one thing is needed before this merge request can be merged.

    **Before we can merge:** your organization has no current Corporate Contributor Agreement (CCA) with us (the one on file expired). Please ask the person who signs agreements for your company to write to cla-managers@example.com; we will send the agreement to sign.
    This MR is labelled `CCA::expired` until the agreement is on file; the label and the `cocreate/cca` status update by themselves once it is.
    "#);
    insta::assert_snapshot!(gitlab.posted_with("cocreate:cca-missing"), @r#"
    <!-- cocreate:cca-missing -->
    Hi @bdev, one thing is needed before this merge request can be merged.

    **Before we can merge:** your organization has no Corporate Contributor Agreement (CCA) with us. Please ask the person who signs agreements for your company to write to cla-managers@example.com; we will send the agreement to sign.
    This MR is labelled `CCA::missing` until the agreement is on file; the label and the `cocreate/cca` status update by themselves once it is.
    "#);
    insta::assert_snapshot!(gitlab.posted_with("cocreate:cca-signed"), @r#"
    <!-- cocreate:cca-signed -->
    Good news, @bdev: your organization's Corporate Contributor Agreement is now on file, so nothing stands in the way of merging on our side. Thank you for your patience!
    "#);
}

/// An open tracking issue of `org` at `stage` in the tracking project.
fn tracking(gitlab: &FakeGitLab, org: &str, stage: &str) -> u64 {
    gitlab.add_issue(IssueSpec {
        project_id: TRACKING_PROJECT_ID,
        title: format!("Co-Create engagement: {org}"),
        description: "Engagement tracking issue".into(),
        author_id: gitlab.bot_user_id(),
        confidential: true,
        labels: vec![
            "Co-Create engagement".into(),
            format!("Co-Create org::{org}"),
            format!("Co-Create stage::{stage}"),
        ],
        project_path: TRACKING_PROJECT.into(),
        ..IssueSpec::default()
    })
}

/// The CLA managers' worklist: engaged organizations (aligned or later, or with open Co-Create
/// MRs) without a valid agreement are listed in the summary and the JUnit report, and their
/// tracking issue gets one note per agreement state however often the check runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cla_managers_worklist_covers_engagements() {
    let gitlab = world(0);
    // aero: aligned, signed until 2028-01-15. telco: only contacted, but one open MR, its
    // agreement expired 2026-03-01. bank: aligned, no agreement.
    let aero = tracking(&gitlab, "example-aero", "aligned");
    let telco = tracking(&gitlab, "example-telco", "contacted");
    let bank = tracking(&gitlab, "example-bank", "aligned");
    gitlab.add_mr(MrSpec {
        project_id: 11,
        iid: 7,
        id: 70_007,
        title: "Telco change".into(),
        author_id: TELCO_DEV.0,
        labels: vec!["Co-Create".into(), "Co-Create org::example-telco".into()],
        sha: format!("{:040x}", 7),
        project_path: "vendor/telco".into(),
        ..MrSpec::default()
    });

    let ctx = context(&gitlab, "", at(NOW)).await;
    let report = cca_check::run(&ctx).await.expect("runs");
    assert_eq!(
        gitlab.take_mr_notes(11, 7).len(),
        1,
        "the MR's own CCA note"
    );
    let listed: Vec<&str> = report
        .engagements
        .iter()
        .filter(|e| e.listed)
        .map(|e| e.org.as_str())
        .collect();
    // GitLab lists issues newest first.
    assert_eq!(listed, ["example-bank", "example-telco"]);
    let summary = cca_check::summary(&report);
    assert!(
        summary.contains("## CLA managers' worklist: engagements without a valid CCA"),
        "{summary}"
    );
    assert!(
        summary.contains(
            "| example-telco | cocreate/engagements#2 | contacted | 1 | expired 2026-03-01 |"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("| example-bank | cocreate/engagements#3 | aligned | 0 | missing |"),
        "{summary}"
    );
    let junit = cca_check::junit(&report).expect("junit");
    assert!(junit.contains("cca-check engagements"), "{junit}");
    assert!(
        junit.contains("agreement missing: on the CLA managers&apos; worklist"),
        "{junit}"
    );
    assert_eq!(
        junit.matches("<failure").count(),
        3,
        "the MR, then bank and telco: {junit}"
    );
    let notes = gitlab.take_issue_notes(TRACKING_PROJECT_ID, telco);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].contains("**Example Telco**'s Corporate Contributor Agreement expired on 2026-03-01, and the engagement is at `contacted` with 1 open Co-Create merge request."), "{}", notes[0]);
    assert_eq!(gitlab.take_issue_notes(TRACKING_PROJECT_ID, bank).len(), 1);
    assert!(gitlab
        .take_issue_notes(TRACKING_PROJECT_ID, aero)
        .is_empty());

    // Again, and after the bank's agreement lands: nothing more on the tracking issues.
    gitlab.clear_calls();
    cca_check::run(&ctx).await.expect("runs");
    assert!(gitlab.writes().is_empty(), "{:#?}", gitlab.writes());
    let signed = context(&gitlab, BANK_SIGNED, at("2026-11-25T12:00:00Z")).await;
    let report = cca_check::run(&signed).await.expect("runs");
    let listed: Vec<&str> = report
        .engagements
        .iter()
        .filter(|e| e.listed)
        .map(|e| e.org.as_str())
        .collect();
    assert_eq!(listed, ["example-telco"]);
    assert_eq!(gitlab.take_issue_notes(TRACKING_PROJECT_ID, telco).len(), 1);
    assert_eq!(gitlab.take_issue_notes(TRACKING_PROJECT_ID, bank).len(), 1);

    // 26 days before aero's agreement runs out (warning: 30 days): one note, once.
    for now in ["2027-12-20T09:00:00Z", "2027-12-21T09:00:00Z"] {
        let later = context(&gitlab, BANK_SIGNED, at(now)).await;
        cca_check::run(&later).await.expect("runs");
    }
    let notes = gitlab.take_issue_notes(TRACKING_PROJECT_ID, aero);
    assert_eq!(notes.len(), 1, "{notes:#?}");
    insta::assert_snapshot!(notes[0], @r"
    <!-- cocreate:cca-worklist:expiring:2028-01-15 -->
    CLA managers (cla-managers@example.com): **Example Aero**'s Corporate Contributor Agreement expires on 2028-01-15, and the engagement is at `aligned`. The agreement is a prerequisite of merging and of the on-site week: please start the renewal, then record it in `agreements.yml`.
    ");
    assert_eq!(gitlab.take_issue_notes(TRACKING_PROJECT_ID, telco).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_during_the_sweep_are_retried_and_the_run_completes() {
    let gitlab = world(60);
    let ctx = context(&gitlab, "", at(NOW)).await;
    gitlab.set_failure_rate(0.2, 11);
    let first = cca_check::run(&ctx).await.expect("the run completes");
    assert_eq!(first.checked.len(), 60);
    gitlab.set_failure_rate(0.0, 0);
    // Whatever failed is picked up by the next run; nothing is doubled.
    cca_check::run(&ctx).await.expect("runs");
    let clean = cca_check::run(&ctx).await.expect("runs");
    assert_eq!(clean.api_writes, 0);
    for i in 0..60u64 {
        let project = 10 + i % 3;
        let notes = gitlab.take_mr_notes(project, 100 + i);
        let want = if org_of(i) == "aero" { 0 } else { 1 };
        assert_eq!(notes.len(), want, "MR {i}: {notes:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_recovers_an_mr_whose_webhook_never_came() {
    let gitlab = world(0);
    // MR !16 of the seed world: opened, never routed (its webhook was lost).
    let ctx = context(&gitlab, "", Clock::system()).await;
    let report = reconcile::run(&ctx, std::time::Duration::from_secs(3600))
        .await
        .expect("runs");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let mr = gitlab.mr(2, 16);
    assert!(
        mr.labels
            .contains(&"Co-Create org::example-aero".to_string()),
        "{:?}",
        mr.labels
    );
    assert_eq!(gitlab.take_mr_notes(2, 16).len(), 1);
    let again = reconcile::run(&ctx, std::time::Duration::from_secs(3600))
        .await
        .expect("runs");
    assert_eq!(again.api_writes, 0);
    assert_eq!(gitlab.take_mr_notes(2, 16).len(), 1);
}

/// Measures `cca-check` on many MRs; run with
/// `CCA_BENCH_MRS=10000 cargo test --release --test cca_check -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_cca_check_at_scale() {
    let n: u64 = std::env::var("CCA_BENCH_MRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let gitlab = world(n);
    let ctx = context(&gitlab, "", at(NOW)).await;
    gitlab.clear_calls();
    let first = cca_check::run(&ctx).await.expect("runs");
    let first_calls = gitlab.calls().len();
    let noted = (0..n)
        .filter(|i| !gitlab.take_mr_notes(10 + i % 3, 100 + i).is_empty())
        .count();
    assert_eq!(noted, first.failures(), "one note per failing MR");
    gitlab.clear_calls();
    let second = cca_check::run(&ctx).await.expect("runs");
    println!(
        "cca-check on {n} MRs: first run {first_calls} calls ({} writes) in {} ms; second run {} calls ({} writes) in {} ms",
        first.api_writes, first.elapsed_ms, gitlab.calls().len(), second.api_writes, second.elapsed_ms
    );
}
