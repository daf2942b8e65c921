//! Request plumbing: the wiremock responder, the request context, parameters (query, form,
//! JSON) and replies (including injected faults and rate limiting).

use super::*;

pub(super) struct Responder {
    pub(super) world: Arc<Mutex<World>>,
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let ctx = Ctx::new(req);
        let reply = lock(&self.world).handle(&ctx);
        // A hook test calls the hook outside the lock.
        let reply = super::hook_test::finish(&self.world, reply);
        reply.into_template()
    }
}

/// One incoming request, pre-digested for handlers.
pub(super) struct Ctx<'a> {
    pub(super) req: &'a Request,
    pub(super) method: String,
    /// Raw (percent-encoded) path.
    pub(super) path: String,
    pub(super) raw_query: String,
    pub(super) query: Params,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(req: &'a Request) -> Self {
        let raw_query = req.url.query().unwrap_or_default().to_owned();
        Ctx {
            req,
            method: req.method.as_str().to_ascii_uppercase(),
            path: req.url.path().to_owned(),
            query: Params::from_form(raw_query.as_bytes()),
            raw_query,
        }
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.req.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Query parameters followed by body parameters (form or JSON), like Grape merges them.
    pub(super) fn params(&self) -> Result<Params, Reply> {
        let mut params = self.query.clone();
        let body = &self.req.body;
        let is_json = self
            .header("content-type")
            .is_some_and(|ct| ct.contains("json"))
            || body.trim_ascii_start().first() == Some(&b'{');
        let from_body = if body.is_empty() {
            Params::default()
        } else if is_json {
            Params::from_json(body)?
        } else {
            Params::from_form(body)
        };
        params.0.extend(from_body.0);
        Ok(params)
    }
}

/// Ordered key/value pairs (repeated keys allowed, `key[]` for arrays).
#[derive(Debug, Clone, Default)]
pub(super) struct Params(pub(super) Vec<(String, String)>);

impl Params {
    pub(super) fn from_form(bytes: &[u8]) -> Self {
        Params(
            url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub(super) fn from_json(bytes: &[u8]) -> Result<Self, Reply> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|_| Reply::error(400, "400 Bad request - invalid JSON body"))?;
        let Value::Object(map) = value else {
            return Err(Reply::error(
                400,
                "400 Bad request - JSON body must be an object",
            ));
        };
        let mut pairs = Vec::new();
        for (key, value) in map {
            match value {
                Value::Null => {}
                Value::Array(items) if items.is_empty() => pairs.push((key, String::new())),
                Value::Array(items) => {
                    let array_key = format!("{key}[]");
                    pairs.extend(items.iter().map(|v| (array_key.clone(), scalar_string(v))));
                }
                other => pairs.push((key, scalar_string(&other))),
            }
        }
        Ok(Params(pairs))
    }

    /// Last value of `key` (Rack semantics for repeated scalar keys).
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key[]=a&key[]=b` or `key=a,b`; `None` if the key is absent. Empty items are dropped.
    pub(super) fn list(&self, key: &str) -> Option<Vec<String>> {
        let array_key = format!("{key}[]");
        let items: Vec<&str> = self
            .0
            .iter()
            .filter(|(k, _)| *k == array_key)
            .map(|(_, v)| v.as_str())
            .collect();
        let raw = if items.is_empty() {
            vec![self.get(key)?]
        } else {
            items
        };
        Some(
            raw.iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    pub(super) fn u64(&self, key: &str) -> Result<Option<u64>, Reply> {
        self.get(key)
            .map(|v| v.trim().parse().map_err(|_| invalid_param(key)))
            .transpose()
    }

    pub(super) fn time(&self, key: &str) -> Result<Option<DateTime<Utc>>, Reply> {
        self.get(key)
            .map(|v| parse_time(v).ok_or_else(|| invalid_param(key)))
            .transpose()
    }

    /// Grape's Boolean coercion: `true`/`false` (also `1`/`0`, `yes`/`no`, `t`/`f`), else 400.
    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, Reply> {
        match self.get(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "t" => Ok(Some(true)),
                "false" | "0" | "no" | "f" => Ok(Some(false)),
                _ => Err(invalid_param(key)),
            },
        }
    }

    /// The value if it is one of `allowed`, else 400.
    pub(super) fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<String>, Reply> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_owned())),
            Some(_) => Err(Reply::error(
                400,
                &format!("{key} does not have a valid value"),
            )),
        }
    }
}

pub(super) fn scalar_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(super) fn invalid_param(key: &str) -> Reply {
    Reply::error(400, &format!("{key} is invalid"))
}

pub(super) enum Body {
    Json(Value),
    Text(String),
}

/// A response before it becomes a wiremock `ResponseTemplate`.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) body: Body,
    pub(super) headers: Vec<(String, String)>,
    pub(super) delay: Option<Duration>,
}

/// Handlers return `Err` for early exits (404, 400, ...); both sides are sent as is.
pub(super) type HandlerResult = Result<Reply, Reply>;

impl Reply {
    pub(super) fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(body),
            headers: Vec::new(),
            delay: None,
        }
    }

    /// `{"message": msg}`, GitLab's usual error shape.
    pub(super) fn message(status: u16, msg: &str) -> Reply {
        Reply::json(status, json!({ "message": msg }))
    }

    /// `{"error": msg}`, the shape of Grape validation errors and unknown routes.
    pub(super) fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, json!({ "error": msg }))
    }

    pub(super) fn status_fault(status: u16) -> Reply {
        Reply::message(status, &format!("{status} {}", reason_phrase(status)))
    }

    pub(super) fn rate_limited(retry_after_secs: u64, now: DateTime<Utc>) -> Reply {
        let reset = now + TimeDelta::seconds(i64::try_from(retry_after_secs).unwrap_or(i64::MAX));
        Reply {
            status: 429,
            body: Body::Text("Retry later\n".to_owned()),
            headers: vec![
                ("Retry-After".to_owned(), retry_after_secs.to_string()),
                (
                    "RateLimit-Name".to_owned(),
                    "throttle_authenticated_api".to_owned(),
                ),
                ("RateLimit-Limit".to_owned(), "2000".to_owned()),
                ("RateLimit-Observed".to_owned(), "2001".to_owned()),
                ("RateLimit-Remaining".to_owned(), "0".to_owned()),
                ("RateLimit-Reset".to_owned(), reset.timestamp().to_string()),
                (
                    "RateLimit-ResetTime".to_owned(),
                    reset.format("%a, %d %b %Y %H:%M:%S GMT").to_string(),
                ),
            ],
            delay: None,
        }
    }

    pub(super) fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub(super) fn into_template(self) -> ResponseTemplate {
        let mut template = ResponseTemplate::new(self.status);
        template = match self.body {
            Body::Json(value) => template.set_body_json(value),
            Body::Text(text) => template.set_body_raw(text, "text/plain"),
        };
        for (name, value) in self.headers {
            template = template.append_header(name.as_str(), value.as_str());
        }
        if let Some(delay) = self.delay {
            template = template.set_delay(delay);
        }
        template
    }
}

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}
