//! The Sitecore audit API's bodies: parse → validate → the one `Subscription` model, and the
//! model back to Sitecore's shapes (spec §3.2). Pure functions, tested by the tables below.
//!
//! A webhook ("event configuration") maps onto a subscription like this:
//!
//! | Sitecore | Subscription |
//! |---|---|
//! | `id` (32 hex) | `id` (the same UUID) |
//! | `space` | `tenant` = space `space` lower-cased, and the filter attribute `space` ∈ {that, `*`} |
//! | `destinationSystem.targetUrl` | `url` |
//! | `destinationSystem.secret` | `auth` = header `X-Secret: <secret>` |
//! | `eventName` | `name` and the filter type |
//! | `enabled` | `enabled` |
//! | `createdBy` … `updatedDate` | `version` |
//! | `space` as written, `sourceSystem`, `logLevel`, `organizationId` | `extras` |
//!
//! The format is `SitecoreAudit` (each forwarded log as `[<log>]`), the method `POST`, and retry
//! and timeouts are the daemon's defaults: Sitecore documents none.

use http::{HeaderValue, Uri};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::problem::FieldErrors;
use crate::decode::sitecore_audit::EVENT_TYPE;
use crate::ingest::accept::{ALL_SPACES, audit_space};
use crate::model::event::attr;
use crate::model::filter::{AttributeMatch, Filter, TypePattern};
use crate::model::{
    Dialect, Format, HttpMethod, Secret, Subscription, SubscriptionId, TargetAuth, Tenant,
    TenantKind, Version,
};
use crate::model::{OptDuration, OptText};

/// The only `eventName` Sitecore accepts, and the type of every forwarded audit log.
pub const EVENT_NAME: &str = EVENT_TYPE;
/// The only `sourceSystem.$type`: logs from every app.
pub const ANY_SOURCE: &str = "AnySource";
/// The only `destinationSystem.$type`.
pub const WEBHOOK: &str = "Webhook";
/// The request header that carries `destinationSystem.secret`.
pub const SECRET_HEADER: &str = "X-Secret";
/// Bounds on what a configuration stores (the body limit bounds them too; these keep values
/// that end up in headers, filters and logs reasonable).
pub const MAX_SPACE_CHARS: usize = 256;
pub const MAX_SECRET_BYTES: usize = 1024;
pub const MAX_URL_BYTES: usize = 2048;

const PATCHABLE: &str = "PATCH changes only destinationSystem.secret, destinationSystem.targetUrl, logLevel and enabled";

/// Which deliveries Sitecore records (`FailuresOnly` by default). Herald's delivery log records
/// every attempt either way; the value is stored and shown as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LogLevel {
    #[default]
    FailuresOnly,
    All,
}

impl LogLevel {
    fn parse(v: &Value) -> Result<Self, &'static str> {
        match v.as_str() {
            Some("FailuresOnly") => Ok(LogLevel::FailuresOnly),
            Some("All") => Ok(LogLevel::All),
            _ => Err("must be \"FailuresOnly\" or \"All\""),
        }
    }
}

/// The Sitecore-only part of a configuration, kept in `Subscription::extras` so it reads back
/// exactly as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Extras {
    /// `space` as the client spelled it (the tenant and the filter hold it lower-cased).
    pub space: String,
    /// `sourceSystem` as written: `{"$type": "AnySource"}`.
    pub source_system: Value,
    #[serde(default)]
    pub log_level: LogLevel,
    /// Sitecore's organization. Herald has none, so it is `null` unless set by an import.
    #[serde(default)]
    pub organization_id: Option<String>,
}

impl Extras {
    /// The extras of `sub`, or what they would have been when they are missing or damaged (a
    /// subscription edited outside this dialect), so reading never fails.
    pub fn of(sub: &Subscription) -> Extras {
        Extras::deserialize(&*sub.extras).unwrap_or_else(|_| Extras {
            space: sub
                .tenant
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            source_system: any_source(),
            log_level: LogLevel::default(),
            organization_id: None,
        })
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

fn any_source() -> Value {
    let mut m = Map::new();
    m.insert("$type".into(), Value::from(ANY_SOURCE));
    Value::Object(m)
}

/// A valid create body.
#[derive(Debug, Clone, PartialEq)]
pub struct NewConfig {
    pub space: String,
    pub secret: String,
    pub target_url: String,
    pub enabled: bool,
    pub log_level: LogLevel,
}

impl NewConfig {
    /// The tenant this configuration belongs to: its space, lower-cased as routing sees it.
    pub fn tenant(&self) -> Tenant {
        space_tenant(&self.space)
    }

    /// The subscription this configuration is.
    pub fn into_subscription(self, id: SubscriptionId, actor: &str, now_ms: i64) -> Subscription {
        let tenant = self.tenant();
        let extras = Extras {
            space: self.space,
            source_system: any_source(),
            log_level: self.log_level,
            organization_id: None,
        };
        Subscription {
            id,
            dialect: Dialect::SitecoreAudit,
            filters: Box::new([space_filter(&tenant.name)]),
            tenant: Some(Box::new(tenant)),
            name: EVENT_NAME.into(),
            description: OptText::NONE,
            enabled: self.enabled,
            url: self.target_url.into(),
            method: HttpMethod::Post,
            headers: Box::default(),
            auth: Some(Box::new(secret_auth(self.secret))),
            signing_secret: None,
            format: Format::SitecoreAudit,
            retry: None,
            timeout: OptDuration::NONE,
            connect_timeout: OptDuration::NONE,
            template: None,
            disabled_reason: OptText::NONE,
            version: Version {
                created_by: actor.into(),
                created_at_ms: now_ms,
                modified_by: actor.into(),
                modified_at_ms: now_ms,
                version_no: 1,
            },
            extras: extras.to_value().into(),
        }
    }
}

/// The tenant of a space.
pub fn space_tenant(space: &str) -> Tenant {
    Tenant {
        kind: TenantKind::Space,
        name: audit_space(Some(space)).into(),
    }
}

/// The filter of a configuration of space `space_lc`: audit logs of that space, and logs
/// ingested without a space (ingest marks them `space = *`).
pub fn space_filter(space_lc: &str) -> Filter {
    Filter {
        types: Box::new([TypePattern::Exact(EVENT_NAME.into())]),
        attributes: Box::new([AttributeMatch {
            name: attr::SPACE.into(),
            values: Box::new([space_lc.into(), ALL_SPACES.into()]),
        }]),
    }
}

fn secret_auth(secret: String) -> TargetAuth {
    TargetAuth::Header {
        name: SECRET_HEADER.into(),
        value: Secret::new(secret),
    }
}

/// `field` must be exactly the string `want`.
fn expect_const(errors: &mut FieldErrors, field: &str, v: Option<&Value>, want: &str) {
    match v {
        None | Some(Value::Null) => errors.add(field, format!("is required; must be \"{want}\"")),
        Some(Value::String(s)) if s == want => {}
        Some(_) => errors.add(field, format!("must be \"{want}\"")),
    }
}

/// A required non-empty string, or `None` after recording why not.
fn required_str<'v>(
    errors: &mut FieldErrors,
    field: &str,
    v: Option<&'v Value>,
) -> Option<&'v str> {
    match v {
        None | Some(Value::Null) => {
            errors.add(field, "is required");
            None
        }
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.add(field, "is required and must not be empty");
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            errors.add(field, "must be a string");
            None
        }
    }
}

fn check_space(errors: &mut FieldErrors, v: Option<&Value>) -> Option<String> {
    const FIELD: &str = "space";
    let s = required_str(errors, FIELD, v)?;
    if s.chars().count() > MAX_SPACE_CHARS {
        errors.add(
            FIELD,
            format!("must be at most {MAX_SPACE_CHARS} characters"),
        );
    } else if s.chars().any(char::is_control) {
        errors.add(FIELD, "must not contain control characters");
    } else if s.trim() == ALL_SPACES {
        errors.add(
            FIELD,
            "`*` is not a space: audit logs ingested without a space reach every space's webhooks",
        );
    } else {
        return Some(s.to_string());
    }
    None
}

fn check_secret(errors: &mut FieldErrors, v: Option<&Value>) -> Option<String> {
    const FIELD: &str = "destinationSystem.secret";
    let s = required_str(errors, FIELD, v)?;
    if s.len() > MAX_SECRET_BYTES {
        errors.add(FIELD, format!("must be at most {MAX_SECRET_BYTES} bytes"));
    } else if HeaderValue::from_str(s).is_err() {
        errors.add(
            FIELD,
            "must be printable ASCII (it is sent in the X-Secret request header)",
        );
    } else {
        return Some(s.to_string());
    }
    None
}

fn check_url(errors: &mut FieldErrors, v: Option<&Value>) -> Option<String> {
    const FIELD: &str = "destinationSystem.targetUrl";
    let s = required_str(errors, FIELD, v)?;
    if s.len() > MAX_URL_BYTES {
        errors.add(FIELD, format!("must be at most {MAX_URL_BYTES} bytes"));
        return None;
    }
    let absolute = s.parse::<Uri>().ok().is_some_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https"))
            && u.authority().is_some_and(|a| !a.host().is_empty())
    });
    if absolute {
        Some(s.to_string())
    } else {
        errors.add(FIELD, "must be an absolute http or https URL");
        None
    }
}

fn check_enabled(errors: &mut FieldErrors, v: Option<&Value>) -> Option<bool> {
    match v {
        Some(Value::Bool(b)) => Some(*b),
        None | Some(Value::Null) => {
            errors.add("enabled", "is required; must be true or false");
            None
        }
        Some(_) => {
            errors.add("enabled", "must be true or false");
            None
        }
    }
}

fn object<'v>(
    errors: &mut FieldErrors,
    field: &str,
    v: Option<&'v Value>,
) -> Option<&'v Map<String, Value>> {
    match v {
        Some(Value::Object(m)) => Some(m),
        None | Some(Value::Null) => {
            errors.add(field, "is required");
            None
        }
        Some(_) => {
            errors.add(field, "must be an object");
            None
        }
    }
}

/// Validates a `POST /api/v1/eventConfigurations` body, reporting every invalid field.
///
/// Besides the documented required fields it accepts `logLevel` (as PATCH does) and
/// `destinationSystem.contentType: null` (what GET shows); any other field is refused, so a
/// misspelt field is an error rather than silently ignored.
pub fn parse_create(body: &Value) -> Result<NewConfig, FieldErrors> {
    let mut errors = FieldErrors::new();
    let Some(obj) = body.as_object() else {
        return Err(FieldErrors::one("$", "the body must be a JSON object"));
    };
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "space" | "sourceSystem" | "destinationSystem" | "eventName" | "enabled" | "logLevel"
        ) {
            errors.add(key.as_str(), "unknown field");
        }
    }
    let space = check_space(&mut errors, obj.get("space"));
    if let Some(source) = object(&mut errors, "sourceSystem", obj.get("sourceSystem")) {
        expect_const(
            &mut errors,
            "sourceSystem.$type",
            source.get("$type"),
            ANY_SOURCE,
        );
        for key in source.keys().filter(|k| *k != "$type") {
            errors.add(format!("sourceSystem.{key}"), "unknown field");
        }
    }
    let (mut secret, mut target_url) = (None, None);
    if let Some(dest) = object(
        &mut errors,
        "destinationSystem",
        obj.get("destinationSystem"),
    ) {
        expect_const(
            &mut errors,
            "destinationSystem.$type",
            dest.get("$type"),
            WEBHOOK,
        );
        secret = check_secret(&mut errors, dest.get("secret"));
        target_url = check_url(&mut errors, dest.get("targetUrl"));
        for (key, v) in dest {
            match key.as_str() {
                "$type" | "secret" | "targetUrl" => {}
                "contentType" if v.is_null() => {}
                "contentType" => errors.add(
                    "destinationSystem.contentType",
                    "must be null: logs are sent as application/json",
                ),
                _ => errors.add(format!("destinationSystem.{key}"), "unknown field"),
            }
        }
    }
    expect_const(&mut errors, "eventName", obj.get("eventName"), EVENT_NAME);
    let enabled = check_enabled(&mut errors, obj.get("enabled"));
    let log_level = match obj.get("logLevel") {
        None => LogLevel::default(),
        Some(v) => LogLevel::parse(v).unwrap_or_else(|m| {
            errors.add("logLevel", m);
            LogLevel::default()
        }),
    };
    match (space, secret, target_url, enabled) {
        (Some(space), Some(secret), Some(target_url), Some(enabled)) if errors.is_empty() => {
            Ok(NewConfig {
                space,
                secret,
                target_url,
                enabled,
                log_level,
            })
        }
        _ => Err(errors),
    }
}

/// A valid PATCH body: what to change (merge semantics: absent means unchanged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Patch {
    pub secret: Option<String>,
    pub target_url: Option<String>,
    pub log_level: Option<LogLevel>,
    pub enabled: Option<bool>,
}

/// A read-only field in a PATCH body: accepted when it repeats the current value (a client that
/// sends back what GET returned with one field changed), refused when it would change it.
fn unchanged(errors: &mut FieldErrors, field: &str, sent: &Value, current: Option<&Value>) {
    match current {
        Some(cur) if cur == sent => {}
        Some(_) => errors.add(field, format!("cannot be changed; {PATCHABLE}")),
        None => errors.add(field, format!("unknown field; {PATCHABLE}")),
    }
}

/// Validates a `PATCH /api/v1/eventConfigurations/{id}` body against `current` (the
/// configuration as GET shows it now).
pub fn parse_patch(body: &Value, current: &Value) -> Result<Patch, FieldErrors> {
    let mut errors = FieldErrors::new();
    let Some(obj) = body.as_object() else {
        return Err(FieldErrors::one("$", "the body must be a JSON object"));
    };
    let mut patch = Patch::default();
    for (key, v) in obj {
        match key.as_str() {
            "enabled" => match v {
                Value::Bool(b) => patch.enabled = Some(*b),
                _ => errors.add("enabled", "must be true or false"),
            },
            "logLevel" => match LogLevel::parse(v) {
                Ok(l) => patch.log_level = Some(l),
                Err(m) => errors.add("logLevel", m),
            },
            "destinationSystem" => {
                let Some(dest) = v.as_object() else {
                    errors.add("destinationSystem", "must be an object");
                    continue;
                };
                for (k, dv) in dest {
                    let current = current.get("destinationSystem").and_then(|d| d.get(k));
                    match k.as_str() {
                        "secret" => patch.secret = check_secret(&mut errors, Some(dv)),
                        "targetUrl" => patch.target_url = check_url(&mut errors, Some(dv)),
                        _ => unchanged(&mut errors, &format!("destinationSystem.{k}"), dv, current),
                    }
                }
            }
            _ => unchanged(&mut errors, key, v, current.get(key)),
        }
    }
    errors.into_result(patch)
}

impl Patch {
    /// Applies the change to a Sitecore audit subscription.
    pub fn apply(self, sub: &mut Subscription) {
        if let Some(url) = self.target_url {
            sub.url = url.into();
        }
        if let Some(secret) = self.secret {
            sub.auth = Some(Box::new(secret_auth(secret)));
        }
        if let Some(level) = self.log_level {
            let mut extras = Extras::of(sub);
            extras.log_level = level;
            sub.extras = extras.to_value().into();
        }
        if let Some(enabled) = self.enabled {
            sub.enabled = enabled;
            if enabled {
                sub.disabled_reason = OptText::NONE;
            }
        }
    }
}

/// `destinationSystem` as Sitecore shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DestinationView<'a> {
    /// Echoed, as Sitecore does (spec §3.2). `null` when the subscription's auth was changed
    /// through the native API to something other than an `X-Secret` header.
    pub secret: Option<&'a str>,
    pub target_url: &'a str,
    /// Always `null`: logs are sent as `application/json`.
    pub content_type: Option<&'a str>,
    #[serde(rename = "$type")]
    pub kind: &'static str,
}

/// A configuration as GET and PATCH return it (spec §3.2), fields in Sitecore's order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct View<'a> {
    pub id: String,
    pub organization_id: Option<String>,
    pub source_system: Value,
    pub destination_system: DestinationView<'a>,
    pub space: String,
    /// Always `null` (Sitecore's value is undocumented).
    pub source_system_status: Option<()>,
    pub log_level: LogLevel,
    pub created_by: &'a str,
    pub created_date: String,
    pub updated_by: &'a str,
    pub updated_date: String,
    pub event_name: &'static str,
    pub enabled: bool,
}

/// The full object of `sub`.
pub fn view(sub: &Subscription) -> View<'_> {
    let extras = Extras::of(sub);
    let secret = match sub.auth.as_deref() {
        Some(TargetAuth::Header { name, value }) if name.eq_ignore_ascii_case(SECRET_HEADER) => {
            Some(value.expose())
        }
        _ => None,
    };
    View {
        id: sub.id.simple(),
        organization_id: extras.organization_id,
        source_system: extras.source_system,
        destination_system: DestinationView {
            secret,
            target_url: &sub.url,
            content_type: None,
            kind: WEBHOOK,
        },
        space: extras.space,
        source_system_status: None,
        log_level: extras.log_level,
        created_by: &sub.version.created_by,
        created_date: dotnet_time(sub.version.created_at_ms),
        updated_by: &sub.version.modified_by,
        updated_date: dotnet_time(sub.version.modified_at_ms),
        event_name: EVENT_NAME,
        enabled: sub.enabled,
    }
}

/// One entry of the create answer's `events` array.
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub id: String,
    pub enabled: bool,
    pub name: &'a str,
    pub description: Option<&'a str>,
}

pub fn summary(sub: &Subscription) -> Summary<'_> {
    Summary {
        id: sub.id.simple(),
        enabled: sub.enabled,
        name: &sub.name,
        description: sub.description.as_deref(),
    }
}

/// One entry of the list answer: the full object plus the summary's `name` and `description`,
/// so a client reading either shape finds its fields.
#[derive(Debug, Serialize)]
pub struct ListItem<'a> {
    #[serde(flatten)]
    pub view: View<'a>,
    pub name: &'a str,
    pub description: Option<&'a str>,
}

pub fn list_item(sub: &Subscription) -> ListItem<'_> {
    ListItem {
        view: view(sub),
        name: &sub.name,
        description: sub.description.as_deref(),
    }
}

/// A time as .NET writes a `DateTimeOffset` in UTC: `2026-12-22T12:10:18.8610000+00:00`
/// (seven fractional digits; Herald keeps milliseconds).
pub fn dotnet_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => format!(
            "{}.{:03}0000+00:00",
            t.strftime("%Y-%m-%dT%H:%M:%S"),
            ms.rem_euclid(1000)
        ),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seed() -> Value {
        json!({
            "space": "Development",
            "sourceSystem": {"$type": "AnySource"},
            "destinationSystem": {"$type": "Webhook", "secret": "s3cr3t",
                                  "targetUrl": "https://www.exampletartget.url/example-endpoint"},
            "eventName": "sitecore.backbone.messages.audit.created",
            "enabled": true
        })
    }

    fn with(path: &[&str], v: Option<Value>) -> Value {
        let mut body = seed();
        let mut at = &mut body;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        let obj = at.as_object_mut().unwrap();
        let last = path[path.len() - 1];
        match v {
            Some(v) => {
                obj.insert(last.into(), v);
            }
            None => {
                obj.remove(last);
            }
        }
        body
    }

    #[test]
    fn the_seed_body_is_valid() {
        let c = parse_create(&seed()).unwrap();
        assert_eq!(
            c,
            NewConfig {
                space: "Development".into(),
                secret: "s3cr3t".into(),
                target_url: "https://www.exampletartget.url/example-endpoint".into(),
                enabled: true,
                log_level: LogLevel::FailuresOnly,
            }
        );
        let c = parse_create(&with(&["logLevel"], Some(json!("All")))).unwrap();
        assert_eq!(c.log_level, LogLevel::All);
        let c = parse_create(&with(
            &["destinationSystem", "contentType"],
            Some(Value::Null),
        ));
        assert!(c.is_ok());
    }

    #[test]
    fn create_validation_table() {
        let cases: Vec<(Value, &[&str])> = vec![
            (with(&["space"], None), &["space"]),
            (with(&["space"], Some(json!(""))), &["space"]),
            (with(&["space"], Some(json!("  "))), &["space"]),
            (with(&["space"], Some(json!(7))), &["space"]),
            (with(&["space"], Some(json!("*"))), &["space"]),
            (with(&["space"], Some(json!("a\nb"))), &["space"]),
            (with(&["space"], Some(json!("x".repeat(257)))), &["space"]),
            (with(&["sourceSystem"], None), &["sourceSystem"]),
            (
                with(&["sourceSystem"], Some(json!("AnySource"))),
                &["sourceSystem"],
            ),
            (
                with(&["sourceSystem", "$type"], None),
                &["sourceSystem.$type"],
            ),
            (
                with(&["sourceSystem", "$type"], Some(json!("CDP"))),
                &["sourceSystem.$type"],
            ),
            (
                with(&["sourceSystem", "name"], Some(json!("x"))),
                &["sourceSystem.name"],
            ),
            (with(&["destinationSystem"], None), &["destinationSystem"]),
            (
                with(&["destinationSystem", "$type"], Some(json!("Email"))),
                &["destinationSystem.$type"],
            ),
            (
                with(&["destinationSystem", "$type"], None),
                &["destinationSystem.$type"],
            ),
            (
                with(&["destinationSystem", "secret"], None),
                &["destinationSystem.secret"],
            ),
            (
                with(&["destinationSystem", "secret"], Some(json!(""))),
                &["destinationSystem.secret"],
            ),
            (
                with(
                    &["destinationSystem", "secret"],
                    Some(json!("a\r\nX-Evil: 1")),
                ),
                &["destinationSystem.secret"],
            ),
            (
                with(
                    &["destinationSystem", "secret"],
                    Some(json!("s".repeat(1025))),
                ),
                &["destinationSystem.secret"],
            ),
            (
                with(&["destinationSystem", "targetUrl"], None),
                &["destinationSystem.targetUrl"],
            ),
            (
                with(
                    &["destinationSystem", "targetUrl"],
                    Some(json!("example.com/hook")),
                ),
                &["destinationSystem.targetUrl"],
            ),
            (
                with(
                    &["destinationSystem", "targetUrl"],
                    Some(json!("ftp://example.com/")),
                ),
                &["destinationSystem.targetUrl"],
            ),
            (
                with(
                    &["destinationSystem", "targetUrl"],
                    Some(json!("/relative")),
                ),
                &["destinationSystem.targetUrl"],
            ),
            (
                with(&["destinationSystem", "targetUrl"], Some(json!(42))),
                &["destinationSystem.targetUrl"],
            ),
            (
                with(
                    &["destinationSystem", "contentType"],
                    Some(json!("text/xml")),
                ),
                &["destinationSystem.contentType"],
            ),
            (
                with(&["destinationSystem", "headers"], Some(json!({}))),
                &["destinationSystem.headers"],
            ),
            (with(&["eventName"], None), &["eventName"]),
            (
                with(
                    &["eventName"],
                    Some(json!("sitecore.backbone.messages.audit.deleted")),
                ),
                &["eventName"],
            ),
            (with(&["enabled"], None), &["enabled"]),
            (with(&["enabled"], Some(json!("true"))), &["enabled"]),
            (
                with(&["logLevel"], Some(json!("Everything"))),
                &["logLevel"],
            ),
            (
                with(&["targetUrl"], Some(json!("https://x/"))),
                &["targetUrl"],
            ),
            (json!([]), &["$"]),
            (json!(null), &["$"]),
            (
                json!({}),
                &[
                    "destinationSystem",
                    "enabled",
                    "eventName",
                    "sourceSystem",
                    "space",
                ],
            ),
            (
                json!({"space": "", "sourceSystem": {}, "destinationSystem": {"$type": "Webhook"},
                       "eventName": "x", "enabled": 1}),
                &[
                    "destinationSystem.secret",
                    "destinationSystem.targetUrl",
                    "enabled",
                    "eventName",
                    "sourceSystem.$type",
                    "space",
                ],
            ),
        ];
        for (body, want) in cases {
            let errors = parse_create(&body).expect_err(&body.to_string());
            let fields: Vec<&str> = errors.fields().collect();
            assert_eq!(fields, want, "{body}");
        }
    }

    fn sub() -> Subscription {
        let id = "7050346545d5447da57b64be6416ac78".parse().unwrap();
        parse_create(&seed())
            .unwrap()
            .into_subscription(id, "token#0", 1_798_114_218_861)
    }

    #[test]
    fn maps_onto_the_model() {
        let s = sub();
        assert_eq!(s.dialect, Dialect::SitecoreAudit);
        assert_eq!(
            s.tenant.as_deref(),
            Some(&Tenant {
                kind: TenantKind::Space,
                name: "development".into()
            })
        );
        assert_eq!(&*s.name, EVENT_NAME);
        assert_eq!(&*s.url, "https://www.exampletartget.url/example-endpoint");
        assert_eq!(s.format, Format::SitecoreAudit);
        assert_eq!(s.method, HttpMethod::Post);
        assert_eq!(
            s.auth,
            Some(Box::new(TargetAuth::Header {
                name: "X-Secret".into(),
                value: Secret::new("s3cr3t")
            }))
        );
        assert_eq!(*s.filters, [space_filter("development")]);
        assert_eq!(
            *s.filters[0].attributes[0].values,
            [Box::from("development"), Box::from("*")]
        );
        assert!(s.retry.is_none() && s.timeout.is_none() && s.signing_secret.is_none());
        assert_eq!(
            *s.extras,
            json!({"space": "Development", "sourceSystem": {"$type": "AnySource"},
                   "logLevel": "FailuresOnly", "organizationId": null})
        );
    }

    #[test]
    fn the_view_is_sitecores_full_object() {
        let s = sub();
        let v = serde_json::to_string(&view(&s)).unwrap();
        assert_eq!(
            v,
            concat!(
                r#"{"id":"7050346545d5447da57b64be6416ac78","organizationId":null,"#,
                r#""sourceSystem":{"$type":"AnySource"},"destinationSystem":{"secret":"s3cr3t","#,
                r#""targetUrl":"https://www.exampletartget.url/example-endpoint","contentType":null,"#,
                r#""$type":"Webhook"},"space":"Development","sourceSystemStatus":null,"#,
                r#""logLevel":"FailuresOnly","createdBy":"token#0","#,
                r#""createdDate":"2026-12-24T12:10:18.8610000+00:00","updatedBy":"token#0","#,
                r#""updatedDate":"2026-12-24T12:10:18.8610000+00:00","#,
                r#""eventName":"sitecore.backbone.messages.audit.created","enabled":true}"#
            )
        );
        let sum = serde_json::to_value(summary(&s)).unwrap();
        assert_eq!(
            sum,
            json!({"id": "7050346545d5447da57b64be6416ac78", "enabled": true,
                   "name": "sitecore.backbone.messages.audit.created", "description": null})
        );
        let item = serde_json::to_value(list_item(&s)).unwrap();
        assert_eq!(item["name"], EVENT_NAME);
        assert_eq!(item["destinationSystem"]["secret"], "s3cr3t");
    }

    #[test]
    fn damaged_extras_read_back_with_defaults() {
        let mut s = sub();
        s.extras = Value::Null.into();
        s.auth = Some(Box::new(TargetAuth::Bearer {
            token: Secret::new("t"),
        }));
        let v = serde_json::to_value(view(&s)).unwrap();
        assert_eq!(v["space"], "development");
        assert_eq!(v["logLevel"], "FailuresOnly");
        assert_eq!(v["sourceSystem"], json!({"$type": "AnySource"}));
        assert_eq!(v["destinationSystem"]["secret"], Value::Null);
    }

    #[test]
    fn patch_table() {
        let s = sub();
        let current = serde_json::to_value(view(&s)).unwrap();
        let ok: Vec<(Value, Patch)> = vec![
            (json!({}), Patch::default()),
            (
                json!({"destinationSystem": {"secret": "new", "targetUrl": "http://h/x"}}),
                Patch {
                    secret: Some("new".into()),
                    target_url: Some("http://h/x".into()),
                    ..Patch::default()
                },
            ),
            (
                json!({"logLevel": "All", "enabled": false}),
                Patch {
                    log_level: Some(LogLevel::All),
                    enabled: Some(false),
                    ..Patch::default()
                },
            ),
            // Read-only fields repeating their current value (GET, edit, PATCH back).
            (
                json!({"space": "Development", "eventName": EVENT_NAME,
                       "destinationSystem": {"$type": "Webhook", "contentType": null}}),
                Patch::default(),
            ),
            (
                current.clone(),
                Patch {
                    secret: Some("s3cr3t".into()),
                    target_url: Some("https://www.exampletartget.url/example-endpoint".into()),
                    log_level: Some(LogLevel::FailuresOnly),
                    enabled: Some(true),
                },
            ),
        ];
        for (body, want) in ok {
            assert_eq!(parse_patch(&body, &current), Ok(want), "{body}");
        }
        let bad: Vec<(Value, &[&str])> = vec![
            (json!({"space": "Production"}), &["space"]),
            (json!({"eventName": "x"}), &["eventName"]),
            (json!({"sourceSystem": {"$type": "CDP"}}), &["sourceSystem"]),
            (json!({"id": "00000000000000000000000000000000"}), &["id"]),
            (json!({"name": "x"}), &["name"]),
            (
                json!({"destinationSystem": {"$type": "Email"}}),
                &["destinationSystem.$type"],
            ),
            (
                json!({"destinationSystem": {"contentType": "text/xml"}}),
                &["destinationSystem.contentType"],
            ),
            (
                json!({"destinationSystem": {"headers": {}}}),
                &["destinationSystem.headers"],
            ),
            (
                json!({"destinationSystem": {"targetUrl": "nope"}}),
                &["destinationSystem.targetUrl"],
            ),
            (
                json!({"destinationSystem": {"secret": ""}}),
                &["destinationSystem.secret"],
            ),
            (json!({"destinationSystem": null}), &["destinationSystem"]),
            (json!({"logLevel": null}), &["logLevel"]),
            (json!({"enabled": "no"}), &["enabled"]),
            (json!("enabled"), &["$"]),
            (
                json!({"space": "x", "enabled": null, "logLevel": "Verbose"}),
                &["enabled", "logLevel", "space"],
            ),
        ];
        for (body, want) in bad {
            let errors = parse_patch(&body, &current).expect_err(&body.to_string());
            let fields: Vec<&str> = errors.fields().collect();
            assert_eq!(fields, want, "{body}");
        }
    }

    #[test]
    fn patch_applies_with_merge_semantics() {
        let mut s = sub();
        s.enabled = false;
        s.disabled_reason = "410 Gone".into();
        Patch {
            secret: Some("rotated".into()),
            log_level: Some(LogLevel::All),
            enabled: Some(true),
            ..Patch::default()
        }
        .apply(&mut s);
        assert_eq!(&*s.url, "https://www.exampletartget.url/example-endpoint");
        assert_eq!(
            s.auth,
            Some(Box::new(TargetAuth::Header {
                name: "X-Secret".into(),
                value: Secret::new("rotated")
            }))
        );
        assert!(s.enabled && s.disabled_reason.is_none());
        let e = Extras::of(&s);
        assert_eq!(
            (e.log_level, e.space.as_str()),
            (LogLevel::All, "Development")
        );
    }

    #[test]
    fn dotnet_times() {
        let cases = [
            (0, "1970-01-01T00:00:00.0000000+00:00"),
            (1_798_114_218_861, "2026-12-24T12:10:18.8610000+00:00"),
            (1_798_114_218_005, "2026-12-24T12:10:18.0050000+00:00"),
        ];
        for (ms, want) in cases {
            assert_eq!(dotnet_time(ms), want);
        }
    }
}
