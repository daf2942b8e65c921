//! GitLab's offset pagination (`page`, `per_page`, `X-Total`, `Link`).

use super::*;

/// Offset pagination exactly like GitLab: `page`/`per_page` (default 20, max 100), the
/// `x-*` headers and a `Link` header with absolute URLs (the `gitlab` crate follows
/// `rel="next"` for keyset endpoints).
pub(super) fn paginate<T>(
    w: &World,
    ctx: &Ctx<'_>,
    items: &[T],
    render: impl Fn(&T) -> Value,
) -> HandlerResult {
    let per_page = ctx
        .query
        .u64("per_page")?
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_PER_PAGE)
        .min(MAX_PER_PAGE);
    let page = ctx.query.u64("page")?.filter(|&n| n > 0).unwrap_or(1);
    let total = items.len() as u64;
    let total_pages = total.div_ceil(per_page).max(1);
    let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let body: Vec<Value> = items
        .iter()
        .skip(start)
        .take(per_page as usize)
        .map(render)
        .collect();

    let link = |p: u64| page_url(w, ctx, p, per_page);
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
    }
    if page < total_pages {
        links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
    }
    links.push(format!("<{}>; rel=\"first\"", link(1)));
    links.push(format!("<{}>; rel=\"last\"", link(total_pages)));

    let next = if page < total_pages {
        (page + 1).to_string()
    } else {
        String::new()
    };
    let prev = if page > 1 {
        (page - 1).to_string()
    } else {
        String::new()
    };
    Ok(Reply::json(200, Value::Array(body))
        .header("Link", links.join(", "))
        .header("x-next-page", next)
        .header("x-page", page.to_string())
        .header("x-per-page", per_page.to_string())
        .header("x-prev-page", prev)
        .header("x-total", total.to_string())
        .header("x-total-pages", total_pages.to_string()))
}

/// The request's URL with `page`/`per_page` replaced; parameters sorted by name like Rails'
/// `to_query`.
pub(super) fn page_url(w: &World, ctx: &Ctx<'_>, page: u64, per_page: u64) -> String {
    let page = page.to_string();
    let per_page = per_page.to_string();
    let mut pairs: Vec<(&str, &str)> = ctx
        .query
        .0
        .iter()
        .filter(|(k, _)| k != "page" && k != "per_page")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.push(("page", &page));
    pairs.push(("per_page", &per_page));
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{}{}?{query}", w.base_url, ctx.path)
}
