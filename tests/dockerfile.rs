//! The Dockerfile's run stage: a small base, a non-root user, the data volume, and a health check
//! on `/healthz`. (No Docker engine is needed: this reads the file.)

/// One instruction: keyword (upper case) and its arguments, continuation lines joined.
#[derive(Debug)]
struct Instruction {
    keyword: String,
    args: String,
}

fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (current.is_empty() && trimmed.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                let (keyword, args) = current
                    .split_once(char::is_whitespace)
                    .unwrap_or((current.as_str(), ""));
                out.push(Instruction {
                    keyword: keyword.to_ascii_uppercase(),
                    args: args.trim().to_owned(),
                });
                current.clear();
            }
        }
    }
    out
}

/// The instructions of each stage, split at `FROM`.
fn stages(all: Vec<Instruction>) -> Vec<Vec<Instruction>> {
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for i in all {
        if i.keyword == "FROM" {
            stages.push(Vec::new());
        }
        if let Some(stage) = stages.last_mut() {
            stage.push(i);
        }
    }
    stages
}

fn last<'a>(stage: &'a [Instruction], keyword: &str) -> Option<&'a Instruction> {
    stage.iter().rev().find(|i| i.keyword == keyword)
}

#[test]
fn run_stage_is_small_non_root_with_a_volume_and_a_health_check() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
    let text = std::fs::read_to_string(path).expect("Dockerfile");
    let stages = stages(instructions(&text));
    assert!(stages.len() >= 2, "multi-stage: {stages:#?}");
    let build = &stages[0];
    let run = stages.last().expect("run stage");

    assert!(
        build[0].args.starts_with("rust:"),
        "built with the Rust image: {:?}",
        build[0]
    );
    assert!(
        !run[0].args.starts_with("rust"),
        "runs on a small base, not the Rust image: {:?}",
        run[0]
    );
    assert!(
        run.iter()
            .any(|i| i.keyword == "COPY" && i.args.starts_with("--from=")),
        "the run stage copies the binary from the build stage"
    );

    let user = last(run, "USER").expect("the run stage sets USER");
    let name = user.args.split(':').next().unwrap_or("").trim();
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "non-root user: {user:?}"
    );
    let health = last(run, "HEALTHCHECK").expect("the run stage declares HEALTHCHECK");
    assert!(!health.args.eq_ignore_ascii_case("NONE"), "{health:?}");
    assert!(health.args.contains("CMD"), "{health:?}");
    assert!(
        health.args.contains("/healthz"),
        "checks /healthz: {health:?}"
    );

    let volume = last(run, "VOLUME").expect("the data directory is a volume");
    assert!(volume.args.contains("/data"), "{volume:?}");
    assert!(
        run.iter()
            .any(|i| i.keyword == "ENV" && i.args.contains("COCREATE_DATA=/data")),
        "serve keeps its queue on the volume"
    );
    let entry = last(run, "ENTRYPOINT").expect("ENTRYPOINT");
    assert!(entry.args.contains("cocreate"), "{entry:?}");
}

#[test]
fn the_parser_joins_continuation_lines_and_skips_comments() {
    let parsed = instructions("# c\nFROM a AS b\nRUN x \\\n    && y\n\nUSER 1:1\n");
    let keywords: Vec<&str> = parsed.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(keywords, ["FROM", "RUN", "USER"]);
    assert_eq!(parsed[1].args, "x  && y");
}

#[test]
fn the_pipeline_pushes_the_image_on_the_default_branch_and_tags() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/.gitlab-ci.yml");
    let text = std::fs::read_to_string(path).expect(".gitlab-ci.yml");
    let pipeline: serde_json::Value = serde_saphyr::from_str(&text).expect("valid YAML");
    let job = &pipeline["container-image"];
    let stage = job["stage"].as_str().expect("stage");
    assert!(
        pipeline["stages"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == stage)),
        "its stage is declared: {stage}"
    );
    let script = job["script"].to_string();
    assert!(script.contains("docker build"), "{script}");
    assert!(
        script.contains("docker push \\\"$CI_REGISTRY_IMAGE:"),
        "{script}"
    );
    assert!(script.contains("$CI_COMMIT_TAG"), "{script}");
    let rules: Vec<&str> = job["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["if"].as_str())
        .collect();
    assert_eq!(
        rules,
        [
            "$CI_PIPELINE_SOURCE == \"schedule\"",
            "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
            "$CI_COMMIT_TAG"
        ]
    );
    assert_eq!(job["rules"][0]["when"], "never", "not on schedules");
}
