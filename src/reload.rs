//! Live policies: the policies and templates in force now, while `serve` runs.
//!
//! A directory source is re-read when its contents change (polled, so it works on every file
//! system and in containers) and at once on SIGHUP. A GitLab source (`gitlab:<project>@<ref>`)
//! is read from that project's repository at the ref's head commit, again when a Push Hook for
//! that project and ref arrives, and every `fallback` as a safety net. A new version that fails
//! validation never replaces the last good one: every error is logged with its file, line and
//! column, counted in `cocreate_policies_reload_failures_total` and shown by `/readyz`.
//!
//! Every event is decided with the version in force when it is processed (see
//! [`crate::handlers::Context::with_live_config`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};

use crate::gitlab::{path_id, Get, GitlabClient};
use crate::messages::{Messages, TemplateError};
use crate::policy::{Policies, PolicyErrors};

/// A project repository holding `policies/` (and `templates/`), at a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSource {
    /// `group/project` (or a numeric id).
    pub project: String,
    /// The branch; `None` means the project's default branch (resolved at start).
    pub reference: Option<String>,
}

impl RepoSource {
    pub const PREFIX: &'static str = "gitlab:";

    /// Parses `gitlab:<project path>[@<ref>]`; `None` when `raw` does not start with `gitlab:`.
    pub fn parse(raw: &str) -> Option<Result<Self, String>> {
        Some(raw.strip_prefix(Self::PREFIX)?.parse())
    }
}

impl std::str::FromStr for RepoSource {
    type Err = String;

    /// `group/project` or `group/project@branch` (a numeric project id works too).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (project, reference) = match s.trim().split_once('@') {
            Some((p, r)) if r.trim().is_empty() => {
                return Err(format!("`{s}`: nothing after `@` (write {p}@<branch>, or leave `@` out for the default branch)"))
            }
            Some((p, r)) => (p.trim(), Some(r.trim())),
            None => (s.trim(), None),
        };
        let project = project.trim_matches('/');
        let is_id = !project.is_empty() && project.chars().all(|c| c.is_ascii_digit());
        if !is_id && (!project.contains('/') || project.contains(char::is_whitespace)) {
            return Err(format!(
                "`{s}`: expected the project's full path, like cocreate/policies[@main]"
            ));
        }
        Ok(Self {
            project: project.to_owned(),
            reference: reference.map(str::to_owned),
        })
    }
}

impl std::fmt::Display for RepoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gitlab:{}", self.project)?;
        if let Some(r) = &self.reference {
            write!(f, "@{r}")?;
        }
        Ok(())
    }
}

/// Where policies or templates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    Dir(PathBuf),
    Embedded,
    /// `policies/` or `templates/` of a GitLab project's repository.
    Gitlab(RepoSource),
}

/// One version of the policies and templates.
#[derive(Debug, Clone)]
pub struct Config {
    pub policies: Arc<Policies>,
    pub messages: Arc<Messages>,
    /// A content hash (`sha256:…`) for a directory, the commit id for a GitLab source.
    pub version: String,
}

/// Why a version could not be read or used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    #[error("policies are invalid:\n{0}")]
    Policies(#[from] PolicyErrors),
    #[error("{0}")]
    Template(String),
    #[error("cannot read {what}: {message}")]
    Read { what: String, message: String },
    #[error("policies from a GitLab project need GITLAB_TOKEN (a dry run has no GitLab to read them from); use --policies DIR for a dry run")]
    NoGitlab,
}

impl From<TemplateError> for ReloadError {
    fn from(e: TemplateError) -> Self {
        ReloadError::Template(e.to_string())
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The source is at the version in force.
    Unchanged,
    /// A new version is in force.
    Swapped { from: String, to: String },
    /// The source changed but is invalid; the last good version stays.
    Rejected { version: String },
}

/// What `/readyz` shows about the policies.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReloadStatus {
    pub source: String,
    pub version: String,
    /// The last failed reload's errors, until a later reload succeeds.
    pub last_error: Option<String>,
}

/// The policies and templates in force, and how to reload them.
pub struct LiveConfig {
    policies_src: ConfigSource,
    templates_src: ConfigSource,
    /// The branch a GitLab source follows (resolved at start).
    branch: Option<String>,
    client: Option<GitlabClient>,
    current: RwLock<Arc<Config>>,
    failure: Mutex<Option<(String, String)>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    kick: Notify,
}

impl std::fmt::Debug for LiveConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveConfig")
            .field("policies", &self.policies_src)
            .field("templates", &self.templates_src)
            .field("version", &self.current().version)
            .finish_non_exhaustive()
    }
}

impl LiveConfig {
    /// Reads the first version; an invalid one is a start-up error.
    pub async fn start(
        policies: ConfigSource,
        templates: ConfigSource,
        client: Option<GitlabClient>,
    ) -> Result<Arc<Self>, ReloadError> {
        let repo = match (&policies, &templates) {
            (ConfigSource::Gitlab(r), _) | (_, ConfigSource::Gitlab(r)) => Some(r.clone()),
            _ => None,
        };
        let branch = match &repo {
            None => None,
            Some(r) => {
                let client = client.as_ref().ok_or(ReloadError::NoGitlab)?;
                Some(match &r.reference {
                    Some(b) => b.clone(),
                    None => default_branch(client, &r.project).await?,
                })
            }
        };
        let version =
            fingerprint(&policies, &templates, branch.as_deref(), client.as_ref()).await?;
        let first = read(&policies, &templates, &version, client.as_ref()).await?;
        let live = Self {
            policies_src: policies,
            templates_src: templates,
            branch,
            client,
            current: RwLock::new(Arc::new(first)),
            failure: Mutex::new(None),
            reloading: tokio::sync::Mutex::new(()),
            kick: Notify::new(),
        };
        live.publish_version(None);
        Ok(Arc::new(live))
    }

    /// The version in force now.
    pub fn current(&self) -> Arc<Config> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn status(&self) -> ReloadStatus {
        let current = self.current();
        ReloadStatus {
            source: current.policies.source.clone(),
            version: current.version.clone(),
            last_error: self
                .failure
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|(_, e)| e.clone()),
        }
    }

    /// The GitLab project and branch whose pushes reload the policies.
    pub fn watched_repo(&self) -> Option<(&str, &str)> {
        let repo = match (&self.policies_src, &self.templates_src) {
            (ConfigSource::Gitlab(r), _) | (_, ConfigSource::Gitlab(r)) => r,
            _ => return None,
        };
        Some((repo.project.as_str(), self.branch.as_deref()?))
    }

    /// Asks the background loop to reload now (SIGHUP does the same).
    pub fn kick(&self) {
        self.kick.notify_one();
    }

    /// Reloads if the source moved: reads its version, and when it differs from the one in
    /// force (and from the last rejected one), reads, validates and swaps it in.
    pub async fn reload(&self, why: &str) -> Result<Reloaded, ReloadError> {
        let _one = self.reloading.lock().await;
        let version = fingerprint(
            &self.policies_src,
            &self.templates_src,
            self.branch.as_deref(),
            self.client.as_ref(),
        )
        .await?;
        let from = self.current().version.clone();
        if version == from {
            return Ok(Reloaded::Unchanged);
        }
        let already_rejected = self
            .failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(v, _)| *v == version);
        if already_rejected {
            return Ok(Reloaded::Rejected { version });
        }
        match read(
            &self.policies_src,
            &self.templates_src,
            &version,
            self.client.as_ref(),
        )
        .await
        {
            Ok(next) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.publish_version(Some(&from));
                metrics::counter!("cocreate_policies_reloads_total").increment(1);
                tracing::info!(%from, to = %version, why, "policies reloaded; new events are decided with them");
                Ok(Reloaded::Swapped { from, to: version })
            }
            Err(e @ (ReloadError::Policies(_) | ReloadError::Template(_))) => {
                metrics::counter!("cocreate_policies_reload_failures_total").increment(1);
                match &e {
                    ReloadError::Policies(errors) => {
                        for error in &errors.0 {
                            tracing::error!(%error, version = %version, "policy reload rejected; the last good policies stay in force");
                        }
                    }
                    other => {
                        tracing::error!(error = %other, version = %version, "template reload rejected; the last good templates stay in force")
                    }
                }
                *self.failure.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((version.clone(), e.to_string()));
                Ok(Reloaded::Rejected { version })
            }
            Err(e) => Err(e),
        }
    }

    fn publish_version(&self, old: Option<&str>) {
        if let Some(old) = old {
            metrics::gauge!("cocreate_policies_version", "version" => old.to_owned()).set(0.0);
        }
        metrics::gauge!("cocreate_policies_version", "version" => self.current().version.clone())
            .set(1.0);
    }

    /// How often the background loop looks for a new version: `poll` for a directory,
    /// `fallback` for a GitLab source (pushes reload it at once), never for embedded policies.
    fn interval(&self, poll: Duration, fallback: Duration) -> Option<Duration> {
        let kinds = [&self.policies_src, &self.templates_src];
        if kinds.iter().any(|s| matches!(s, ConfigSource::Dir(_))) {
            Some(poll)
        } else if kinds.iter().any(|s| matches!(s, ConfigSource::Gitlab(_))) {
            Some(fallback)
        } else {
            None
        }
    }

    /// Reloads every interval, on SIGHUP and when kicked, until `stop` turns true.
    pub async fn run(
        self: Arc<Self>,
        poll: Duration,
        fallback: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        let every = self.interval(poll, fallback);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hangup = async {
                match hup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let hangup = std::future::pending::<()>();
            let why = tokio::select! {
                _ = sleep_or_forever(every) => "periodic check",
                _ = hangup => "SIGHUP",
                _ = self.kick.notified() => "requested",
                _ = stop.wait_for(|s| *s) => break,
            };
            if let Err(error) = self.reload(why).await {
                tracing::warn!(%error, why, "could not check the policy source; the policies in force stay");
            }
        }
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// The version a source is at, without parsing it: a hash of the directories' files, or the
/// head commit of the branch (one API call).
async fn fingerprint(
    policies: &ConfigSource,
    templates: &ConfigSource,
    branch: Option<&str>,
    client: Option<&GitlabClient>,
) -> Result<String, ReloadError> {
    let mut commit = None;
    let mut hash = Sha256::new();
    let mut any_dir = false;
    for src in [policies, templates] {
        match src {
            ConfigSource::Dir(d) => {
                any_dir = true;
                hash_dir(&mut hash, d)?;
            }
            ConfigSource::Embedded => hash.update(b"embedded\0"),
            ConfigSource::Gitlab(r) => {
                if commit.is_none() {
                    let client = client.ok_or(ReloadError::NoGitlab)?;
                    let branch = branch.unwrap_or("HEAD");
                    commit = Some(head_commit(client, &r.project, branch).await?);
                }
            }
        }
    }
    Ok(match (commit, any_dir) {
        (Some(c), false) => c,
        (Some(c), true) => {
            hash.update(c.as_bytes());
            format!("sha256:{}", &hex::encode(hash.finalize())[..16])
        }
        (None, _) => format!("sha256:{}", &hex::encode(hash.finalize())[..16]),
    })
}

/// Hashes every regular file directly in `dir` and one level below (templates keep issue
/// templates in a subdirectory), in name order.
fn hash_dir(hash: &mut Sha256, dir: &Path) -> Result<(), ReloadError> {
    let read_err = |e: std::io::Error| ReloadError::Read {
        what: dir.display().to_string(),
        message: e.to_string(),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_dir() {
            for sub in std::fs::read_dir(&path).map_err(read_err)? {
                let sub = sub.map_err(read_err)?.path();
                if sub.is_file() {
                    files.push(sub);
                }
            }
        } else if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    for f in files {
        let bytes = std::fs::read(&f).map_err(|e| ReloadError::Read {
            what: f.display().to_string(),
            message: e.to_string(),
        })?;
        hash.update(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        hash.update([0]);
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(&bytes);
    }
    Ok(())
}

/// Reads and validates one version.
async fn read(
    policies: &ConfigSource,
    templates: &ConfigSource,
    version: &str,
    client: Option<&GitlabClient>,
) -> Result<Config, ReloadError> {
    let mut p = match policies {
        ConfigSource::Dir(d) => Policies::load(d)?,
        ConfigSource::Embedded => Policies::embedded()?,
        ConfigSource::Gitlab(r) => {
            let client = client.ok_or(ReloadError::NoGitlab)?;
            let files = repo_files(client, &r.project, "policies", version).await?;
            let sources: Vec<(PathBuf, &str)> = files
                .iter()
                .filter(|(path, _)| path.ends_with(".yml"))
                .map(|(path, text)| (PathBuf::from(path), text.as_str()))
                .collect();
            Policies::from_sources(&sources, format!("{r} at {}", short(version)))?
        }
    };
    if let ConfigSource::Dir(_) = policies {
        p.source = format!("{} ({})", p.source, short(version));
    }
    let messages = match templates {
        ConfigSource::Dir(d) => Messages::load(d)?,
        ConfigSource::Embedded => Messages::embedded()?,
        ConfigSource::Gitlab(r) => {
            let client = client.ok_or(ReloadError::NoGitlab)?;
            let files = repo_files(client, &r.project, "templates", version).await?;
            Messages::from_named(
                files
                    .into_iter()
                    .filter_map(|(path, text)| {
                        let name = path.strip_prefix("templates/")?;
                        (!name.contains('/')).then(|| (name.to_owned(), text))
                    })
                    .collect(),
            )?
        }
    };
    Ok(Config {
        policies: Arc::new(p),
        messages: Arc::new(messages),
        version: version.to_owned(),
    })
}

fn short(version: &str) -> &str {
    let v = version.strip_prefix("sha256:").unwrap_or(version);
    &v[..v.len().min(12)]
}

#[derive(Deserialize)]
struct Project {
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct Commit {
    id: String,
}

#[derive(Deserialize)]
struct TreeEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct File {
    content: String,
    #[serde(default)]
    encoding: Option<String>,
}

fn read_error(
    what: String,
) -> impl FnOnce(gitlab::api::ApiError<crate::gitlab::ClientError>) -> ReloadError {
    move |e| ReloadError::Read {
        what,
        message: e.to_string(),
    }
}

async fn default_branch(client: &GitlabClient, project: &str) -> Result<String, ReloadError> {
    let p: Project = Get::new(format!("projects/{}", path_id(project)))
        .one(client)
        .await
        .map_err(read_error(format!(
            "policy project `{project}` (the bot needs the Reporter role in it)"
        )))?;
    p.default_branch.ok_or_else(|| ReloadError::Read {
        what: format!("policy project `{project}`"),
        message: "it has no default branch (an empty repository?): push the policies first, or name the branch with @<branch>".into(),
    })
}

async fn head_commit(
    client: &GitlabClient,
    project: &str,
    branch: &str,
) -> Result<String, ReloadError> {
    let c: Commit = Get::new(format!(
        "projects/{}/repository/commits/{}",
        path_id(project),
        path_id(branch)
    ))
    .one(client)
    .await
    .map_err(read_error(format!(
        "the head commit of `{branch}` in policy project `{project}`"
    )))?;
    Ok(c.id)
}

/// The files directly under `dir` in the repository at `commit`, as text.
async fn repo_files(
    client: &GitlabClient,
    project: &str,
    dir: &str,
    commit: &str,
) -> Result<Vec<(String, String)>, ReloadError> {
    let pid = path_id(project);
    let entries: Vec<TreeEntry> = Get::new(format!("projects/{pid}/repository/tree"))
        .param("path", dir)
        .param("ref", commit)
        .all(client)
        .await
        .map_err(read_error(format!(
            "`{dir}/` of policy project `{project}`"
        )))?;
    let mut files = Vec::new();
    for entry in entries.into_iter().filter(|e| e.kind == "blob") {
        let file: File = Get::new(format!(
            "projects/{pid}/repository/files/{}",
            path_id(&entry.path)
        ))
        .param("ref", commit)
        .one(client)
        .await
        .map_err(read_error(format!(
            "`{}` of policy project `{project}`",
            entry.path
        )))?;
        let text = match file.encoding.as_deref() {
            Some("base64") => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(file.content.replace('\n', ""))
                    .map_err(|e| ReloadError::Read {
                        what: entry.path.clone(),
                        message: format!("not base64: {e}"),
                    })?;
                String::from_utf8(bytes).map_err(|_| ReloadError::Read {
                    what: entry.path.clone(),
                    message: "not UTF-8 text".into(),
                })?
            }
            _ => file.content,
        };
        files.push((entry.path, text));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_source_parses() {
        type Parsed<'a> = Option<Result<(&'a str, Option<&'a str>), ()>>;
        let rows: [(&str, Parsed); 8] = [
            ("policies", None),
            (
                "gitlab:cocreate/policies",
                Some(Ok(("cocreate/policies", None))),
            ),
            (
                "gitlab:cocreate/policies@main",
                Some(Ok(("cocreate/policies", Some("main")))),
            ),
            (
                "gitlab:a/b/c@release/1",
                Some(Ok(("a/b/c", Some("release/1")))),
            ),
            ("gitlab:", Some(Err(()))),
            ("gitlab:a/b@", Some(Err(()))),
            ("gitlab:a b", Some(Err(()))),
            ("gitlab:policies", Some(Err(()))),
        ];
        for (raw, want) in rows {
            let got =
                RepoSource::parse(raw).map(|r| r.map(|s| (s.project, s.reference)).map_err(|_| ()));
            let want = want.map(|w| w.map(|(p, r)| (p.to_owned(), r.map(str::to_owned))));
            assert_eq!(got, want, "{raw}");
        }
    }

    #[tokio::test]
    async fn a_directory_reloads_on_change_and_keeps_the_last_good_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for f in ["organizations.yml", "routing.yml", "agreements.yml"] {
            std::fs::copy(root.join(f), dir.path().join(f)).expect("copy");
        }
        let live = LiveConfig::start(
            ConfigSource::Dir(dir.path().to_owned()),
            ConfigSource::Embedded,
            None,
        )
        .await
        .expect("valid");
        let v1 = live.current().version.clone();
        assert_eq!(
            live.reload("test").await.expect("reads"),
            Reloaded::Unchanged
        );

        // A broken file: rejected once, the last good version stays, the error is shown.
        std::fs::write(dir.path().join("agreements.yml"), "agreements: [\n").expect("write");
        let Reloaded::Rejected { version } = live.reload("test").await.expect("reads") else {
            panic!("a broken file must be rejected")
        };
        assert_eq!(live.current().version, v1);
        let status = live.status();
        assert!(
            status
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("agreements.yml:")),
            "{status:?}"
        );
        assert_eq!(
            live.reload("test").await.expect("reads"),
            Reloaded::Rejected { version },
            "the same broken version is not read again"
        );

        // Fixed: the new version is in force and the error is gone.
        std::fs::copy(
            root.join("agreements.yml"),
            dir.path().join("agreements.yml"),
        )
        .expect("copy");
        std::fs::remove_file(dir.path().join("agreements.yml")).expect("rm");
        let Reloaded::Swapped { from, to } = live.reload("test").await.expect("reads") else {
            panic!("a valid change must be swapped in")
        };
        assert_eq!(from, v1);
        assert_eq!(live.current().version, to);
        assert!(live.current().policies.agreements.all().is_empty());
        assert!(live.status().last_error.is_none());
    }
}
