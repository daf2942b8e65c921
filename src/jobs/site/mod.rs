//! `cocreate site --out public/`: the program's static pages for GitLab Pages.
//!
//! - the **curated issue list** (`index.html`, public-safe): the open issues of the watched
//!   scope carrying a curated label (`routing.yml` `site.curated_labels`), filterable by label
//!   and text from the URL (`?label=co-create&q=docs`);
//! - with `--internal`, the **program dashboard** (`dashboard.html`) and one page per
//!   organization (`orgs/<slug>.html`): the same facts and numbers as `cocreate report`
//!   ([`crate::jobs::report::run_with_facts`]), plus the open Co-Create MRs.
//!
//! [`gather`] reads what only the site needs; [`model`] turns facts and metrics into what the
//! pages show (pure); [`render`] fills the minijinja templates of `templates/site/`;
//! [`charts`] draws the SVG charts.

pub mod charts;
pub mod gather;
pub mod model;
pub mod render;

use std::path::{Path, PathBuf};

use crate::gitlab::GitlabError;
use crate::jobs::report::{self, Quarter, ReportError};
use crate::jobs::JobContext;

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Gitlab(#[from] GitlabError),
    #[error(transparent)]
    Chart(#[from] charts::ChartError),
    #[error("cannot render the page {page}: {source}")]
    Render {
        page: String,
        source: minijinja::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The built site: files by their path relative to the output directory.
#[derive(Debug, Clone)]
pub struct Site {
    pub files: Vec<(PathBuf, String)>,
    pub api_reads: u64,
    pub elapsed_ms: u128,
}

impl Site {
    /// Writes every file under `out` (created when missing). Files of an earlier build that
    /// this one does not have are left alone: point `--out` at a fresh directory.
    pub fn write(&self, out: &Path) -> Result<(), SiteError> {
        for (rel, text) in &self.files {
            let path = out.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| SiteError::Write {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            std::fs::write(&path, text).map_err(|source| SiteError::Write { path, source })?;
        }
        Ok(())
    }

    /// The one-line summary `site` prints after writing the files to `out`.
    pub fn summary(&self, out: &Path, internal: bool) -> String {
        format!(
            "site: {} files in {} ({}); {} GitLab API reads, {} ms\n",
            self.files.len(),
            out.display(),
            if internal { "internal" } else { "public" },
            self.api_reads,
            self.elapsed_ms
        )
    }

    pub fn file(&self, rel: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|(p, _)| p == Path::new(rel))
            .map(|(_, t)| t.as_str())
    }
}

/// Builds the site. Reads: the curated issue lists; with `internal`, also the report's facts
/// of `quarter` and the open Co-Create MRs. The public site reads nothing of the tracking
/// project and no policy but the watched scope and the curated labels.
pub async fn run(ctx: &JobContext, quarter: Quarter, internal: bool) -> Result<Site, SiteError> {
    let live = ctx.live();
    let spend = super::Spend::start(&live.client);
    let now = ctx.clock.now();
    let issues = gather::curated_issues(live, &ctx.policies).await?;
    let public = model::public_page(&ctx.policies, &issues, now);
    let mut files = render::public(&public, internal)?;
    if internal {
        let (r, facts) = report::run_with_facts(ctx, quarter, None).await?;
        let mrs = gather::open_mrs(live, &ctx.policies).await?;
        let dashboard = model::dashboard(&ctx.policies, &r, &facts, quarter, &mrs, now)?;
        files.extend(render::internal(&dashboard)?);
    }
    let spent = spend.so_far();
    Ok(Site {
        files,
        api_reads: spent.reads,
        elapsed_ms: spent.elapsed_ms,
    })
}
