//! The pages, from the minijinja templates of `templates/site/` (embedded in the binary;
//! `.html` templates escape every value).

use std::path::PathBuf;

use minijinja::{context, Environment};

use super::model::{Dashboard, PublicPage};
use super::SiteError;

const TEMPLATES: &[(&str, &str)] = &[
    (
        "base.html",
        include_str!("../../../templates/site/base.html"),
    ),
    (
        "index.html",
        include_str!("../../../templates/site/index.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../../templates/site/dashboard.html"),
    ),
    ("org.html", include_str!("../../../templates/site/org.html")),
];
const STYLE: &str = include_str!("../../../templates/site/style.css");
const FILTER: &str = include_str!("../../../templates/site/filter.js");

fn env() -> Result<Environment<'static>, SiteError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    for (name, text) in TEMPLATES {
        env.add_template(name, text)
            .map_err(|source| SiteError::Render {
                page: (*name).to_owned(),
                source,
            })?;
    }
    Ok(env)
}

fn render(env: &Environment<'_>, name: &str, ctx: minijinja::Value) -> Result<String, SiteError> {
    env.get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|source| SiteError::Render {
            page: name.to_owned(),
            source,
        })
}

/// The curated list, its stylesheet and its filter. `internal`: the navigation links the
/// dashboard (only on the internal site).
pub fn public(page: &PublicPage, internal: bool) -> Result<Vec<(PathBuf, String)>, SiteError> {
    let env = env()?;
    let html = render(
        &env,
        "index.html",
        context! { page, internal, root => "", current => "issues" },
    )?;
    Ok(vec![
        ("index.html".into(), html),
        ("style.css".into(), STYLE.to_owned()),
        ("filter.js".into(), FILTER.to_owned()),
    ])
}

/// The dashboard and one page per organization (`orgs/<slug>.html`).
pub fn internal(d: &Dashboard) -> Result<Vec<(PathBuf, String)>, SiteError> {
    let env = env()?;
    let mut out = vec![(
        PathBuf::from("dashboard.html"),
        render(
            &env,
            "dashboard.html",
            context! { d, internal => true, root => "", current => "dashboard" },
        )?,
    )];
    for org in d.orgs.iter().filter(|o| o.page) {
        out.push((
            PathBuf::from(format!("orgs/{}.html", org.slug)),
            render(
                &env,
                "org.html",
                context! { d, org, internal => true, root => "../", current => "org" },
            )?,
        ));
    }
    Ok(out)
}
