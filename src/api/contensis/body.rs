//! The Contensis subscription body: JSON → validated subscription fields, and a subscription →
//! the Contensis JSON the API shows (spec §2.2).
//!
//! Parse → validate → domain type: every problem is collected with its path (`topics[0].event`,
//! `headers.X-Key.secret`, `templates.entry.news`) and answered as one `Validation` error.
//! What Herald's model has no field for but a Contensis client must get back as written lives in
//! `Subscription::extras`: the localized `name`/`description` objects, the topics as written,
//! which templates were JSON objects, and `ui`. The view prefers those only while they still
//! describe the stored subscription (topics are recompiled and compared with the stored
//! filters), so an edit through the native API is always what the Contensis view shows.

use serde_json::Value;

use crate::api::error::FieldError;
use crate::model::OptText;
use crate::model::{Filter, HeaderSpec, HttpMethod, Secret, Subscription, Template, TenantKind};

use super::json::{Json, object};
use super::topics;

/// The value the current Contensis docs show for a secret header. A PUT that sends it back
/// means "keep the stored value", like a secret header sent without a value.
pub const SECRET_MASK: &str = "************";

const MAX_NAME: usize = 256;
const MAX_DESCRIPTION: usize = 4096;
const MAX_URL: usize = 4096;
const MAX_HEADERS: usize = 64;
const MAX_HEADER_VALUE: usize = 8192;
const MAX_TEMPLATES: usize = 64;
const MAX_TEMPLATE: usize = 64 * 1024;
const MAX_LANGUAGES: usize = 64;
/// `ui` is an opaque flag in every example (`"ui": false`); anything much larger is not one.
const MAX_UI: usize = 4096;

/// Top-level members a client may send. `id` and `version` (but for `version.versionNo` on a
/// PUT) are read-only: clients echo them from a GET, so they are accepted and ignored.
const KNOWN: &[&str] = &[
    "id",
    "name",
    "description",
    "url",
    "method",
    "enabled",
    "topics",
    "headers",
    "templates",
    "ui",
    "version",
];

/// Keys of `Subscription::extras` for a Contensis subscription.
mod extra {
    pub const NAME: &str = "name";
    pub const DESCRIPTION: &str = "description";
    pub const TOPICS: &str = "topics";
    pub const TEMPLATE_OBJECTS: &str = "templateObjects";
    pub const UI: &str = "ui";
}

/// A validated Contensis body, ready to be applied to a subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Fields {
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    pub method: HttpMethod,
    pub enabled: bool,
    pub filters: Vec<Filter>,
    pub headers: Vec<HeaderSpec>,
    /// `None` when `templates` is absent or empty: every event gets the default structure.
    pub template: Option<Template>,
    pub extras: Value,
    /// `version.versionNo` as sent (PUT only; `None` on create).
    pub version_no: Option<u64>,
}

impl Fields {
    /// Copies what a Contensis body sets onto `sub`. Fields Contensis cannot express (auth,
    /// signing secret, retry, timeouts, format) stay as they are.
    pub fn apply(self, sub: &mut Subscription) {
        sub.name = self.name.into();
        sub.description = self.description.into();
        sub.url = self.url.into();
        sub.method = self.method;
        sub.enabled = self.enabled;
        if sub.enabled {
            sub.disabled_reason = OptText::NONE;
        }
        sub.filters = self.filters.into();
        sub.headers = self.headers.into();
        sub.template = self.template.map(Box::new);
        sub.extras = self.extras.into();
    }
}

/// Validates a Contensis subscription body for `project`. `existing` is the stored subscription
/// on a PUT: `version.versionNo` is then required and secret headers sent without a value keep
/// their stored one.
pub fn parse(
    body: &Json,
    project: &str,
    existing: Option<&Subscription>,
) -> Result<Fields, Vec<FieldError>> {
    let Some(members) = body.as_object() else {
        return Err(vec![FieldError::new(
            "",
            format!("the body must be a JSON object, not {}", body.kind()),
        )]);
    };
    let mut errs = Vec::new();
    for (k, _) in members {
        if !KNOWN.contains(&k.as_str()) {
            errs.push(FieldError::new(k.clone(), "unknown field"));
        }
    }
    let mut extras = serde_json::Map::new();

    let name = match localized(body.get("name"), "name", MAX_NAME, &mut errs) {
        Some((text, original)) => {
            if let Some(o) = original {
                extras.insert(extra::NAME.into(), o);
            }
            text
        }
        None => {
            if body.get("name").is_none_or(|n| *n == Json::Null) {
                errs.push(FieldError::new("name", "is required"));
            }
            String::new()
        }
    };
    let description = match body.get("description") {
        None | Some(Json::Null) => None,
        v => localized(v, "description", MAX_DESCRIPTION, &mut errs).map(|(text, original)| {
            if let Some(o) = original {
                extras.insert(extra::DESCRIPTION.into(), o);
            }
            text
        }),
    };

    let url = match body.get("url") {
        Some(Json::String(s)) if !s.trim().is_empty() && s.len() <= MAX_URL => s.clone(),
        Some(Json::String(_)) => {
            errs.push(FieldError::new(
                "url",
                format!("must be an absolute http or https URL of at most {MAX_URL} characters"),
            ));
            String::new()
        }
        None | Some(Json::Null) => {
            errs.push(FieldError::new("url", "is required"));
            String::new()
        }
        Some(other) => {
            errs.push(FieldError::new(
                "url",
                format!("must be a string, not {}", other.kind()),
            ));
            String::new()
        }
    };

    let method = match body.get("method") {
        None | Some(Json::Null) => HttpMethod::Post,
        Some(Json::String(s)) => HttpMethod::parse(s.trim()).unwrap_or_else(|| {
            errs.push(FieldError::new(
                "method",
                format!("`{s}` is not one of POST, PUT, PATCH, GET, DELETE"),
            ));
            HttpMethod::Post
        }),
        Some(other) => {
            errs.push(FieldError::new(
                "method",
                format!("must be a string, not {}", other.kind()),
            ));
            HttpMethod::Post
        }
    };

    let enabled = match body.get("enabled") {
        None | Some(Json::Null) => true,
        Some(Json::Bool(b)) => *b,
        Some(other) => {
            errs.push(FieldError::new(
                "enabled",
                format!("must be true or false, not {}", other.kind()),
            ));
            true
        }
    };

    let topic_list = topics::parse_topics(body.get("topics"), &mut errs);
    if let Some(t) = body.get("topics") {
        extras.insert(extra::TOPICS.into(), t.to_value());
    }

    let headers = parse_headers(
        body.get("headers"),
        existing.map_or(&[][..], |s| &s.headers[..]),
        &mut errs,
    );

    let (template, objects) = parse_templates(body.get("templates"), &mut errs);
    if !objects.is_empty() {
        extras.insert(
            extra::TEMPLATE_OBJECTS.into(),
            Value::Array(objects.into_iter().map(Value::String).collect()),
        );
    }

    if let Some(ui) = body.get("ui") {
        if ui.to_text().len() <= MAX_UI {
            extras.insert(extra::UI.into(), ui.to_value());
        } else {
            errs.push(FieldError::new(
                "ui",
                format!("must be at most {MAX_UI} bytes of JSON"),
            ));
        }
    }

    let version_no = match existing {
        None => None,
        Some(_) => {
            let required = || {
                FieldError::new(
                    "version.versionNo",
                    "is required: the versionNo of the subscription being replaced, e.g. \"1.0\"",
                )
            };
            match body.get("version") {
                Some(v @ Json::Object(_)) => match v.get("versionNo") {
                    None | Some(Json::Null) => {
                        errs.push(required());
                        None
                    }
                    Some(n) => match parse_version_no(n) {
                        Ok(n) => Some(n),
                        Err(m) => {
                            errs.push(FieldError::new("version.versionNo", m));
                            None
                        }
                    },
                },
                None | Some(Json::Null) => {
                    errs.push(required());
                    None
                }
                Some(other) => {
                    errs.push(FieldError::new(
                        "version",
                        format!("must be an object, not {}", other.kind()),
                    ));
                    None
                }
            }
        }
    };

    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Fields {
        name,
        description,
        url,
        method,
        enabled,
        filters: topics::filters(&topic_list, project),
        headers,
        template,
        extras: Value::Object(extras),
        version_no,
    })
}

/// A plain string or a localized object (`{"en-GB": "name"}`): the text (the first language as
/// written) and, for an object, the object itself for `extras`. `None` after reporting.
fn localized(
    v: Option<&Json>,
    field: &str,
    max: usize,
    errs: &mut Vec<FieldError>,
) -> Option<(String, Option<Value>)> {
    let check = |s: &str, path: &str, errs: &mut Vec<FieldError>| -> bool {
        if s.trim().is_empty() || s.len() > max {
            errs.push(FieldError::new(
                path,
                format!("must be 1 to {max} characters and not blank"),
            ));
            false
        } else {
            true
        }
    };
    match v? {
        Json::String(s) => check(s, field, errs).then(|| (s.clone(), None)),
        Json::Object(langs) if langs.is_empty() || langs.len() > MAX_LANGUAGES => {
            errs.push(FieldError::new(
                field,
                format!("a localized {field} must have 1 to {MAX_LANGUAGES} languages"),
            ));
            None
        }
        obj @ Json::Object(langs) => {
            let mut ok = true;
            for (lang, text) in langs {
                let path = format!("{field}.{lang}");
                match text {
                    Json::String(s) => ok &= check(s, &path, errs),
                    other => {
                        errs.push(FieldError::new(
                            path,
                            format!("must be a string, not {}", other.kind()),
                        ));
                        ok = false;
                    }
                }
            }
            let first = langs.first().and_then(|(_, t)| t.as_str())?;
            ok.then(|| (first.to_string(), Some(obj.to_value())))
        }
        other => {
            errs.push(FieldError::new(
                field,
                format!(
                    "must be a string or a localized object such as {{\"en-GB\": \"…\"}}, not {}",
                    other.kind()
                ),
            ));
            None
        }
    }
}

/// `headers`: name → `{value?, secret?}`. A header with no value is not stored (Contensis: "a
/// header will not be returned if it has no value"), except that a secret header sent without
/// a value, or with the mask, keeps the value stored under the same name (`old`).
fn parse_headers(
    v: Option<&Json>,
    old: &[HeaderSpec],
    errs: &mut Vec<FieldError>,
) -> Vec<HeaderSpec> {
    let members = match v {
        None | Some(Json::Null) => return Vec::new(),
        Some(Json::Object(m)) if m.len() <= MAX_HEADERS => m,
        Some(Json::Object(_)) => {
            errs.push(FieldError::new(
                "headers",
                format!("at most {MAX_HEADERS} headers"),
            ));
            return Vec::new();
        }
        Some(other) => {
            errs.push(FieldError::new(
                "headers",
                format!(
                    "must be an object such as {{\"X-Name\": {{\"value\": \"…\"}}}}, not {}",
                    other.kind()
                ),
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(members.len());
    for (name, spec) in members {
        let path = format!("headers.{name}");
        let Some(fields) = spec.as_object() else {
            errs.push(FieldError::new(
                path,
                format!(
                    "must be an object {{\"value\": \"…\", \"secret\": true|false}}, not {}",
                    spec.kind()
                ),
            ));
            continue;
        };
        for (k, _) in fields {
            if k != "value" && k != "secret" {
                errs.push(FieldError::new(format!("{path}.{k}"), "unknown field"));
            }
        }
        let secret = match spec.get("secret") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                errs.push(FieldError::new(
                    format!("{path}.secret"),
                    format!("must be true or false, not {}", other.kind()),
                ));
                continue;
            }
        };
        let value = match spec.get("value") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) if secret && s == SECRET_MASK => None,
            Some(Json::String(s)) if s.len() <= MAX_HEADER_VALUE => Some(s.clone()),
            Some(Json::String(_)) => {
                errs.push(FieldError::new(
                    format!("{path}.value"),
                    format!("must be at most {MAX_HEADER_VALUE} characters"),
                ));
                continue;
            }
            Some(other) => {
                errs.push(FieldError::new(
                    format!("{path}.value"),
                    format!("must be a string, not {}", other.kind()),
                ));
                continue;
            }
        };
        let value = match value {
            Some(v) => v,
            None if secret => match old.iter().find(|h| h.name.eq_ignore_ascii_case(name)) {
                Some(h) => h.value.expose().to_string(),
                None => continue,
            },
            None => continue,
        };
        out.push(HeaderSpec {
            name: name.clone(),
            value: Secret::new(value),
            secret,
        });
    }
    out
}

/// `templates`: key (`resourceType` or `resourceType.contentTypeId`) → template, a JSON string
/// or a JSON object. Objects are stored as their compact text, members in the order written;
/// the keys that were objects are returned so the view can show them as objects again.
fn parse_templates(
    v: Option<&Json>,
    errs: &mut Vec<FieldError>,
) -> (Option<Template>, Vec<String>) {
    let members = match v {
        None | Some(Json::Null) => return (None, Vec::new()),
        Some(Json::Object(m)) if m.len() <= MAX_TEMPLATES => m,
        Some(Json::Object(_)) => {
            errs.push(FieldError::new(
                "templates",
                format!("at most {MAX_TEMPLATES} templates"),
            ));
            return (None, Vec::new());
        }
        Some(other) => {
            errs.push(FieldError::new(
                "templates",
                format!(
                    "must be an object of resourceType or resourceType.contentTypeId → template, not {}",
                    other.kind()
                ),
            ));
            return (None, Vec::new());
        }
    };
    let mut pairs = Vec::with_capacity(members.len());
    let mut objects = Vec::new();
    for (key, t) in members {
        let path = format!("templates.{key}");
        if topics::template_key_resource(key).is_none() {
            errs.push(FieldError::new(
                path.clone(),
                "the key must be a resourceType (`entry`) or resourceType.contentTypeId \
                 (`entry.news`) with a known resourceType",
            ));
        }
        let text = match t {
            Json::String(s) => s.clone(),
            obj @ Json::Object(_) => {
                objects.push(key.clone());
                obj.to_text()
            }
            other => {
                errs.push(FieldError::new(
                    path,
                    format!(
                        "must be a template string or a JSON object, not {}",
                        other.kind()
                    ),
                ));
                continue;
            }
        };
        if text.len() > MAX_TEMPLATE {
            errs.push(FieldError::new(
                path,
                format!("must be at most {MAX_TEMPLATE} bytes"),
            ));
            continue;
        }
        pairs.push((key.clone(), text));
    }
    let template = (!pairs.is_empty()).then_some(Template::Contensis(pairs));
    (template, objects)
}

/// `"2.0"`, `"2"`, `2` or `2.0` → 2.
pub fn parse_version_no(v: &Json) -> Result<u64, String> {
    const HELP: &str = "must be the subscription's version number, e.g. \"1.0\"";
    match v {
        Json::String(s) => {
            let s = s.trim();
            let major = s.strip_suffix(".0").unwrap_or(s);
            major.parse::<u64>().map_err(|_| HELP.to_string())
        }
        Json::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(u),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f < 9.0e15 => Ok(f as u64),
            _ => Err(HELP.to_string()),
        },
        _ => Err(HELP.to_string()),
    }
}

/// `N` as Contensis writes it: `"N.0"`.
pub fn version_text(n: u64) -> String {
    format!("{n}.0")
}

/// Whole seconds, as Contensis shows them (spec §2.2): one fixed width, so two times compare
/// as text too (a variable fraction made `…:05Z` sort after `…:05.5Z`).
fn time_text(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.0}"))
        .unwrap_or_default()
}

/// The project a subscription belongs to, if it has one.
pub fn project_of(sub: &Subscription) -> Option<&str> {
    sub.tenant
        .as_ref()
        .filter(|t| t.kind == TenantKind::Project)
        .map(|t| t.name.as_str())
}

/// A subscription as the Contensis API shows it (spec §2.2 field order). Secret header values
/// are never shown: a secret header is `{"secret": true}`.
pub fn view(sub: &Subscription) -> Json {
    let mut members: Vec<(String, Json)> = Vec::with_capacity(12);
    let mut push = |k: &str, v: Json| members.push((k.to_string(), v));
    push("id", Json::String(sub.id.to_string()));
    push("name", Json::from(&*sub.name));
    if let Some(d) = sub.description.as_deref() {
        push("description", Json::from(d));
    }
    push("url", Json::from(&*sub.url));
    push("enabled", Json::Bool(sub.enabled));
    push("method", Json::from(sub.method.as_str()));
    push("topics", topics_view(sub));
    let headers = sub
        .headers
        .iter()
        .map(|h| {
            let v = if h.secret {
                object([("secret", Json::Bool(true))])
            } else {
                object([("value", Json::from(h.value.expose()))])
            };
            (h.name.clone(), v)
        })
        .collect();
    push("headers", Json::Object(headers));
    push("templates", templates_view(sub));
    if let Some(ui) = sub.extras.get(extra::UI) {
        push("ui", Json::from_value(ui));
    }
    let v = &sub.version;
    push(
        "version",
        object([
            ("createdBy", Json::from(&*v.created_by)),
            ("created", Json::String(time_text(v.created_at_ms))),
            ("modifiedBy", Json::from(&*v.modified_by)),
            ("modified", Json::String(time_text(v.modified_at_ms))),
            ("versionNo", Json::String(version_text(v.version_no))),
        ]),
    );
    Json::Object(members)
}

/// The topics as written, while they still compile to the stored filters; otherwise topics
/// derived from the filters.
fn topics_view(sub: &Subscription) -> Json {
    if let (Some(project), Some(stored)) = (project_of(sub), sub.extras.get(extra::TOPICS)) {
        let written = Json::from_value(stored);
        let mut errs = Vec::new();
        let parsed = topics::parse_topics(Some(&written), &mut errs);
        if errs.is_empty() && topics::filters(&parsed, project) == *sub.filters {
            return canonical_order(&written);
        }
    }
    topics::derive(&sub.filters)
}

/// Topic members in the documented order (the stored copy went through a sorted map).
fn canonical_order(topics: &Json) -> Json {
    let Json::Array(items) = topics else {
        return topics.clone();
    };
    Json::Array(
        items
            .iter()
            .map(|t| {
                Json::Object(
                    topics::MEMBERS
                        .iter()
                        .filter_map(|(k, _)| t.get(k).map(|v| (k.to_string(), v.clone())))
                        .collect(),
                )
            })
            .collect(),
    )
}

fn templates_view(sub: &Subscription) -> Json {
    let Some(Template::Contensis(pairs)) = sub.template.as_deref() else {
        return Json::Object(Vec::new());
    };
    let objects = sub
        .extras
        .get(extra::TEMPLATE_OBJECTS)
        .and_then(Value::as_array);
    let was_object = |k: &str| objects.is_some_and(|o| o.iter().any(|v| v.as_str() == Some(k)));
    Json::Object(
        pairs
            .iter()
            .map(|(k, text)| {
                let shown = match Json::parse(text.as_bytes()) {
                    Ok(obj @ Json::Object(_)) if was_object(k) => obj,
                    _ => Json::from(text.as_str()),
                };
                (k.clone(), shown)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OptDuration;

    #[test]
    fn times_have_one_width() {
        let cases = [
            (1_598_950_789_000, "2020-09-01T08:59:49Z"),
            (1_598_950_789_500, "2020-09-01T08:59:49Z"),
            (1_598_950_789_999, "2020-09-01T08:59:49Z"),
        ];
        for (ms, want) in cases {
            assert_eq!(time_text(ms), want, "{ms}");
        }
    }
    use crate::model::{Dialect, Format, SubscriptionId, Tenant, Version};

    /// Seed 001's request body with its comments removed.
    pub const SEED_REQUEST: &str = r#"{
"name": {
"en-GB": "name"
},
"description": {
"en-GB": "some description"
},
"url": "https://external.mywebsite.com/handlewebhooks/{/resource/sys.id}",
"enabled": true,
"topics": [
{
"resourceType": "entry",
"event": ["updated", "created"],
"language": ["fr-fr"],
"contentTypeId": ["blog", "news"],
"owner": "t.durden"
},
{
"resourceType": "entry",
"event": ["published"],
"contentTypeId": ["news"],
"owner": "t.durden"
},
{
"resourceType": "contentType",
"event": ["created"]
},
{
"resourceType": "entry",
"event": ["workflowEventRaised"],
"contentTypeId": ["blog"],
"owner": "t.durden",
"workflowEvent" : ["contensisentrybasic.draft.submit", "contensisentryapproval.awaitingApproval.approve"]
},
{
"resourceType": "entry",
"event": ["workflowEventRaised"],
"contentTypeId": ["news"],
"owner": "t.durden",
"workflowEvent" : ["contensisentryapproval.awaitingApproval.declined"]
},
{
"resourceType": "entry",
"event": ["workflowStateChanged"],
"contentTypeId": ["blog"],
"owner": "t.durden",
"workflowState" : ["contensisentryapproval.awaitingApproval"]
}
],
"headers": {
"target": {
"value": "internal"
},
"department": {
"value": "{/resource/department}"
},
"secretHeaderSet": {
"secret": true,
"value": "cs7vdsdvj~8"
},
"secretHeaderGet": {
"secret": true
}
},
"templates": {
"entry": {
"event": "{/event/name}",
"user": "{/user/firstname} {/user/lastname}",
"id": "{/resource/sys/id}",
"title": "{/resource/entryTitle}",
"description": "{/resource/entryDescription}",
"department": "{/resource/department}"
},
"entry.news": {
"event": "{/event/name}",
"id": "{/resource/sys/id}",
"title": "{/resource/entryTitle}",
"headline": "{/resource/headline}"
},
"contentType": "{/resource/}"
}
}"#;

    fn json(text: &str) -> Json {
        Json::parse(text.as_bytes()).unwrap()
    }

    fn stored(fields: Fields) -> Subscription {
        let mut sub = Subscription {
            id: SubscriptionId::generate(),
            dialect: Dialect::Contensis,
            tenant: Some(Box::new(Tenant {
                kind: TenantKind::Project,
                name: "movies".into(),
            })),
            name: Box::default(),
            description: OptText::NONE,
            enabled: true,
            url: Box::default(),
            method: HttpMethod::Post,
            filters: Box::default(),
            headers: Box::default(),
            auth: None,
            signing_secret: None,
            format: Format::Contensis,
            retry: None,
            timeout: OptDuration::NONE,
            connect_timeout: OptDuration::NONE,
            template: None,
            disabled_reason: OptText::NONE,
            version: Version {
                created_by: "t".into(),
                created_at_ms: 1_598_950_789_000,
                modified_by: "t".into(),
                modified_at_ms: 1_598_950_789_000,
                version_no: 1,
            },
            extras: Default::default(),
        };
        fields.apply(&mut sub);
        sub
    }

    #[test]
    fn the_seed_request_parses_and_views_back_as_written() {
        let f = parse(&json(SEED_REQUEST), "movies", None).unwrap();
        assert_eq!(f.name, "name");
        assert_eq!(f.description.as_deref(), Some("some description"));
        assert_eq!(f.method, HttpMethod::Post);
        // 6 topics, none mixing workflow and plain events: 6 filters.
        assert_eq!(f.filters.len(), 6);
        // `secretHeaderGet` has no value and nothing stored: not kept.
        let names: Vec<&str> = f.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["target", "department", "secretHeaderSet"]);
        let Some(Template::Contensis(pairs)) = &f.template else {
            panic!("templates: {:?}", f.template)
        };
        assert_eq!(pairs[0].0, "entry");
        assert_eq!(
            pairs[0].1,
            r#"{"event":"{/event/name}","user":"{/user/firstname} {/user/lastname}","id":"{/resource/sys/id}","title":"{/resource/entryTitle}","description":"{/resource/entryDescription}","department":"{/resource/department}"}"#
        );
        assert_eq!(
            pairs[2],
            ("contentType".to_string(), "{/resource/}".to_string())
        );

        let sub = stored(f);
        let v = view(&sub);
        let text = v.to_text();
        assert!(!text.contains("cs7vdsdvj"), "secret leaked: {text}");
        assert_eq!(v.get("name"), Some(&Json::from("name")));
        assert_eq!(
            v.get("headers").unwrap().to_text(),
            r#"{"target":{"value":"internal"},"department":{"value":"{/resource/department}"},"secretHeaderSet":{"secret":true}}"#
        );
        // Templates come back as written: objects as objects (in order), strings as strings.
        let written = json(SEED_REQUEST);
        assert_eq!(v.get("templates"), written.get("templates"));
        assert_eq!(v.get("topics"), written.get("topics"));
        assert_eq!(
            v.get("version").unwrap().to_text(),
            r#"{"createdBy":"t","created":"2020-09-01T08:59:49Z","modifiedBy":"t","modified":"2020-09-01T08:59:49Z","versionNo":"1.0"}"#
        );
        let keys: Vec<&str> = v
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "name",
                "description",
                "url",
                "enabled",
                "method",
                "topics",
                "headers",
                "templates",
                "version"
            ]
        );
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let long = format!("\"{}\"", "u".repeat(MAX_UI));
        let body = json(
            &r#"{
            "name": {"en-GB": ""}, "description": 5, "url": "", "method": "TRACE", "enabled": "yes",
            "topics": [{"resourceType": "entry", "event": "exploded"}],
            "headers": {"A": "plain", "B": {"value": 1}, "C": {"secret": "yes"}, "D": {"value": "v", "x": 1}},
            "templates": {"widget": "{/}", "entry": 5},
            "ui": [LONG],
            "bogus": 1
        }"#
            .replace("LONG", &long),
        );
        let errs = parse(&body, "movies", None).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for want in [
            "name.en-GB",
            "description",
            "url",
            "method",
            "enabled",
            "topics[0].event",
            "headers.A",
            "headers.B.value",
            "headers.C.secret",
            "headers.D.x",
            "templates.widget",
            "templates.entry",
            "ui",
            "bogus",
        ] {
            assert!(fields.contains(&want), "missing {want} in {fields:?}");
        }
        let errs = parse(&json("{}"), "movies", None).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "url", "topics"]);
        let errs = parse(&json("[]"), "movies", None).unwrap_err();
        assert_eq!(errs[0].field, "");
    }

    #[test]
    fn put_requires_a_version_and_keeps_secret_headers() {
        let sub = stored(parse(&json(SEED_REQUEST), "movies", None).unwrap());
        let mut body = json(SEED_REQUEST);
        // Without `version`: a validation error on version.versionNo.
        let errs = parse(&body, "movies", Some(&sub)).unwrap_err();
        assert_eq!(errs[0].field, "version.versionNo");
        // The secret header sent without a value (and one sent with the docs' mask) keep theirs.
        if let Json::Object(m) = &mut body {
            m.push(("version".into(), json(r#"{"versionNo": "1.0"}"#)));
            let headers = &mut m.iter_mut().find(|(k, _)| k == "headers").unwrap().1;
            *headers = json(
                r#"{"secretHeaderSet": {"secret": true}, "target": {"secret": true, "value": "************"}}"#,
            );
        }
        let f = parse(&body, "movies", Some(&sub)).unwrap();
        assert_eq!(f.version_no, Some(1));
        let kept: Vec<(&str, &str, bool)> = f
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.expose(), h.secret))
            .collect();
        assert_eq!(
            kept,
            [
                ("secretHeaderSet", "cs7vdsdvj~8", true),
                ("target", "internal", true)
            ]
        );
    }

    #[test]
    fn version_numbers() {
        let cases = [
            (r#""1.0""#, Ok(1)),
            (r#""12""#, Ok(12)),
            (r#"3"#, Ok(3)),
            (r#"4.0"#, Ok(4)),
            (r#""1.5""#, Err(())),
            (r#"1.5"#, Err(())),
            (r#""x""#, Err(())),
            (r#"-1"#, Err(())),
            (r#"true"#, Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(
                parse_version_no(&json(text)).map_err(|_| ()),
                want,
                "{text}"
            );
        }
        assert_eq!(version_text(7), "7.0");
    }

    #[test]
    fn plain_strings_and_defaults() {
        let f = parse(
            &json(
                r#"{"name": "n", "description": "d", "url": "https://x.example/h", "method": "put", "enabled": false,
                    "topics": [{"resourceType": "entry", "event": "published"}], "templates": {}, "headers": {}, "ui": false,
                    "id": "ignored", "version": {"versionNo": "9.0"}}"#,
            ),
            "movies",
            None,
        )
        .unwrap();
        assert_eq!(
            (f.name.as_str(), f.description.as_deref()),
            ("n", Some("d"))
        );
        assert_eq!(
            (f.method, f.enabled, f.version_no),
            (HttpMethod::Put, false, None)
        );
        assert_eq!(f.template, None);
        let v = view(&stored(f));
        assert_eq!(v.get("ui"), Some(&Json::Bool(false)));
        assert_eq!(v.get("templates"), Some(&Json::Object(vec![])));
        assert_eq!(v.get("method"), Some(&Json::from("PUT")));
    }

    #[test]
    fn the_view_follows_filters_changed_elsewhere() {
        let mut sub = stored(parse(&json(SEED_REQUEST), "movies", None).unwrap());
        // The native API narrowed the filters: the written topics no longer describe them.
        sub.filters = sub.filters[..1].into();
        let v = view(&sub);
        assert_eq!(
            v.get("topics").unwrap().to_text(),
            r#"[{"resourceType":"entry","event":["updated","created"],"language":["fr-fr"],"contentTypeId":["blog","news"],"owner":["t.durden"]}]"#
        );
    }
}
