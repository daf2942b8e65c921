//! Every message the bot writes, each a pure function from data to Markdown.
//!
//! Bodies come from Markdown templates (`templates/*.md`, rendered with minijinja). Values that
//! users control are neutralized (see [`crate::neutralize`]) before a template sees them, and each
//! note starts with a hidden marker so the bot can find its own notes and never post one twice.

use std::path::Path;

use minijinja::{context, Environment, UndefinedBehavior};

use crate::neutralize;

/// The templates shipped in `templates/`, embedded so the binary runs anywhere.
const EMBEDDED: &[(&str, &str)] = &[("welcome.md", include_str!("../templates/welcome.md"))];

/// A hidden HTML comment that marks a note as ours, by purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Marker {
    Welcome,
}

impl Marker {
    pub fn html(self) -> &'static str {
        match self {
            Marker::Welcome => "<!-- cocreate:welcome -->",
        }
    }

    /// Is this marker in a note body?
    pub fn is_in(self, body: &str) -> bool {
        body.contains(self.html())
    }
}

/// An error in a template, with its name and line.
#[derive(Debug, thiserror::Error)]
#[error("template `{name}`{}: {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
pub struct TemplateError {
    pub name: String,
    pub line: Option<usize>,
    pub message: String,
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        Self {
            name: e.name().unwrap_or("?").to_owned(),
            line: e.line(),
            message: e
                .detail()
                .map(str::to_owned)
                .unwrap_or_else(|| e.kind().to_string()),
        }
    }
}

/// The loaded templates.
#[derive(Debug)]
pub struct Messages {
    env: Environment<'static>,
}

/// Data for the welcome note. Strings are raw; this module neutralizes them.
#[derive(Debug, Clone)]
pub struct Welcome<'a> {
    pub author_username: &'a str,
    pub title: &'a str,
    pub reviewer_username: Option<&'a str>,
    pub bot_username: &'a str,
}

impl Messages {
    /// The embedded templates.
    pub fn embedded() -> Result<Self, TemplateError> {
        Self::from_sources(EMBEDDED.iter().map(|(n, t)| (n.to_string(), t.to_string())))
    }

    /// Templates from a directory; files missing there fall back to the embedded ones.
    pub fn load(dir: &Path) -> Result<Self, TemplateError> {
        let mut sources = Vec::new();
        for (name, text) in EMBEDDED {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => text.to_string(),
                Err(e) => {
                    return Err(TemplateError {
                        name: path.display().to_string(),
                        line: None,
                        message: format!("cannot be read: {e}"),
                    })
                }
            };
            sources.push((name.to_string(), text));
        }
        Self::from_sources(sources.into_iter())
    }

    fn from_sources(
        sources: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        for (name, text) in sources {
            env.add_template_owned(name, text)?;
        }
        Ok(Self { env })
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, TemplateError> {
        Ok(self.env.get_template(name)?.render(ctx)?)
    }

    /// The welcome note on a new Co-Create MR. Names the reviewer; carries no customer data.
    pub fn welcome(&self, w: &Welcome<'_>) -> Result<String, TemplateError> {
        let body = self.render(
            "welcome.md",
            context! {
                author => neutralize::mention(w.author_username),
                title => neutralize::inline(w.title),
                reviewer => w.reviewer_username.map(neutralize::mention),
                bot => neutralize::inline(w.bot_username),
            },
        )?;
        Ok(with_marker(Marker::Welcome, &body))
    }
}

fn with_marker(marker: Marker, body: &str) -> String {
    format!("{}\n{}", marker.html(), body.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcome_names_the_reviewer_and_carries_the_marker() {
        let m = Messages::embedded().expect("templates");
        let body = m
            .welcome(&Welcome {
                author_username: "aero-dev-1",
                title: "Add input validation",
                reviewer_username: Some("cs-reviewer-2"),
                bot_username: "cocreate-bot",
            })
            .expect("renders");
        insta::assert_snapshot!(body, @r"
        <!-- cocreate:welcome -->
        Hi @aero-dev-1, thank you for your merge request “Add input validation”, and welcome to the Co-Create program!

        @cs-reviewer-2 from the Contributor Success team will review it and coach you through to merge.

        A few things that help:
        - Keep the MR focused on one change, and describe what it does and why.
        - Pipelines may need a maintainer to start them; that is expected for contributions.
        - If you get stuck, write `@cocreate-bot help` in a comment.

        We are glad you are here.
        ");
    }

    #[test]
    fn welcome_without_reviewer_says_one_will_come() {
        let m = Messages::embedded().expect("templates");
        let body = m
            .welcome(&Welcome {
                author_username: "aero-dev-1",
                title: "Add input validation",
                reviewer_username: None,
                bot_username: "cocreate-bot",
            })
            .expect("renders");
        assert!(body.contains("will be assigned shortly"), "{body}");
        assert!(Marker::Welcome.is_in(&body));
    }

    #[test]
    fn template_errors_name_template_and_line() {
        let err = Messages::from_sources(
            [("welcome.md".to_string(), "ok\n{% if %}\n".to_string())].into_iter(),
        )
        .expect_err("syntax error");
        assert_eq!(err.name, "welcome.md");
        assert_eq!(err.line, Some(2));
    }
}
