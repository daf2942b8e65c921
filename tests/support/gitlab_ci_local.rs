//! `gitlab-ci-local` (firecow/gitlab-ci-local, npm; pinned in package.json): a third-party
//! implementation of GitLab's CI schema, `rules:`, `extends:` and the shell executor. The tests
//! run it on a throw-away git repository holding the project's `.gitlab-ci.yml`, so that
//! `rules:changes` sees exactly the commits a test makes.
//!
//! It is required, never skipped: `.ci/run` installs it (`npm ci`); without it these tests fail
//! and say how to install it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The version `package.json` pins (4.62.0 runs on Node 20).
pub const VERSION: &str = "4.62.0";

/// Where the test finds it: `$GITLAB_CI_LOCAL`, else `node_modules/.bin/gitlab-ci-local` in the
/// repository (where `npm ci` puts it).
pub fn binary() -> PathBuf {
    let path = match std::env::var_os("GITLAB_CI_LOCAL") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/.bin/gitlab-ci-local"),
    };
    assert!(
        path.is_file(),
        "gitlab-ci-local {VERSION} is not installed (looked for {}). It checks .gitlab-ci.yml and \
         is required: run `npm ci` in the repository root (.ci/run does; it needs Node.js 20 and \
         npm), or point GITLAB_CI_LOCAL at the executable.",
        path.display()
    );
    path
}

/// Running a job (not listing), gitlab-ci-local copies the work tree with rsync.
pub fn require_rsync() {
    let ok = Command::new("rsync")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "rsync is not installed: gitlab-ci-local needs it to run a job (.ci/run installs it with \
         apt-get when it is missing)"
    );
}

/// The origin remote the sandbox pretends to have (never contacted: gitlab-ci-local only parses
/// it for `CI_PROJECT_PATH` and friends).
pub const REMOTE: &str = "https://gitlab.example.com/tools/cocreate.git";
pub const DEFAULT_BRANCH: &str = "main";

/// A git repository in a temporary directory with copies of some of the project's files, one
/// commit on `main`, and `origin/main` at that commit (what the last push delivered).
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Copies `paths` (files or directories, relative to the repository root) and commits them.
    pub fn new(paths: &[&str]) -> Sandbox {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for p in paths {
            copy(&root.join(p), &dir.path().join(p));
        }
        let sandbox = Sandbox { dir };
        sandbox.git(&["init", "--quiet", "--initial-branch", DEFAULT_BRANCH]);
        sandbox.git(&["remote", "add", "origin", REMOTE]);
        sandbox.commit("The project as pushed");
        sandbox.git(&["update-ref", "refs/remotes/origin/main", "HEAD"]);
        sandbox.git(&[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ]);
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs git in the sandbox; panics with its output when it fails.
    pub fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=CI test", "-c", "user.email=ci@example.com"])
            .args(["-c", "commit.gpgsign=false", "-c", "init.templateDir="])
            .args(args)
            .current_dir(self.path())
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Appends `text` to a file of the sandbox (created if missing).
    pub fn append(&self, rel: &str, text: &str) {
        use std::io::Write as _;
        let path = self.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    /// Commits every change of the work tree.
    pub fn commit(&self, message: &str) {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--allow-empty", "--message", message]);
    }

    /// gitlab-ci-local with `args` in the sandbox (its state directory goes there too).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(binary());
        // GCL_* variables set option defaults (GCL_NEEDS=true is --needs): none of the caller's.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("GCL_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("FORCE_COLOR", "0")
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            // Its home directory holds its own variables files: keep the developer's out.
            .arg("--home")
            .arg(self.path().join(".gcl-home"))
            .arg("--no-color");
        cmd
    }

    /// `--list-json` for a pipeline with these CI/CD variables set and predefined ones unset:
    /// every job, each with the `when` its rules give for this pipeline (`never`: not created).
    pub fn list(&self, set: &[(&str, &str)], unset: &[&str]) -> Vec<Value> {
        let mut cmd = self.command();
        cmd.arg("--list-json");
        for (k, v) in set {
            cmd.arg("--variable").arg(format!("{k}={v}"));
        }
        for k in unset {
            cmd.arg("--unset-variable").arg(k);
        }
        let out = cmd.output().expect("gitlab-ci-local runs");
        assert!(
            out.status.success(),
            "gitlab-ci-local --list-json: {}",
            text(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Warnings (e.g. about overriding a predefined variable) come first on stdout.
        let start = stdout
            .find("\n[")
            .map(|i| i + 1)
            .or_else(|| stdout.starts_with('[').then_some(0))
            .unwrap_or_else(|| panic!("no JSON list in: {}", text(&out)));
        serde_json::from_str(&stdout[start..]).expect("--list-json prints JSON")
    }

    /// `--preview`: the pipeline as GitLab resolves it (defaults, `extends` and anchors merged).
    pub fn preview(&self) -> Value {
        let out = self
            .command()
            .arg("--preview")
            .output()
            .expect("gitlab-ci-local runs");
        assert!(
            out.status.success(),
            "gitlab-ci-local --preview: {}",
            text(&out)
        );
        serde_saphyr::from_str(&String::from_utf8_lossy(&out.stdout))
            .expect("--preview prints YAML")
    }
}

/// stdout and stderr of a finished command, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read dir") {
            let entry = entry.expect("entry");
            copy(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}
