//! The DatoCMS `webhook` resource over Herald's one [`Subscription`] (spec §1.2–1.4).
//!
//! Parse → validate → domain type (STYLE): [`parse`] reads a JSON:API document into
//! [`Attributes`] (every attribute optional: a create requires some, an update merges whatever it
//! names), reporting shape problems as `INVALID_FORMAT` and bad values as one `INVALID_FIELD`
//! each. [`Attributes::apply`] merges them onto a subscription; [`view`] shows a subscription as
//! the resource DatoCMS would return.
//!
//! The mapping (documented in `docs/api-datocms.md`):
//! - `events[]` → one `Filter` per entry: `types` = `<entity_type>.<event_type>` (the event type
//!   the DatoCMS decoder gives events), `filters[]` → attribute conditions (`item_type` →
//!   `contenttype`, `item`/`build_trigger` → `entityid`, `environment`, `environment_type` →
//!   `environmenttype`; ids OR within a name, names AND), plus `site = <id>` when the webhook
//!   belongs to a site. The `events` array is kept as written in `extras`, so a GET returns it
//!   unchanged; if the filters were since changed through the native API, the view derives
//!   `events` from the filters instead (what DatoCMS can express of them).
//! - `http_basic_user`/`http_basic_password` → `TargetAuth::Basic`; `custom_payload` →
//!   `Template::Mustache`; `auto_retry` → the DatoCMS retry table or no retries.
//! - An attribute whose value equals what a GET shows keeps the stored representation, so a
//!   GET → PUT round trip of a subscription edited through the native API (a bearer token, a
//!   secret header, a custom retry schedule) changes nothing it cannot express.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::error::{DatoError, FieldProblem, Validation};
use crate::model::OptText;
use crate::model::event::attr;
use crate::model::{
    AttributeMatch, Dialect, Filter, Format, HeaderSpec, HttpMethod, RetryPolicy, Secret,
    Subscription, SubscriptionId, TargetAuth, Template, Tenant, TenantKind, TypePattern, Version,
};

/// DatoCMS's retry table for `auto_retry: true` (spec §1.8): 7 retries over ~3 days.
pub const AUTO_RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(2 * 60),
    Duration::from_secs(6 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(5 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
    Duration::from_secs(48 * 60 * 60),
];
/// DatoCMS's total timeout per call.
pub const TIMEOUT: Duration = Duration::from_secs(8);
/// DatoCMS's connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Bounds on what one webhook may hold: generous, but bounded.
const MAX_NAME: usize = 256;
const MAX_URL: usize = 4096;
const MAX_HEADERS: usize = 64;
const MAX_EVENTS: usize = 64;
const MAX_IDS: usize = 1024;
const MAX_ID_LEN: usize = 256;
const MAX_PAYLOAD: usize = 64 * 1024;
const MAX_API_VERSION: usize = 16;

/// Entity types (spec §1.4), the event types each allows, and the filter entity types that
/// make sense on its events. `environment` and `sso_user` take the union of the conflicting
/// sources (the spec's [CONFLICT] resolution).
const ENTITIES: [(&str, &[&str], &[&str]); 8] = [
    (
        "item",
        &["create", "update", "delete", "publish", "unpublish"],
        &["item", "item_type", "environment", "environment_type"],
    ),
    (
        "item_type",
        &["create", "update", "delete"],
        &["item_type", "environment", "environment_type"],
    ),
    ("upload", &["create", "update", "delete"], &[]),
    (
        "build_trigger",
        &["deploy_started", "deploy_succeeded", "deploy_failed"],
        &["build_trigger"],
    ),
    (
        "environment",
        &["create", "update", "promote", "delete"],
        &["environment", "environment_type"],
    ),
    ("maintenance_mode", &["change"], &[]),
    ("sso_user", &["create", "update", "delete"], &[]),
    ("cda_cache_tags", &["invalidate"], &[]),
];

/// Filter entity types and the event attribute each matches on.
const FILTER_ATTRS: [(&str, &str); 5] = [
    ("item_type", attr::CONTENT_TYPE),
    ("item", attr::ENTITY_ID),
    ("build_trigger", attr::ENTITY_ID),
    ("environment", attr::ENVIRONMENT),
    ("environment_type", attr::ENVIRONMENT_TYPE),
];

/// The attribute names a webhook document may carry.
const KNOWN: [&str; 11] = [
    "name",
    "url",
    "headers",
    "events",
    "custom_payload",
    "http_basic_user",
    "http_basic_password",
    "enabled",
    "payload_api_version",
    "nested_items_in_payload",
    "auto_retry",
];

/// Attributes a create must give (`null` counts for the nullable ones).
const REQUIRED: [&str; 7] = [
    "name",
    "url",
    "headers",
    "events",
    "custom_payload",
    "http_basic_user",
    "http_basic_password",
];

/// The id DatoCMS clients see for a subscription: the UUID's 32 lower-case hex digits.
/// DatoCMS's own ids are numeric strings, but every client treats them as opaque strings; the
/// simple form is the native id without its hyphens, so an operator can match the two. The
/// renderer owns the one definition, so the default body's `webhook_id` always agrees.
pub fn webhook_id(id: &SubscriptionId) -> String {
    crate::render::datocms_webhook_id(id)
}

/// Parses a webhook id from a path or body: the simple form, or the hyphenated native form.
pub fn parse_webhook_id(s: &str) -> Option<SubscriptionId> {
    s.parse().ok()
}

/// One validated `events[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub entity_type: &'static str,
    pub event_types: Vec<String>,
    /// `(filter entity type, entity ids)` in the order written.
    pub filters: Vec<(&'static str, Vec<String>)>,
}

/// The `events` attribute: the JSON as written (returned unchanged by a GET) and what it means.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    pub raw: Value,
    pub specs: Vec<EventSpec>,
}

/// The attributes of a create or update document; `None`: not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    pub name: Option<String>,
    pub url: Option<String>,
    /// Header name and value, in the order written.
    pub headers: Option<Vec<(String, String)>>,
    pub events: Option<Events>,
    pub custom_payload: Option<Option<String>>,
    pub http_basic_user: Option<Option<String>>,
    pub http_basic_password: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub payload_api_version: Option<String>,
    pub nested_items_in_payload: Option<bool>,
    pub auto_retry: Option<bool>,
}

/// What the document is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /webhooks`: `data.id` must be absent; the [`REQUIRED`] attributes must be given.
    Create,
    /// `PUT /webhooks/{id}`: `data.id`, when given, must name the same webhook.
    Update(SubscriptionId),
}

/// Reads and validates a webhook document.
pub fn parse(body: &Value, mode: Mode) -> Result<Attributes, DatoError> {
    let mut shape: Vec<String> = Vec::new();
    let Some(data) = body.get("data").and_then(Value::as_object) else {
        return Err(DatoError::format(vec![
            "the body must be a JSON object with a `data` object (JSON:API)".into(),
        ]));
    };
    match data.get("type") {
        None | Some(Value::Null) => shape.push("`data.type` is required (\"webhook\")".into()),
        Some(Value::String(t)) if t == "webhook" => {}
        Some(other) => {
            return Err(DatoError::new(
                super::error::Code::InvalidType,
                format!("`data.type` must be \"webhook\", not {other}"),
            ));
        }
    }
    match (mode, data.get("id")) {
        (_, None | Some(Value::Null)) => {}
        (Mode::Create, Some(_)) => {
            shape.push("`data.id` cannot be given on create: Herald assigns webhook ids".into())
        }
        (Mode::Update(id), Some(Value::String(s))) if parse_webhook_id(s) == Some(id) => {}
        (Mode::Update(id), Some(other)) => shape.push(format!(
            "`data.id` {other} does not match the webhook in the path (\"{}\")",
            webhook_id(&id)
        )),
    }
    let empty = Map::new();
    let attributes = match data.get("attributes") {
        Some(Value::Object(o)) => o,
        None if matches!(mode, Mode::Update(_)) => &empty,
        None => {
            shape.push("`data.attributes` is required".into());
            &empty
        }
        Some(_) => {
            shape.push("`data.attributes` must be an object".into());
            &empty
        }
    };
    for key in attributes.keys() {
        if !KNOWN.contains(&key.as_str()) {
            shape.push(format!("`data.attributes.{key}` is not a permitted key"));
        }
    }

    let mut problems: Vec<FieldProblem> = Vec::new();
    let mut out = Attributes::default();
    for (key, value) in attributes {
        let mut wrong = |want: &str| {
            shape.push(format!("`data.attributes.{key}` must be {want}"));
        };
        match key.as_str() {
            "name" => match value {
                Value::String(s) => {
                    if s.trim().is_empty() {
                        problems.push(FieldProblem::new(
                            "name",
                            Validation::Required,
                            "must not be blank",
                        ));
                    } else if s.chars().count() > MAX_NAME {
                        problems.push(FieldProblem::new(
                            "name",
                            Validation::Length,
                            format!("must be at most {MAX_NAME} characters"),
                        ));
                    }
                    out.name = Some(s.clone());
                }
                _ => wrong("a string"),
            },
            "url" => match value {
                Value::String(s) => {
                    if let Err(m) = check_url(s) {
                        problems.push(FieldProblem::new("url", Validation::Format, m));
                    }
                    out.url = Some(s.clone());
                }
                _ => wrong("a string"),
            },
            "headers" => match value {
                Value::Object(o) => {
                    let mut list = Vec::with_capacity(o.len());
                    if o.len() > MAX_HEADERS {
                        problems.push(FieldProblem::new(
                            "headers",
                            Validation::Length,
                            format!("at most {MAX_HEADERS} headers"),
                        ));
                    }
                    for (name, v) in o {
                        let Some(v) = v.as_str() else {
                            shape
                                .push(format!("`data.attributes.headers.{name}` must be a string"));
                            continue;
                        };
                        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                            problems.push(
                                FieldProblem::new(
                                    "headers",
                                    Validation::Format,
                                    format!("`{name}` is not a valid HTTP header name"),
                                )
                                .at(format!("headers.{name}")),
                            );
                        } else if http::HeaderValue::from_str(v).is_err() {
                            problems.push(
                                FieldProblem::new(
                                    "headers",
                                    Validation::Format,
                                    "is not a valid HTTP header value (visible ASCII only)",
                                )
                                .at(format!("headers.{name}")),
                            );
                        }
                        list.push((name.clone(), v.to_string()));
                    }
                    out.headers = Some(list);
                }
                _ => wrong("an object of strings"),
            },
            "events" => {
                if let Some(specs) = parse_events(value, &mut shape, &mut problems) {
                    out.events = Some(Events {
                        raw: value.clone(),
                        specs,
                    });
                }
            }
            "custom_payload" => match value {
                Value::Null => out.custom_payload = Some(None),
                Value::String(s) if s.len() > MAX_PAYLOAD => problems.push(FieldProblem::new(
                    "custom_payload",
                    Validation::Length,
                    format!("must be at most {MAX_PAYLOAD} bytes"),
                )),
                // An empty template is "no custom payload" (what an emptied form field sends).
                Value::String(s) if s.trim().is_empty() => out.custom_payload = Some(None),
                Value::String(s) => out.custom_payload = Some(Some(s.clone())),
                _ => wrong("a string or null"),
            },
            "http_basic_user" => match value {
                Value::Null => out.http_basic_user = Some(None),
                Value::String(s) if s.is_empty() => out.http_basic_user = Some(None),
                Value::String(s) => {
                    if s.contains(':') {
                        problems.push(FieldProblem::new(
                            "http_basic_user",
                            Validation::Format,
                            "must not contain `:` (basic auth joins user and password with it)",
                        ));
                    } else if s.len() > MAX_NAME {
                        problems.push(FieldProblem::new(
                            "http_basic_user",
                            Validation::Length,
                            format!("must be at most {MAX_NAME} bytes"),
                        ));
                    }
                    out.http_basic_user = Some(Some(s.clone()));
                }
                _ => wrong("a string or null"),
            },
            "http_basic_password" => match value {
                Value::Null => out.http_basic_password = Some(None),
                Value::String(s) if s.len() > MAX_URL => problems.push(FieldProblem::new(
                    "http_basic_password",
                    Validation::Length,
                    format!("must be at most {MAX_URL} bytes"),
                )),
                Value::String(s) => out.http_basic_password = Some(Some(s.clone())),
                _ => wrong("a string or null"),
            },
            "enabled" => match value {
                Value::Bool(b) => out.enabled = Some(*b),
                _ => wrong("a boolean"),
            },
            "payload_api_version" => match value {
                Value::String(s) if !s.is_empty() && s.len() <= MAX_API_VERSION => {
                    out.payload_api_version = Some(s.clone())
                }
                Value::String(_) => problems.push(FieldProblem::new(
                    "payload_api_version",
                    Validation::Format,
                    format!("must be 1 to {MAX_API_VERSION} characters, such as \"3\""),
                )),
                _ => wrong("a string"),
            },
            "nested_items_in_payload" => match value {
                Value::Bool(b) => out.nested_items_in_payload = Some(*b),
                _ => wrong("a boolean"),
            },
            "auto_retry" => match value {
                Value::Bool(b) => out.auto_retry = Some(*b),
                _ => wrong("a boolean"),
            },
            _ => {}
        }
    }
    if mode == Mode::Create && data.get("attributes").is_some_and(Value::is_object) {
        for key in REQUIRED {
            if !attributes.contains_key(key) {
                problems.push(FieldProblem::new(
                    key,
                    Validation::Required,
                    "is required (it may be null where the attribute is nullable)",
                ));
            }
        }
    }
    if !shape.is_empty() {
        return Err(DatoError::format(shape));
    }
    if !problems.is_empty() {
        return Err(DatoError::fields(problems));
    }
    Ok(out)
}

/// URL format: absolute `http(s)://host…`, no whitespace. Mustache tags are allowed anywhere
/// after the scheme (DatoCMS templates URLs); the renderer checks the rest when it compiles.
fn check_url(s: &str) -> Result<(), String> {
    if s.len() > MAX_URL {
        return Err(format!("must be at most {MAX_URL} characters"));
    }
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return Err("must be an absolute http:// or https:// URL".into());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err("must name a host".into());
    }
    Ok(())
}

fn entity(
    name: &str,
) -> Option<&'static (
    &'static str,
    &'static [&'static str],
    &'static [&'static str],
)> {
    ENTITIES.iter().find(|(n, _, _)| *n == name)
}

fn filter_attr(entity_type: &str) -> Option<(&'static str, &'static str)> {
    FILTER_ATTRS
        .iter()
        .find(|(n, _)| *n == entity_type)
        .copied()
}

/// Validates `events`; `None` when its shape is wrong (reported in `shape`).
fn parse_events(
    v: &Value,
    shape: &mut Vec<String>,
    problems: &mut Vec<FieldProblem>,
) -> Option<Vec<EventSpec>> {
    let Some(items) = v.as_array() else {
        shape.push("`data.attributes.events` must be an array".into());
        return None;
    };
    if items.is_empty() {
        problems.push(FieldProblem::new(
            "events",
            Validation::Required,
            "needs at least one entry: a webhook with no events would never be called",
        ));
    }
    if items.len() > MAX_EVENTS {
        problems.push(FieldProblem::new(
            "events",
            Validation::Length,
            format!("at most {MAX_EVENTS} entries"),
        ));
        return None;
    }
    let shape_before = shape.len();
    let mut specs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("events[{i}]");
        let Some(o) = item.as_object() else {
            shape.push(format!("`data.attributes.{at}` must be an object"));
            continue;
        };
        for k in o.keys() {
            if !matches!(k.as_str(), "entity_type" | "event_types" | "filters") {
                shape.push(format!("`data.attributes.{at}.{k}` is not a permitted key"));
            }
        }
        let entity_type = match o.get("entity_type") {
            Some(Value::String(s)) => match entity(s) {
                Some(e) => Some(e),
                None => {
                    problems.push(
                        FieldProblem::new(
                            "events",
                            Validation::Inclusion,
                            format!(
                                "unknown entity_type `{s}`; one of {}",
                                ENTITIES.map(|e| e.0).join(", ")
                            ),
                        )
                        .at(format!("{at}.entity_type")),
                    );
                    None
                }
            },
            None => {
                problems.push(
                    FieldProblem::new("events", Validation::Required, "entity_type is required")
                        .at(format!("{at}.entity_type")),
                );
                None
            }
            Some(_) => {
                shape.push(format!(
                    "`data.attributes.{at}.entity_type` must be a string"
                ));
                None
            }
        };
        let mut event_types = Vec::new();
        match o.get("event_types") {
            Some(Value::Array(ts)) => {
                if ts.is_empty() {
                    problems.push(
                        FieldProblem::new(
                            "events",
                            Validation::Required,
                            "event_types needs at least one event type",
                        )
                        .at(format!("{at}.event_types")),
                    );
                }
                for (j, t) in ts.iter().enumerate() {
                    let Some(t) = t.as_str() else {
                        shape.push(format!(
                            "`data.attributes.{at}.event_types[{j}]` must be a string"
                        ));
                        continue;
                    };
                    if let Some((name, allowed, _)) = entity_type
                        && !allowed.contains(&t)
                    {
                        problems.push(
                            FieldProblem::new(
                                "events",
                                Validation::Inclusion,
                                format!(
                                    "`{t}` is not an event of `{name}`; allowed: {}",
                                    allowed.join(", ")
                                ),
                            )
                            .at(format!("{at}.event_types[{j}]")),
                        );
                    }
                    if !event_types.iter().any(|e| e == t) {
                        event_types.push(t.to_string());
                    }
                }
            }
            None => problems.push(
                FieldProblem::new("events", Validation::Required, "event_types is required")
                    .at(format!("{at}.event_types")),
            ),
            Some(_) => shape.push(format!(
                "`data.attributes.{at}.event_types` must be an array of strings"
            )),
        }
        let mut filters = Vec::new();
        match o.get("filters") {
            None | Some(Value::Null) => {}
            Some(Value::Array(fs)) => {
                for (j, f) in fs.iter().enumerate() {
                    let fat = format!("{at}.filters[{j}]");
                    if let Some(spec) = parse_filter(f, &fat, entity_type, shape, problems) {
                        filters.push(spec);
                    }
                }
            }
            Some(_) => shape.push(format!(
                "`data.attributes.{at}.filters` must be an array or null"
            )),
        }
        if let Some((name, _, _)) = entity_type {
            specs.push(EventSpec {
                entity_type: name,
                event_types,
                filters,
            });
        }
    }
    (shape.len() == shape_before).then_some(specs)
}

fn parse_filter(
    f: &Value,
    at: &str,
    entity_type: Option<&(
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    )>,
    shape: &mut Vec<String>,
    problems: &mut Vec<FieldProblem>,
) -> Option<(&'static str, Vec<String>)> {
    let Some(o) = f.as_object() else {
        shape.push(format!("`data.attributes.{at}` must be an object"));
        return None;
    };
    for k in o.keys() {
        if !matches!(k.as_str(), "entity_type" | "entity_ids") {
            shape.push(format!("`data.attributes.{at}.{k}` is not a permitted key"));
        }
    }
    let kind = match o.get("entity_type") {
        Some(Value::String(s)) => match filter_attr(s) {
            Some((name, _)) => match entity_type {
                Some((event_entity, _, applicable)) if !applicable.contains(&name) => {
                    let why = if applicable.is_empty() {
                        format!("`{event_entity}` events take no filters")
                    } else {
                        format!(
                            "`{event_entity}` events can be filtered by {}",
                            applicable.join(", ")
                        )
                    };
                    problems.push(
                        FieldProblem::new("events", Validation::Inclusion, why)
                            .at(format!("{at}.entity_type")),
                    );
                    None
                }
                _ => Some(name),
            },
            None => {
                problems.push(
                    FieldProblem::new(
                        "events",
                        Validation::Inclusion,
                        format!(
                            "unknown filter entity_type `{s}`; one of {}",
                            FILTER_ATTRS.map(|f| f.0).join(", ")
                        ),
                    )
                    .at(format!("{at}.entity_type")),
                );
                None
            }
        },
        None => {
            problems.push(
                FieldProblem::new("events", Validation::Required, "entity_type is required")
                    .at(format!("{at}.entity_type")),
            );
            None
        }
        Some(_) => {
            shape.push(format!(
                "`data.attributes.{at}.entity_type` must be a string"
            ));
            None
        }
    };
    let mut ids = Vec::new();
    match o.get("entity_ids") {
        Some(Value::Array(items)) => {
            if items.is_empty() {
                problems.push(
                    FieldProblem::new(
                        "events",
                        Validation::Required,
                        "entity_ids needs at least one id",
                    )
                    .at(format!("{at}.entity_ids")),
                );
            }
            if items.len() > MAX_IDS {
                problems.push(
                    FieldProblem::new(
                        "events",
                        Validation::Length,
                        format!("at most {MAX_IDS} ids"),
                    )
                    .at(format!("{at}.entity_ids")),
                );
            }
            for (k, id) in items.iter().take(MAX_IDS).enumerate() {
                match id {
                    Value::String(s) if !s.trim().is_empty() && s.len() <= MAX_ID_LEN => {
                        ids.push(s.clone())
                    }
                    Value::String(_) => problems.push(
                        FieldProblem::new(
                            "events",
                            Validation::Format,
                            format!("ids are 1 to {MAX_ID_LEN} characters, not blank"),
                        )
                        .at(format!("{at}.entity_ids[{k}]")),
                    ),
                    _ => shape.push(format!(
                        "`data.attributes.{at}.entity_ids[{k}]` must be a string"
                    )),
                }
            }
        }
        None => problems.push(
            FieldProblem::new("events", Validation::Required, "entity_ids is required")
                .at(format!("{at}.entity_ids")),
        ),
        Some(_) => shape.push(format!(
            "`data.attributes.{at}.entity_ids` must be an array of strings"
        )),
    }
    kind.map(|k| (k, ids))
}

/// The site a webhook's events must come from, as the lower-case filter value.
fn site_value(tenant: Option<&Tenant>) -> Option<Box<str>> {
    tenant
        .filter(|t| t.kind == TenantKind::Site)
        .map(|t| t.name.to_ascii_lowercase().into_boxed_str())
}

/// `events` → filters (see the module docs). Pure; the view uses it to check that the stored
/// `events` still describe the filters.
pub fn to_filters(specs: &[EventSpec], tenant: Option<&Tenant>) -> Vec<Filter> {
    let site = site_value(tenant);
    specs
        .iter()
        .map(|spec| {
            let types = spec
                .event_types
                .iter()
                .map(|t| {
                    let mut s = String::with_capacity(spec.entity_type.len() + 1 + t.len());
                    s.push_str(spec.entity_type);
                    s.push('.');
                    s.push_str(t);
                    s.make_ascii_lowercase();
                    TypePattern::Exact(s.into_boxed_str())
                })
                .collect();
            let mut by_name: BTreeMap<&str, Vec<Box<str>>> = BTreeMap::new();
            for (kind, ids) in &spec.filters {
                let Some((_, name)) = filter_attr(kind) else {
                    continue;
                };
                let values = by_name.entry(name).or_default();
                for id in ids {
                    let v = id.trim().to_ascii_lowercase().into_boxed_str();
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
            }
            if let Some(site) = &site {
                by_name.insert(attr::SITE, vec![site.clone()]);
            }
            Filter {
                types,
                attributes: by_name
                    .into_iter()
                    .map(|(name, values)| AttributeMatch {
                        name: name.into(),
                        values: values.into(),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Filters → `events`, for subscriptions whose filters no longer match their stored `events`
/// (changed through the native API). Only what DatoCMS can express is shown: exact
/// `<entity_type>.<event_type>` types of known entity types, and the attributes that are
/// DatoCMS filters; the `site` condition is the webhook's tenant, not a filter.
pub fn events_of_filters(filters: &[Filter]) -> Value {
    let mut out = Vec::new();
    for f in filters {
        let mut groups: Vec<(&'static str, Vec<&str>)> = Vec::new();
        for t in &f.types {
            let TypePattern::Exact(t) = t else { continue };
            let Some((e, action)) = t.rsplit_once('.') else {
                continue;
            };
            let Some((name, _, _)) = entity(e) else {
                continue;
            };
            match groups.iter_mut().find(|g| g.0 == *name) {
                Some(g) => g.1.push(action),
                None => groups.push((name, vec![action])),
            }
        }
        for (entity_type, actions) in groups {
            let mut filters = Vec::new();
            for a in &f.attributes {
                let kind = match &*a.name {
                    attr::CONTENT_TYPE => "item_type",
                    attr::ENTITY_ID if entity_type == "build_trigger" => "build_trigger",
                    attr::ENTITY_ID => "item",
                    attr::ENVIRONMENT => "environment",
                    attr::ENVIRONMENT_TYPE => "environment_type",
                    _ => continue,
                };
                filters.push(json!({"entity_type": kind, "entity_ids": a.values}));
            }
            let mut entry = Map::new();
            entry.insert("entity_type".into(), Value::from(entity_type));
            entry.insert("event_types".into(), Value::from(actions));
            if !filters.is_empty() {
                entry.insert("filters".into(), Value::from(filters));
            }
            out.push(Value::Object(entry));
        }
    }
    Value::Array(out)
}

/// The `events` a GET shows: as written, unless the filters changed since.
fn view_events(sub: &Subscription) -> Value {
    if let Some(raw) = sub.extras.get("events") {
        let mut shape = Vec::new();
        let mut problems = Vec::new();
        if let Some(specs) = parse_events(raw, &mut shape, &mut problems)
            && problems.is_empty()
            && to_filters(&specs, sub.tenant.as_deref()) == *sub.filters
        {
            return raw.clone();
        }
    }
    events_of_filters(&sub.filters)
}

fn view_auth(sub: &Subscription) -> (Option<&str>, Option<&str>) {
    match sub.auth.as_deref() {
        Some(TargetAuth::Basic { username, password }) => {
            (Some(username.as_str()), Some(password.expose()))
        }
        _ => (None, None),
    }
}

fn view_auto_retry(sub: &Subscription) -> bool {
    sub.retry.as_ref().is_none_or(|r| !r.schedule.is_empty())
}

/// Headers a GET shows: every non-secret one (secret headers come only from the native API,
/// which promises they are never shown).
fn view_headers(sub: &Subscription) -> Vec<(&str, &str)> {
    sub.headers
        .iter()
        .filter(|h| !h.secret)
        .map(|h| (h.name.as_str(), h.value.expose()))
        .collect()
}

/// The retry policy of `auto_retry`.
pub fn retry_policy(auto_retry: bool) -> RetryPolicy {
    RetryPolicy {
        schedule: if auto_retry {
            AUTO_RETRY_SCHEDULE.to_vec()
        } else {
            Vec::new()
        },
        jitter: 0.0,
    }
}

/// A new DatoCMS subscription with the documented defaults (`enabled`, `auto_retry`,
/// `payload_api_version: "3"`, `nested_items_in_payload: true`), before its attributes.
pub fn blank(id: SubscriptionId, tenant: Option<Tenant>, actor: &str, now_ms: i64) -> Subscription {
    Subscription {
        id,
        dialect: Dialect::DatoCms,
        tenant: tenant.map(Box::new),
        name: Box::default(),
        description: OptText::NONE,
        enabled: true,
        url: Box::default(),
        method: HttpMethod::Post,
        filters: Box::default(),
        headers: Box::default(),
        auth: None,
        signing_secret: None,
        format: Format::DatoCms,
        retry: Some(Box::new(retry_policy(true))),
        timeout: TIMEOUT.into(),
        connect_timeout: CONNECT_TIMEOUT.into(),
        template: None,
        disabled_reason: OptText::NONE,
        version: Version {
            created_by: actor.into(),
            created_at_ms: now_ms,
            modified_by: actor.into(),
            modified_at_ms: now_ms,
            version_no: 1,
        },
        extras: json!({"payload_api_version": "3", "nested_items_in_payload": true}).into(),
    }
}

impl Attributes {
    /// Merges these attributes onto `sub` (see the module docs for the round-trip rule).
    pub fn apply(self, sub: &mut Subscription) {
        if let Some(name) = self.name {
            sub.name = name.into();
        }
        if let Some(url) = self.url {
            sub.url = url.into();
        }
        if let Some(headers) = self.headers {
            let unchanged = {
                let shown = view_headers(sub);
                shown.len() == headers.len()
                    && shown
                        .iter()
                        .zip(&headers)
                        .all(|(a, b)| a.0 == b.0 && a.1 == b.1)
            };
            if !unchanged {
                let kept: Vec<HeaderSpec> = std::mem::take(&mut sub.headers)
                    .into_vec()
                    .into_iter()
                    .filter(|h| {
                        h.secret && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&h.name))
                    })
                    .collect();
                sub.headers = headers
                    .into_iter()
                    .map(|(name, value)| HeaderSpec {
                        name,
                        value: Secret::new(value),
                        secret: false,
                    })
                    .chain(kept)
                    .collect();
            }
        }
        if let Some(events) = self.events
            && events.raw != view_events(sub)
        {
            sub.filters = to_filters(&events.specs, sub.tenant.as_deref()).into();
            extras(sub).insert("events".into(), events.raw);
        }
        if let Some(payload) = self.custom_payload {
            sub.template = payload.map(|p| Box::new(Template::Mustache(p)));
        }
        if self.http_basic_user.is_some() || self.http_basic_password.is_some() {
            let (user, password) = view_auth(sub);
            let user = self
                .http_basic_user
                .clone()
                .unwrap_or(user.map(str::to_string));
            let password = self
                .http_basic_password
                .clone()
                .unwrap_or(password.map(str::to_string));
            if (user.as_deref(), password.as_deref()) != view_auth(sub) {
                // A password without a user is never sent (DatoCMS sends Basic auth only when
                // `http_basic_user` is set), so it is not kept either.
                sub.auth = user.map(|username| {
                    Box::new(TargetAuth::Basic {
                        username,
                        password: Secret::new(password.unwrap_or_default()),
                    })
                });
            }
        }
        if let Some(enabled) = self.enabled {
            sub.enabled = enabled;
            if enabled {
                sub.disabled_reason = OptText::NONE;
            }
        }
        if let Some(v) = self.payload_api_version {
            extras(sub).insert("payload_api_version".into(), Value::from(v));
        }
        if let Some(v) = self.nested_items_in_payload {
            extras(sub).insert("nested_items_in_payload".into(), Value::from(v));
        }
        if let Some(auto_retry) = self.auto_retry
            && auto_retry != view_auto_retry(sub)
        {
            sub.retry = Some(Box::new(retry_policy(auto_retry)));
        }
    }
}

/// `sub.extras` as an object (a native subscription's `Null` becomes `{}`).
fn extras(sub: &mut Subscription) -> &mut Map<String, Value> {
    if !sub.extras.is_object() {
        *sub.extras = Value::Object(Map::new());
    }
    match &mut *sub.extras {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The JSON:API resource object of a webhook.
pub fn view(sub: &Subscription) -> Value {
    let headers: Map<String, Value> = view_headers(sub)
        .into_iter()
        .map(|(n, v)| (n.to_string(), Value::from(v)))
        .collect();
    let (user, password) = view_auth(sub);
    let custom_payload = match sub.template.as_deref() {
        Some(Template::Mustache(t)) => Value::from(t.as_str()),
        _ => Value::Null,
    };
    let extra = |k: &str, default: Value| sub.extras.get(k).cloned().unwrap_or(default);
    json!({
        "type": "webhook",
        "id": webhook_id(&sub.id),
        "attributes": {
            "name": sub.name,
            "url": sub.url,
            "enabled": sub.enabled,
            "headers": headers,
            "events": view_events(sub),
            "http_basic_user": user,
            "http_basic_password": password,
            "custom_payload": custom_payload,
            "payload_api_version": extra("payload_api_version", Value::from("3")),
            "nested_items_in_payload": extra("nested_items_in_payload", Value::Bool(true)),
            "auto_retry": view_auto_retry(sub),
        }
    })
}

/// Maps the renderer's compile errors (field paths of the subscription) onto webhook attributes.
pub fn render_problems(errors: &[crate::render::FieldError]) -> Vec<FieldProblem> {
    errors
        .iter()
        .map(|e| {
            let path = &*e.field;
            let field = if path == "url" {
                "url"
            } else if path.starts_with("headers") {
                "headers"
            } else if path == "auth.username" {
                "http_basic_user"
            } else if path.starts_with("auth") {
                "http_basic_password"
            } else if path.starts_with("template") {
                "custom_payload"
            } else {
                "base"
            };
            let p = FieldProblem::new(field, Validation::Format, e.problem.to_string());
            if path == field { p } else { p.at(path) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;
    use crate::model::InputKind;

    /// The seed's create request body.
    fn seed_create() -> Value {
        json!({"data": {"type": "webhook", "attributes": {
            "name": "Item type creation/update",
            "url": "https://www.example.com/webhook",
            "headers": {"X-Foo": "Bar"},
            "events": [{"entity_type": "item", "event_types": ["update"]}],
            "custom_payload": "{ \"message\": \"{{event_type}} event triggered on {{entity_type}}!\", \"entity_id\": \"{{#entity}}{{id}}{{/entity}}\"] }",
            "http_basic_user": "user",
            "http_basic_password": "password"
        }}})
    }

    fn created(body: &Value, tenant: Option<Tenant>) -> Subscription {
        let attrs = parse(body, Mode::Create).unwrap();
        let mut sub = blank(SubscriptionId::generate(), tenant, "t", 0);
        attrs.apply(&mut sub);
        sub
    }

    fn site(id: &str) -> Tenant {
        Tenant {
            kind: TenantKind::Site,
            name: id.into(),
        }
    }

    #[test]
    fn the_seed_example_creates_the_seed_response() {
        let sub = created(&seed_create(), None);
        let v = view(&sub);
        assert_eq!(v["type"], "webhook");
        assert_eq!(v["id"].as_str().unwrap(), sub.id.simple());
        assert_eq!(
            v["attributes"],
            json!({
                "name": "Item type creation/update",
                "url": "https://www.example.com/webhook",
                "enabled": true,
                "headers": {"X-Foo": "Bar"},
                "events": [{"entity_type": "item", "event_types": ["update"]}],
                "http_basic_user": "user",
                "http_basic_password": "password",
                "custom_payload": seed_create()["data"]["attributes"]["custom_payload"],
                "payload_api_version": "3",
                "nested_items_in_payload": true,
                "auto_retry": true
            })
        );
        assert_eq!(sub.dialect, Dialect::DatoCms);
        assert_eq!(sub.format, Format::DatoCms);
        assert_eq!(sub.timeout.get(), Some(TIMEOUT));
        assert_eq!(sub.connect_timeout.get(), Some(CONNECT_TIMEOUT));
        assert_eq!(sub.retry.as_ref().unwrap().schedule.len(), 7);
        assert_eq!(
            sub.auth,
            Some(Box::new(TargetAuth::Basic {
                username: "user".into(),
                password: Secret::new("password")
            }))
        );
    }

    fn problems_of(body: Value, mode: Mode) -> Vec<(String, String, Option<String>)> {
        let e = parse(&body, mode).unwrap_err();
        let b = e.body();
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let a = &d["attributes"];
                let det = &a["details"];
                (
                    a["code"].as_str().unwrap().to_string(),
                    det["code"]
                        .as_str()
                        .map(|c| format!("{}:{c}", det["field"].as_str().unwrap()))
                        .unwrap_or_default(),
                    det["path"].as_str().map(str::to_string),
                )
            })
            .collect()
    }

    fn with_attrs(patch: Value) -> Value {
        let mut b = seed_create();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() && k.starts_with('-') {
                b["data"]["attributes"]
                    .as_object_mut()
                    .unwrap()
                    .remove(&k[1..]);
            } else {
                b["data"]["attributes"][k] = v.clone();
            }
        }
        b
    }

    #[test]
    fn validation_table() {
        let field = |f: &str| ("INVALID_FIELD".to_string(), f.to_string());
        let cases: Vec<(Value, (String, String), Option<&str>)> = vec![
            (
                with_attrs(json!({"-name": null})),
                field("name:VALIDATION_REQUIRED"),
                None,
            ),
            (
                with_attrs(json!({"name": "  "})),
                field("name:VALIDATION_REQUIRED"),
                None,
            ),
            (
                with_attrs(json!({"url": "ftp://x"})),
                field("url:VALIDATION_FORMAT"),
                None,
            ),
            (
                with_attrs(json!({"url": "example.com/hook"})),
                field("url:VALIDATION_FORMAT"),
                None,
            ),
            (
                with_attrs(json!({"url": "https:///x"})),
                field("url:VALIDATION_FORMAT"),
                None,
            ),
            (
                with_attrs(json!({"-custom_payload": null})),
                field("custom_payload:VALIDATION_REQUIRED"),
                None,
            ),
            (
                with_attrs(json!({"events": []})),
                field("events:VALIDATION_REQUIRED"),
                None,
            ),
            (
                with_attrs(json!({"events": [{"entity_type": "page", "event_types": ["create"]}]})),
                field("events:VALIDATION_INCLUSION"),
                Some("events[0].entity_type"),
            ),
            (
                with_attrs(
                    json!({"events": [{"entity_type": "item_type", "event_types": ["publish"]}]}),
                ),
                field("events:VALIDATION_INCLUSION"),
                Some("events[0].event_types[0]"),
            ),
            (
                with_attrs(json!({"events": [{"entity_type": "item", "event_types": []}]})),
                field("events:VALIDATION_REQUIRED"),
                Some("events[0].event_types"),
            ),
            (
                with_attrs(
                    json!({"events": [{"entity_type": "item", "event_types": ["update"],
                    "filters": [{"entity_type": "upload", "entity_ids": ["1"]}]}]}),
                ),
                field("events:VALIDATION_INCLUSION"),
                Some("events[0].filters[0].entity_type"),
            ),
            (
                with_attrs(
                    json!({"events": [{"entity_type": "item", "event_types": ["update"],
                    "filters": [{"entity_type": "build_trigger", "entity_ids": ["1"]}]}]}),
                ),
                field("events:VALIDATION_INCLUSION"),
                Some("events[0].filters[0].entity_type"),
            ),
            (
                with_attrs(
                    json!({"events": [{"entity_type": "item", "event_types": ["update"],
                    "filters": [{"entity_type": "item_type", "entity_ids": []}]}]}),
                ),
                field("events:VALIDATION_REQUIRED"),
                Some("events[0].filters[0].entity_ids"),
            ),
            (
                with_attrs(
                    json!({"events": [{"entity_type": "cda_cache_tags", "event_types": ["invalidate"],
                    "filters": [{"entity_type": "item", "entity_ids": ["1"]}]}]}),
                ),
                field("events:VALIDATION_INCLUSION"),
                Some("events[0].filters[0].entity_type"),
            ),
            (
                with_attrs(json!({"http_basic_user": "a:b"})),
                field("http_basic_user:VALIDATION_FORMAT"),
                None,
            ),
            (
                with_attrs(json!({"headers": {"Bad Name": "x"}})),
                field("headers:VALIDATION_FORMAT"),
                Some("headers.Bad Name"),
            ),
            (
                with_attrs(json!({"name": 5})),
                ("INVALID_FORMAT".into(), String::new()),
                None,
            ),
            (
                with_attrs(json!({"colour": "red"})),
                ("INVALID_FORMAT".into(), String::new()),
                None,
            ),
            (
                with_attrs(
                    json!({"events": [{"entity_type": "item", "event_types": ["update"], "x": 1}]}),
                ),
                ("INVALID_FORMAT".into(), String::new()),
                None,
            ),
            (
                json!({"data": {"type": "item", "attributes": {}}}),
                ("INVALID_TYPE".into(), String::new()),
                None,
            ),
            (json!([1]), ("INVALID_FORMAT".into(), String::new()), None),
            (
                json!({"data": {"attributes": {}}}),
                ("INVALID_FORMAT".into(), String::new()),
                None,
            ),
        ];
        for (body, (code, detail), path) in cases {
            let got = problems_of(body.clone(), Mode::Create);
            assert!(
                got.iter()
                    .any(|g| g.0 == code && g.1 == detail && g.2.as_deref() == path),
                "{body}: wanted {code} {detail} {path:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let got = problems_of(
            with_attrs(json!({"name": "", "url": "nope", "-headers": null})),
            Mode::Create,
        );
        let fields: Vec<&str> = got.iter().map(|g| g.1.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name:VALIDATION_REQUIRED",
                "url:VALIDATION_FORMAT",
                "headers:VALIDATION_REQUIRED"
            ]
        );
    }

    #[test]
    fn update_checks_id_and_takes_partial_attributes() {
        let id = SubscriptionId::generate();
        let doc = |i: Value| json!({"data": {"type": "webhook", "id": i, "attributes": {"enabled": false}}});
        let a = parse(&doc(Value::from(id.simple())), Mode::Update(id)).unwrap();
        assert_eq!(a.enabled, Some(false));
        assert_eq!(a.name, None);
        assert!(parse(&doc(Value::from(id.to_string())), Mode::Update(id)).is_ok());
        assert!(parse(&doc(Value::Null), Mode::Update(id)).is_ok());
        let e = parse(&doc(Value::from("312")), Mode::Update(id)).unwrap_err();
        assert_eq!(e.codes(), ["INVALID_FORMAT"]);
        let e = parse(&doc(Value::from(id.simple())), Mode::Create).unwrap_err();
        assert_eq!(e.codes(), ["INVALID_FORMAT"]);
        // No attributes at all is a valid (empty) update.
        let bare = json!({"data": {"type": "webhook", "id": id.simple()}});
        assert_eq!(
            parse(&bare, Mode::Update(id)).unwrap(),
            Attributes::default()
        );
    }

    fn event(t: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            id: "1".into(),
            source: "datocms".into(),
            kind: InputKind::DatoCms,
            event_type: t.into(),
            time: None,
            received_at_ms: 0,
            attributes: attrs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            payload: bytes::Bytes::new(),
        }
    }

    #[test]
    fn events_become_filters_that_match_datocms_events() {
        let body = with_attrs(json!({"events": [
            {"entity_type": "item", "event_types": ["update", "publish"],
             "filters": [{"entity_type": "item_type", "entity_ids": ["810928", "9"]},
                         {"entity_type": "environment", "entity_ids": ["Main"]}]},
            {"entity_type": "build_trigger", "event_types": ["deploy_failed"],
             "filters": [{"entity_type": "build_trigger", "entity_ids": ["77"]}]},
            {"entity_type": "maintenance_mode", "event_types": ["change"], "filters": null}
        ]}));
        let sub = created(&body, Some(site("205")));
        let item = |t: &str, model: &str, env: &str, site: &str| {
            event(
                t,
                &[
                    ("entityid", "39830648"),
                    ("contenttype", model),
                    ("environment", env),
                    ("site", site),
                ],
            )
        };
        // (event, type, wanted)
        let cases = [
            (item("item.update", "810928", "main", "205"), true),
            (item("item.publish", "9", "main", "205"), true),
            (item("item.create", "810928", "main", "205"), false),
            (item("item.update", "1", "main", "205"), false),
            (item("item.update", "810928", "sandbox", "205"), false),
            (item("item.update", "810928", "main", "206"), false),
            (
                event(
                    "build_trigger.deploy_failed",
                    &[("entityid", "77"), ("site", "205")],
                ),
                true,
            ),
            (
                event(
                    "build_trigger.deploy_failed",
                    &[("entityid", "78"), ("site", "205")],
                ),
                false,
            ),
            (event("maintenance_mode.change", &[("site", "205")]), true),
            (event("maintenance_mode.change", &[]), false),
        ];
        for (e, want) in cases {
            let t = e.event_type.to_string();
            assert_eq!(sub.wants(&e, &t), want, "{t} {:?}", e.attributes);
        }
        // Untenanted: any site.
        let open = created(&body, None);
        assert!(open.wants(
            &event("maintenance_mode.change", &[]),
            "maintenance_mode.change"
        ));
    }

    #[test]
    fn events_round_trip_and_follow_native_edits() {
        let events = json!([{"entity_type": "item", "event_types": ["update"],
            "filters": [{"entity_type": "item", "entity_ids": ["42"]}]}]);
        let mut sub = created(
            &with_attrs(json!({ "events": events.clone() })),
            Some(site("1")),
        );
        assert_eq!(view(&sub)["attributes"]["events"], events);
        // The native API adds a type: the view derives events from the filters.
        let mut types = sub.filters[0].types.to_vec();
        types.push(TypePattern::Exact("item.delete".into()));
        sub.filters[0].types = types.into();
        assert_eq!(
            view(&sub)["attributes"]["events"],
            json!([{"entity_type": "item", "event_types": ["update", "delete"],
                    "filters": [{"entity_type": "item", "entity_ids": ["42"]}]}])
        );
        // Writing those derived events back keeps the filters as they are.
        let before = sub.filters.clone();
        let derived = view(&sub)["attributes"]["events"].clone();
        let attrs = parse(
            &json!({"data": {"type": "webhook", "attributes": {"events": derived}}}),
            Mode::Update(sub.id),
        )
        .unwrap();
        attrs.apply(&mut sub);
        assert_eq!(sub.filters, before);
    }

    #[test]
    fn update_merges_and_events_replace_wholesale() {
        let mut sub = created(&seed_create(), None);
        let update = json!({"data": {"type": "webhook", "attributes": {
            "name": "renamed",
            "events": [{"entity_type": "upload", "event_types": ["create"]}],
            "auto_retry": false,
            "http_basic_user": null
        }}});
        parse(&update, Mode::Update(sub.id))
            .unwrap()
            .apply(&mut sub);
        let a = &view(&sub)["attributes"];
        assert_eq!(a["name"], "renamed");
        assert_eq!(a["url"], "https://www.example.com/webhook");
        assert_eq!(a["headers"], json!({"X-Foo": "Bar"}));
        assert_eq!(
            a["events"],
            json!([{"entity_type": "upload", "event_types": ["create"]}])
        );
        assert_eq!(a["auto_retry"], false);
        assert_eq!(sub.retry.as_ref().unwrap().schedule, Vec::<Duration>::new());
        assert_eq!(a["http_basic_user"], Value::Null);
        assert_eq!(sub.auth, None);
        assert_eq!(sub.filters.len(), 1);
        assert!(sub.template.is_some());
    }

    #[test]
    fn round_trip_keeps_what_datocms_cannot_express() {
        let mut sub = created(&seed_create(), None);
        sub.auth = Some(Box::new(TargetAuth::Bearer {
            token: Secret::new("tok"),
        }));
        let mut headers = sub.headers.into_vec();
        headers.push(HeaderSpec {
            name: "X-Secret".into(),
            value: Secret::new("s"),
            secret: true,
        });
        sub.headers = headers.into();
        sub.retry = Some(Box::new(RetryPolicy {
            schedule: vec![Duration::from_secs(1)],
            jitter: 0.1,
        }));
        let before = sub.clone();
        let shown = view(&sub);
        assert_eq!(shown["attributes"]["headers"], json!({"X-Foo": "Bar"}));
        let doc = json!({"data": {"type": "webhook", "id": shown["id"], "attributes": shown["attributes"]}});
        parse(&doc, Mode::Update(sub.id)).unwrap().apply(&mut sub);
        assert_eq!(sub, before);
        // Changing the headers keeps the secret one.
        let doc = json!({"data": {"type": "webhook", "attributes": {"headers": {"X-New": "1"}}}});
        parse(&doc, Mode::Update(sub.id)).unwrap().apply(&mut sub);
        let names: Vec<&str> = sub.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["X-New", "X-Secret"]);
    }

    #[test]
    fn ids_are_the_simple_uuid_form() {
        let id = SubscriptionId::generate();
        let shown = webhook_id(&id);
        assert_eq!(shown.len(), 32);
        assert!(
            shown
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(parse_webhook_id(&shown), Some(id));
        assert_eq!(parse_webhook_id(&id.to_string()), Some(id));
        assert_eq!(parse_webhook_id("312"), None);
    }
}
