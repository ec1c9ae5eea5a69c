//! The native subscription body: JSON → validated [`Subscription`] fields, and a subscription →
//! the JSON the API shows.
//!
//! Parse → validate → domain type (STYLE): the body is read as a JSON tree and every field is
//! checked, collecting *all* problems with their paths (`filters[0].types[1]`) so a caller fixes
//! everything in one round trip. Secrets are write-only: a GET never shows a header marked
//! `secret`, an auth password or token, or the signing secret; and since a client cannot read
//! them back, a PUT or PATCH that leaves a secret out keeps the stored value (the Contensis
//! convention), while an explicit `null` removes it.

use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::api::error::FieldError;
use crate::model::{
    AttributeMatch, Filter, Format, HeaderSpec, HttpMethod, RetryPolicy, Secret, Subscription,
    TargetAuth, TypePattern,
};

/// Longest accepted name, URL and header value: generous, but bounded.
const MAX_NAME: usize = 256;
const MAX_URL: usize = 4096;
const MAX_DESCRIPTION: usize = 4096;
const MAX_FILTERS: usize = 256;
const MAX_LIST: usize = 1024;
const MAX_HEADERS: usize = 64;
const MAX_RETRIES: usize = 100;
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// How a body relates to what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST`: absent fields take their defaults.
    Create,
    /// `PUT`: absent fields take their defaults, except secrets, which are kept.
    Replace,
    /// `PATCH`: absent fields keep their stored value; `null` resets to the default.
    Patch,
}

/// The user-settable part of a subscription (ids, dialect and version stay with the caller).
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    pub method: HttpMethod,
    pub enabled: bool,
    pub filters: Vec<Filter>,
    pub headers: Vec<HeaderSpec>,
    pub auth: Option<TargetAuth>,
    pub signing_secret: Option<Secret>,
    pub format: Format,
    pub retry: Option<RetryPolicy>,
    pub timeout: Option<Duration>,
}

impl Fields {
    /// Copies these fields onto `sub`.
    pub fn apply(self, sub: &mut Subscription) {
        sub.name = self.name.into();
        sub.description = self.description.into();
        sub.url = self.url.into();
        sub.method = self.method;
        sub.enabled = self.enabled;
        sub.filters = self.filters.into();
        sub.headers = self.headers.into();
        sub.auth = self.auth.map(Box::new);
        sub.signing_secret = self.signing_secret;
        sub.format = self.format;
        sub.retry = self.retry.map(Box::new);
        sub.timeout = self.timeout.into();
    }

    fn of(sub: &Subscription) -> Fields {
        Fields {
            name: sub.name.to_string(),
            description: sub.description.as_deref().map(str::to_string),
            url: sub.url.to_string(),
            method: sub.method,
            enabled: sub.enabled,
            filters: sub.filters.to_vec(),
            headers: sub.headers.to_vec(),
            auth: sub.auth.as_deref().cloned(),
            signing_secret: sub.signing_secret.clone(),
            format: sub.format,
            retry: sub.retry.as_deref().cloned(),
            timeout: sub.timeout.get(),
        }
    }
}

const KNOWN: &[&str] = &[
    "name",
    "description",
    "url",
    "method",
    "enabled",
    "filters",
    "headers",
    "auth",
    "signing_secret",
    "format",
    "retry",
    "timeout",
];

/// Read-only fields a client may echo back from a GET; they are ignored, not errors.
const READ_ONLY: &[&str] = &[
    "id",
    "dialect",
    "tenant",
    "signed",
    "disabled_reason",
    "created_at",
    "created_by",
    "modified_at",
    "modified_by",
    "version",
];

/// Validates `body` against `mode`; `existing` is the stored subscription for PUT and PATCH.
pub fn parse(
    body: &Value,
    mode: Mode,
    existing: Option<&Subscription>,
) -> Result<Fields, Vec<FieldError>> {
    let mut errs = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    for key in obj.keys() {
        if !KNOWN.contains(&key.as_str()) && !READ_ONLY.contains(&key.as_str()) {
            errs.push(FieldError::new(key.clone(), "unknown field"));
        }
    }
    let old = existing.map(Fields::of);
    let get = |k: &str| obj.get(k);
    // PATCH: an absent field keeps its stored value.
    let patch_old = if mode == Mode::Patch {
        old.as_ref()
    } else {
        None
    };

    let name = match get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_NAME => s.clone(),
        Some(Value::String(_)) => {
            errs.push(FieldError::new(
                "name",
                format!("must be 1 to {MAX_NAME} characters and not blank"),
            ));
            String::new()
        }
        Some(_) => {
            errs.push(FieldError::new("name", "must be a string"));
            String::new()
        }
        None => match patch_old {
            Some(o) => o.name.clone(),
            None => {
                errs.push(FieldError::new("name", "is required"));
                String::new()
            }
        },
    };

    let description = match get("description") {
        None => patch_old.and_then(|o| o.description.clone()),
        Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_DESCRIPTION => Some(s.clone()),
        Some(_) => {
            errs.push(FieldError::new(
                "description",
                format!("must be a string of at most {MAX_DESCRIPTION} characters, or null"),
            ));
            None
        }
    };

    let url = match get("url") {
        Some(Value::String(s)) => {
            if let Err(m) = check_url(s) {
                errs.push(FieldError::new("url", m));
            }
            s.clone()
        }
        Some(_) => {
            errs.push(FieldError::new("url", "must be a string"));
            String::new()
        }
        None => match patch_old {
            Some(o) => o.url.clone(),
            None => {
                errs.push(FieldError::new("url", "is required"));
                String::new()
            }
        },
    };

    let method = match get("method") {
        None => patch_old.map_or(HttpMethod::Post, |o| o.method),
        Some(Value::Null) => HttpMethod::Post,
        Some(Value::String(s)) => HttpMethod::parse(s).unwrap_or_else(|| {
            errs.push(FieldError::new(
                "method",
                "must be one of GET, POST, PUT, PATCH, DELETE",
            ));
            HttpMethod::Post
        }),
        Some(_) => {
            errs.push(FieldError::new("method", "must be a string"));
            HttpMethod::Post
        }
    };

    let enabled = match get("enabled") {
        None => patch_old.is_none_or(|o| o.enabled),
        Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errs.push(FieldError::new("enabled", "must be true or false"));
            true
        }
    };

    let filters = match get("filters") {
        None => patch_old.map(|o| o.filters.clone()).unwrap_or_default(),
        Some(Value::Null) => Vec::new(),
        Some(v) => parse_filters(v, &mut errs),
    };

    let old_headers = old.as_ref().map(|o| o.headers.as_slice()).unwrap_or(&[]);
    let headers = match get("headers") {
        None => patch_old.map(|o| o.headers.clone()).unwrap_or_default(),
        Some(Value::Null) => Vec::new(),
        Some(v) => parse_headers(v, old_headers, &mut errs),
    };

    let auth = match get("auth") {
        None if mode == Mode::Create => None,
        None => old.as_ref().and_then(|o| o.auth.clone()),
        Some(Value::Null) => None,
        Some(v) => parse_auth(v, old.as_ref().and_then(|o| o.auth.as_ref()), &mut errs),
    };

    let signing_secret = match get("signing_secret") {
        None if mode == Mode::Create => None,
        None => old.as_ref().and_then(|o| o.signing_secret.clone()),
        Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(Secret::new(s.clone())),
        Some(_) => {
            errs.push(FieldError::new(
                "signing_secret",
                "must be a Standard Webhooks secret (`whsec_` followed by base64), or null",
            ));
            None
        }
    };

    let format = match get("format") {
        None => patch_old.map_or(Format::CloudEvents, |o| o.format),
        Some(Value::Null) => Format::CloudEvents,
        Some(Value::String(s)) => Format::parse(s).unwrap_or_else(|| {
            errs.push(FieldError::new(
                "format",
                "must be one of \"cloudevents\", \"raw\", \"sitecore\", \"sitecore-audit\", \"datocms\", \"contensis\"",
            ));
            Format::CloudEvents
        }),
        Some(_) => {
            errs.push(FieldError::new("format", "must be a string"));
            Format::CloudEvents
        }
    };

    let retry = match get("retry") {
        None => patch_old.and_then(|o| o.retry.clone()),
        Some(Value::Null) => None,
        Some(v) => parse_retry(v, &mut errs),
    };

    let timeout = match get("timeout") {
        None => patch_old.and_then(|o| o.timeout),
        Some(Value::Null) => None,
        Some(Value::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if !d.is_zero() && d <= MAX_TIMEOUT => Some(d),
            Ok(_) => {
                errs.push(FieldError::new(
                    "timeout",
                    "must be more than 0 and at most 5m",
                ));
                None
            }
            Err(e) => {
                errs.push(FieldError::new(
                    "timeout",
                    format!("`{s}` is not a duration such as \"10s\" ({e})"),
                ));
                None
            }
        },
        Some(_) => {
            errs.push(FieldError::new(
                "timeout",
                "must be a duration string such as \"10s\", or null",
            ));
            None
        }
    };

    if errs.is_empty() {
        Ok(Fields {
            name,
            description,
            url,
            method,
            enabled,
            filters,
            headers,
            auth,
            signing_secret,
            format,
            retry,
            timeout,
        })
    } else {
        Err(errs)
    }
}

/// An absolute `http`/`https` URL with a host.
pub fn check_url(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    let uri: http::Uri = s
        .parse()
        .map_err(|e| format!("`{s}` is not a valid URL ({e})"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err("must be an absolute http:// or https:// URL".into()),
    }
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err("must name a host".into()),
    }
}

fn string_list(v: &Value, path: &str, errs: &mut Vec<FieldError>) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) if items.len() <= MAX_LIST => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => out.push(s.clone()),
                    _ => errs.push(FieldError::new(
                        format!("{path}[{i}]"),
                        "must be a non-empty string",
                    )),
                }
            }
            out
        }
        Value::Array(_) => {
            errs.push(FieldError::new(path, format!("at most {MAX_LIST} values")));
            Vec::new()
        }
        _ => {
            errs.push(FieldError::new(
                path,
                "must be a string or an array of strings",
            ));
            Vec::new()
        }
    }
}

fn parse_filters(v: &Value, errs: &mut Vec<FieldError>) -> Vec<Filter> {
    let Some(items) = v.as_array() else {
        errs.push(FieldError::new("filters", "must be an array of filters"));
        return Vec::new();
    };
    if items.len() > MAX_FILTERS {
        errs.push(FieldError::new(
            "filters",
            format!("at most {MAX_FILTERS} filters"),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("filters[{i}]");
        let Some(obj) = item.as_object() else {
            errs.push(FieldError::new(
                path,
                "must be an object with `types` and/or `attributes`",
            ));
            continue;
        };
        let mut types: Vec<TypePattern> = Vec::new();
        let mut attributes = Vec::new();
        for key in obj.keys() {
            if key != "types" && key != "attributes" {
                errs.push(FieldError::new(format!("{path}.{key}"), "unknown field"));
            }
        }
        if let Some(t) = obj.get("types").filter(|t| !t.is_null()) {
            let tpath = format!("{path}.types");
            for (j, s) in string_list(t, &tpath, errs).iter().enumerate() {
                match TypePattern::parse(s) {
                    Ok(p) => {
                        if !types.contains(&p) {
                            types.push(p)
                        }
                    }
                    Err(m) => errs.push(FieldError::new(format!("{tpath}[{j}]"), m)),
                }
            }
        }
        if let Some(a) = obj.get("attributes").filter(|a| !a.is_null()) {
            let apath = format!("{path}.attributes");
            match a.as_object() {
                Some(map) => attributes = parse_attributes(map, &apath, errs),
                None => errs.push(FieldError::new(
                    apath,
                    "must be an object of attribute name → value or list of values",
                )),
            }
        }
        out.push(Filter {
            types: types.into(),
            attributes: attributes.into(),
        });
    }
    out
}

fn parse_attributes(
    map: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Vec<AttributeMatch> {
    let mut out: Vec<(Box<str>, Vec<Box<str>>)> = Vec::with_capacity(map.len());
    for (name, v) in map {
        let apath = format!("{path}.{name}");
        let lname = name.to_ascii_lowercase();
        if lname.is_empty()
            || lname.len() > 64
            || !lname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        {
            errs.push(FieldError::new(
                apath,
                "attribute names are 1-64 characters: letters, digits, `_`, `-`, `.`",
            ));
            continue;
        }
        let mut values: Vec<Box<str>> = string_list(v, &apath, errs)
            .into_iter()
            .map(|s| s.to_lowercase().into_boxed_str())
            .collect();
        if values.is_empty() {
            errs.push(FieldError::new(apath, "needs at least one value"));
            continue;
        }
        values.sort();
        values.dedup();
        match out.iter_mut().find(|(name, _)| **name == *lname) {
            // `Language` and `language` in one filter: the same attribute.
            Some((_, have)) => {
                have.extend(values);
                have.sort();
                have.dedup();
            }
            None => out.push((lname.into_boxed_str(), values)),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter()
        .map(|(name, values)| AttributeMatch {
            name,
            values: values.into(),
        })
        .collect()
}

fn parse_headers(v: &Value, old: &[HeaderSpec], errs: &mut Vec<FieldError>) -> Vec<HeaderSpec> {
    let Some(map) = v.as_object() else {
        errs.push(FieldError::new(
            "headers",
            "must be an object: {\"X-Name\": {\"value\": \"…\", \"secret\": false}}",
        ));
        return Vec::new();
    };
    if map.len() > MAX_HEADERS {
        errs.push(FieldError::new(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
        return Vec::new();
    }
    let mut out = Vec::with_capacity(map.len());
    for (name, spec) in map {
        let path = format!("headers.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errs.push(FieldError::new(path, "is not a valid HTTP header name"));
            continue;
        }
        let (value, secret) = match spec {
            Value::String(s) => (Some(s.clone()), false),
            Value::Object(o) => {
                for k in o.keys() {
                    if k != "value" && k != "secret" {
                        errs.push(FieldError::new(format!("{path}.{k}"), "unknown field"));
                    }
                }
                let secret = match o.get("secret") {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(_) => {
                        errs.push(FieldError::new(
                            format!("{path}.secret"),
                            "must be true or false",
                        ));
                        false
                    }
                };
                let value = match o.get("value") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(_) => {
                        errs.push(FieldError::new(format!("{path}.value"), "must be a string"));
                        continue;
                    }
                };
                (value, secret)
            }
            _ => {
                errs.push(FieldError::new(
                    path,
                    "must be a string or {\"value\": \"…\", \"secret\": bool}",
                ));
                continue;
            }
        };
        let value = match value {
            Some(v) => v,
            // A secret header sent back without its value keeps the stored one.
            None => match old
                .iter()
                .find(|h| h.secret && h.name.eq_ignore_ascii_case(name))
            {
                Some(h) if secret => h.value.expose().to_string(),
                _ => {
                    errs.push(FieldError::new(
                        format!("{path}.value"),
                        "is required (only a stored secret header may omit it)",
                    ));
                    continue;
                }
            },
        };
        if http::HeaderValue::from_str(&value).is_err() {
            errs.push(FieldError::new(
                format!("{path}.value"),
                "is not a valid HTTP header value (visible ASCII and spaces only)",
            ));
            continue;
        }
        out.push(HeaderSpec {
            name: name.clone(),
            value: Secret::new(value),
            secret,
        });
    }
    out
}

fn parse_auth(
    v: &Value,
    old: Option<&TargetAuth>,
    errs: &mut Vec<FieldError>,
) -> Option<TargetAuth> {
    let Some(o) = v.as_object() else {
        errs.push(FieldError::new(
            "auth",
            "must be an object with a `type` of basic, bearer or header, or null",
        ));
        return None;
    };
    let field = |k: &str, errs: &mut Vec<FieldError>| -> Option<String> {
        match o.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                errs.push(FieldError::new(format!("auth.{k}"), "must be a string"));
                None
            }
        }
    };
    let allowed: &[&str] = match o.get("type").and_then(Value::as_str) {
        Some("basic") => &["type", "username", "password"],
        Some("bearer") => &["type", "token"],
        Some("header") => &["type", "name", "value"],
        _ => {
            errs.push(FieldError::new(
                "auth.type",
                "must be \"basic\", \"bearer\" or \"header\"",
            ));
            return None;
        }
    };
    for k in o.keys() {
        if !allowed.contains(&k.as_str()) {
            errs.push(FieldError::new(
                format!("auth.{k}"),
                "unknown field for this auth type",
            ));
        }
    }
    let missing = |k: &str, errs: &mut Vec<FieldError>| {
        errs.push(FieldError::new(format!("auth.{k}"), "is required"));
    };
    match o.get("type").and_then(Value::as_str) {
        Some("basic") => {
            let username = field("username", errs);
            let password = field("password", errs).or_else(|| match old {
                Some(TargetAuth::Basic { password, .. }) => Some(password.expose().to_string()),
                _ => None,
            });
            match (username, password) {
                (Some(u), Some(p)) if !u.contains(':') => Some(TargetAuth::Basic {
                    username: u,
                    password: Secret::new(p),
                }),
                (Some(_), Some(_)) => {
                    errs.push(FieldError::new("auth.username", "must not contain `:`"));
                    None
                }
                (u, p) => {
                    if u.is_none() {
                        missing("username", errs);
                    }
                    if p.is_none() {
                        missing("password", errs);
                    }
                    None
                }
            }
        }
        Some("bearer") => {
            let token = field("token", errs).or_else(|| match old {
                Some(TargetAuth::Bearer { token }) => Some(token.expose().to_string()),
                _ => None,
            });
            match token {
                Some(t) if http::HeaderValue::from_str(&format!("Bearer {t}")).is_ok() => {
                    Some(TargetAuth::Bearer {
                        token: Secret::new(t),
                    })
                }
                Some(_) => {
                    errs.push(FieldError::new("auth.token", "is not a valid header value"));
                    None
                }
                None => {
                    missing("token", errs);
                    None
                }
            }
        }
        _ => {
            let name = field("name", errs);
            let value = field("value", errs).or_else(|| match old {
                Some(TargetAuth::Header { value, .. }) => Some(value.expose().to_string()),
                _ => None,
            });
            match (name, value) {
                (Some(n), Some(v)) => {
                    if http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                        errs.push(FieldError::new("auth.name", "is not a valid header name"));
                        return None;
                    }
                    if http::HeaderValue::from_str(&v).is_err() {
                        errs.push(FieldError::new("auth.value", "is not a valid header value"));
                        return None;
                    }
                    Some(TargetAuth::Header {
                        name: n,
                        value: Secret::new(v),
                    })
                }
                (n, v) => {
                    if n.is_none() {
                        missing("name", errs);
                    }
                    if v.is_none() {
                        missing("value", errs);
                    }
                    None
                }
            }
        }
    }
}

fn parse_retry(v: &Value, errs: &mut Vec<FieldError>) -> Option<RetryPolicy> {
    let Some(o) = v.as_object() else {
        errs.push(FieldError::new(
            "retry",
            "must be an object: {\"schedule\": [\"5s\", \"5m\", …]}",
        ));
        return None;
    };
    for k in o.keys() {
        if k != "schedule" && k != "jitter" {
            errs.push(FieldError::new(format!("retry.{k}"), "unknown field"));
        }
    }
    let mut schedule = Vec::new();
    match o.get("schedule") {
        Some(Value::Array(items)) if items.len() <= MAX_RETRIES => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("retry.schedule[{i}]");
                match item.as_str().map(humantime::parse_duration) {
                    Some(Ok(d)) if d <= Duration::from_secs(7 * 24 * 3600) => schedule.push(d),
                    Some(Ok(_)) => errs.push(FieldError::new(path, "at most 7 days")),
                    Some(Err(e)) => errs.push(FieldError::new(
                        path,
                        format!("not a duration such as \"5m\" ({e})"),
                    )),
                    None => errs.push(FieldError::new(path, "must be a duration string")),
                }
            }
        }
        Some(Value::Array(_)) => errs.push(FieldError::new(
            "retry.schedule",
            format!("at most {MAX_RETRIES} retries"),
        )),
        _ => errs.push(FieldError::new(
            "retry.schedule",
            "is required: an array of delays such as [\"5s\", \"5m\"] ([] for no retries)",
        )),
    }
    let jitter = match o.get("jitter") {
        None | Some(Value::Null) => crate::config::defaults::RETRY_JITTER,
        Some(v) => match v.as_f64() {
            Some(j) if (0.0..=1.0).contains(&j) => j,
            _ => {
                errs.push(FieldError::new(
                    "retry.jitter",
                    "must be a number from 0 to 1",
                ));
                0.0
            }
        },
    };
    Some(RetryPolicy { schedule, jitter })
}

fn duration_text(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn time_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// A subscription as the native API shows it. Secrets are left out; `signed` says whether a
/// signing secret is set.
pub fn view(sub: &Subscription) -> Value {
    let filters: Vec<Value> = sub
        .filters
        .iter()
        .map(|f| {
            let attrs: Map<String, Value> = f
                .attributes
                .iter()
                .map(|a| {
                    (
                        a.name.to_string(),
                        Value::from(a.values.iter().map(|v| v.to_string()).collect::<Vec<_>>()),
                    )
                })
                .collect();
            json!({
                "types": f.types.iter().map(TypePattern::to_pattern_string).collect::<Vec<_>>(),
                "attributes": attrs,
            })
        })
        .collect();
    let headers: Map<String, Value> = sub
        .headers
        .iter()
        .map(|h| {
            let v = if h.secret {
                json!({"secret": true})
            } else {
                json!({"value": h.value.expose()})
            };
            (h.name.clone(), v)
        })
        .collect();
    let auth = match sub.auth.as_deref() {
        None => Value::Null,
        Some(TargetAuth::Basic { username, .. }) => json!({"type": "basic", "username": username}),
        Some(TargetAuth::Bearer { .. }) => json!({"type": "bearer"}),
        Some(TargetAuth::Header { name, .. }) => json!({"type": "header", "name": name}),
    };
    let retry = sub.retry.as_ref().map(|r| {
        json!({
            "schedule": r.schedule.iter().map(|d| duration_text(*d)).collect::<Vec<_>>(),
            "jitter": r.jitter,
        })
    });
    let tenant = sub.tenant.as_ref().map(|t| {
        let kind = match t.kind {
            crate::model::TenantKind::Space => "space",
            crate::model::TenantKind::Project => "project",
            crate::model::TenantKind::Site => "site",
        };
        json!({"kind": kind, "name": t.name})
    });
    let dialect = match sub.dialect {
        crate::model::Dialect::Native => "native",
        crate::model::Dialect::SitecoreAudit => "sitecore-audit",
        crate::model::Dialect::Contensis => "contensis",
        crate::model::Dialect::DatoCms => "datocms",
    };
    json!({
        "id": sub.id.to_string(),
        "name": sub.name,
        "description": sub.description,
        "url": sub.url,
        "method": sub.method.as_str(),
        "enabled": sub.enabled,
        "filters": filters,
        "headers": headers,
        "auth": auth,
        "signed": sub.signing_secret.is_some(),
        "format": sub.format.as_str(),
        "retry": retry,
        "timeout": sub.timeout.get().map(duration_text),
        "dialect": dialect,
        "tenant": tenant,
        "disabled_reason": sub.disabled_reason,
        "created_at": time_text(sub.version.created_at_ms),
        "created_by": sub.version.created_by,
        "modified_at": time_text(sub.version.modified_at_ms),
        "modified_by": sub.version.modified_by,
        "version": sub.version.version_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dialect, SubscriptionId, Version};
    use crate::model::{OptDuration, OptText};

    fn sample() -> Value {
        json!({
            "name": "search indexer", "url": "https://indexer.internal/hook", "enabled": true,
            "filters": [{"types": ["item:added", "item:saved"], "attributes": {"language": ["en"]}}],
            "headers": {"X-Team": {"value": "web"}, "X-Key": {"value": "k", "secret": true}},
            "auth": {"type": "basic", "username": "u", "password": "p"},
            "signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "format": "cloudevents",
            "retry": {"schedule": ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]}
        })
    }

    fn stored(fields: Fields) -> Subscription {
        let mut s = Subscription {
            id: SubscriptionId::generate(),
            dialect: Dialect::Native,
            tenant: None,
            name: Box::default(),
            description: OptText::NONE,
            enabled: true,
            url: Box::default(),
            method: HttpMethod::Post,
            filters: Box::default(),
            headers: Box::default(),
            auth: None,
            signing_secret: None,
            format: Format::CloudEvents,
            retry: None,
            timeout: OptDuration::NONE,
            connect_timeout: OptDuration::NONE,
            template: None,
            extras: Default::default(),
            disabled_reason: OptText::NONE,
            version: Version {
                created_by: "t".into(),
                created_at_ms: 0,
                modified_by: "t".into(),
                modified_at_ms: 0,
                version_no: 1,
            },
        };
        fields.apply(&mut s);
        s
    }

    #[test]
    fn the_issue_example_parses() {
        let f = parse(&sample(), Mode::Create, None).unwrap();
        assert_eq!(f.name, "search indexer");
        assert_eq!(f.filters.len(), 1);
        assert_eq!(f.filters[0].types.len(), 2);
        assert_eq!(&*f.filters[0].attributes[0].name, "language");
        assert_eq!(f.headers.len(), 2);
        assert!(f.headers.iter().any(|h| h.name == "X-Key" && h.secret));
        assert!(matches!(f.auth, Some(TargetAuth::Basic { .. })));
        assert_eq!(f.retry.unwrap().schedule.len(), 7);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let body = json!({
            "url": "ftp://x", "enabled": "yes", "bogus": 1,
            "filters": [{"types": ["it*em", ""], "attributes": {"language": []}, "extra": 1}],
            "headers": {"Bad Header": "x", "X-Ok": {"value": 5}},
            "auth": {"type": "basic"},
            "retry": {"schedule": ["5s", "soon"]},
            "timeout": "1h",
            "format": "xml"
        });
        let errs = parse(&body, Mode::Create, None).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "name",
            "url",
            "enabled",
            "bogus",
            "filters[0].types[0]",
            "filters[0].types[1]",
            "filters[0].attributes.language",
            "filters[0].extra",
            "headers.Bad Header",
            "headers.X-Ok.value",
            "auth.username",
            "auth.password",
            "retry.schedule[1]",
            "timeout",
            "format",
        ] {
            assert!(fields.contains(&want), "missing {want} in {fields:?}");
        }
    }

    #[test]
    fn view_hides_secrets() {
        let sub = stored(parse(&sample(), Mode::Create, None).unwrap());
        let v = view(&sub);
        let text = v.to_string();
        assert!(!text.contains("whsec_"), "{text}");
        assert!(!text.contains("\"p\""), "{text}");
        assert_eq!(v["headers"]["X-Key"], json!({"secret": true}));
        assert_eq!(v["headers"]["X-Team"], json!({"value": "web"}));
        assert_eq!(v["auth"], json!({"type": "basic", "username": "u"}));
        assert_eq!(v["signed"], json!(true));
    }

    #[test]
    fn a_get_put_roundtrip_keeps_secrets() {
        let sub = stored(parse(&sample(), Mode::Create, None).unwrap());
        let mut body = view(&sub);
        body["name"] = json!("renamed");
        let f = parse(&body, Mode::Replace, Some(&sub)).unwrap();
        assert_eq!(f.name, "renamed");
        assert_eq!(f.signing_secret, sub.signing_secret);
        assert_eq!(f.auth.as_ref(), sub.auth.as_deref());
        let key = f.headers.iter().find(|h| h.name == "X-Key").unwrap();
        assert_eq!(key.value.expose(), "k");
    }

    #[test]
    fn patch_changes_only_what_it_names() {
        let sub = stored(parse(&sample(), Mode::Create, None).unwrap());
        let f = parse(
            &json!({"enabled": false, "auth": null}),
            Mode::Patch,
            Some(&sub),
        )
        .unwrap();
        assert!(!f.enabled);
        assert_eq!(f.auth, None);
        assert_eq!(*f.url, *sub.url);
        assert_eq!(f.filters, *sub.filters);
        assert_eq!(f.headers, *sub.headers);
        // PUT resets what it leaves out (but secrets).
        let f = parse(
            &json!({"name": "n", "url": "http://a.example/"}),
            Mode::Replace,
            Some(&sub),
        )
        .unwrap();
        assert!(f.filters.is_empty() && f.headers.is_empty() && f.enabled);
        assert_eq!(f.signing_secret, sub.signing_secret);
    }
}
