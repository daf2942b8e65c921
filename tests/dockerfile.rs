//! The Dockerfile's run stage: a small base, a non-root user, the data volume, and a health check
//! on `/healthz`; and that the pipeline agrees with it: built on the same Rust and Debian
//! releases, and the scheduled jobs run in this image. (No Docker engine is needed: this reads
//! the file, and the pipeline as gitlab-ci-local resolves it.)
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap (Cargo.toml [lints])

#[allow(dead_code)]
#[path = "support/gitlab_ci_local.rs"]
mod gitlab_ci_local;

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

fn dockerfile() -> Vec<Vec<Instruction>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
    let text = std::fs::read_to_string(path).expect("Dockerfile");
    stages(instructions(&text))
}

/// `rust:1.95-slim-trixie` → (`rust`, `1.95`, `trixie`); `debian:trixie-slim` → (`debian`, ``,
/// `trixie`). The Debian release is the codename among the tag's dash-separated parts.
fn image_parts(image: &str) -> (String, String, Option<String>) {
    const CODENAMES: [&str; 4] = ["bullseye", "bookworm", "trixie", "forky"];
    let image = image.split_whitespace().next().unwrap_or(image);
    let (name, tag) = image.split_once(':').unwrap_or((image, "latest"));
    let parts: Vec<&str> = tag.split('-').collect();
    let codename = parts
        .iter()
        .find(|p| CODENAMES.contains(p))
        .map(|s| s.to_string());
    let version = parts
        .first()
        .filter(|p| p.starts_with(|c: char| c.is_ascii_digit()))
        .map(|s| s.to_string())
        .unwrap_or_default();
    (name.to_owned(), version, codename)
}

#[test]
fn image_names_are_read_as_gitlab_and_docker_write_them() {
    let parts = |i| image_parts(i);
    assert_eq!(
        parts("rust:1.95-slim-trixie AS build"),
        ("rust".into(), "1.95".into(), Some("trixie".into()))
    );
    assert_eq!(
        parts("debian:trixie-slim"),
        ("debian".into(), String::new(), Some("trixie".into()))
    );
    assert_eq!(parts("rust:1.95").2, None, "no release named");
}

#[test]
fn run_stage_is_small_non_root_with_a_volume_and_a_health_check() {
    let stages = dockerfile();
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

/// The issue this guards against: a binary built on one Debian release and run on an older one
/// (glibc), or run where there are no CA certificates (rustls-platform-verifier then loads no
/// roots and refuses every HTTPS connection to GitLab).
#[test]
fn the_pipeline_builds_on_the_images_releases_and_schedules_run_in_the_image() {
    let stages = dockerfile();
    let build = &stages[0];
    let run = stages.last().expect("run stage");
    let (_, rust_version, build_release) = image_parts(&build[0].args);
    let (run_base, _, run_release) = image_parts(&run[0].args);
    assert!(
        build_release.is_some(),
        "the build names its Debian release: {:?}",
        build[0]
    );
    assert_eq!(
        build_release, run_release,
        "build and run on one Debian release"
    );
    assert_eq!(run_base, "debian");
    let installs = run
        .iter()
        .filter(|i| i.keyword == "RUN")
        .map(|i| i.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        installs.contains("apt-get install") && installs.contains("ca-certificates"),
        "the run stage has CA certificates: {installs}"
    );
    assert!(
        run.iter().any(|i| i.keyword == "COPY"
            && i.args.starts_with("--from=")
            && i.args.ends_with(" /usr/local/bin/cocreate")),
        "`cocreate` is on PATH in the image, where the scheduled jobs call it"
    );
    let entry = last(run, "ENTRYPOINT").expect("ENTRYPOINT");
    assert_eq!(entry.args, "[\"cocreate\"]");

    let sandbox = gitlab_ci_local::Sandbox::new(&[".gitlab-ci.yml", "policies"]);
    let pipeline = sandbox.preview();
    let jobs = pipeline.as_object().expect("pipeline");
    for (name, job) in jobs {
        let Some(image) = job["image"]["name"].as_str() else {
            continue;
        };
        let (base, version, release) = image_parts(image);
        if base == "rust" {
            assert_eq!(
                (version.as_str(), release.as_ref()),
                (rust_version.as_str(), build_release.as_ref()),
                "{name} builds with the Dockerfile's Rust on its Debian release: {image}"
            );
        }
        if base == "debian" {
            panic!("{name} runs on bare {image}: no CA certificates, maybe another glibc");
        }
    }
    for name in ["cca-check", "reconcile", "nudge", "report"] {
        let job = &pipeline[name];
        assert_eq!(
            job["image"]["name"], "$CI_REGISTRY_IMAGE:latest",
            "{name} runs in the image built from this Dockerfile"
        );
        assert_eq!(
            job["image"]["entrypoint"],
            serde_json::json!([""]),
            "{name}: the runner starts a shell, not the image's `cocreate` entrypoint"
        );
        assert!(
            job["script"][0]
                .as_str()
                .is_some_and(|s| s.starts_with("cocreate ")),
            "{name}: {}",
            job["script"]
        );
        // The image points COCREATE_POLICIES and COCREATE_TEMPLATES at its examples.
        for var in ["COCREATE_POLICIES", "COCREATE_TEMPLATES"] {
            assert!(
                run.iter()
                    .any(|i| i.keyword == "ENV" && i.args.contains(&format!("{var}="))),
                "the image sets {var}"
            );
            assert!(
                job["variables"][var].is_string(),
                "{name} reads this checkout's files, not the image's examples ({var})"
            );
        }
    }
    let push = pipeline["container-image"]["script"].to_string();
    assert!(
        push.contains("docker build")
            && push.contains("docker push \\\"$CI_REGISTRY_IMAGE:latest\\\""),
        "container-image builds this Dockerfile and pushes :latest: {push}"
    );
}
