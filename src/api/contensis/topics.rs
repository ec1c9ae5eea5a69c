//! Contensis `topics`: the resourceType × event catalogue (spec §2.3), topic validation, and the
//! mapping between topics and Herald's filters.
//!
//! A topic becomes filters on the normalized Contensis event (`crate::decode::contensis`): the
//! types are `<resourceType>.<event>` and the topic's conditions become attributes
//! (`language`, `contenttype`, `owner`, `workflowevent`, `workflowstate`, `entityid`), plus
//! `project = <projectId>` on every filter, which is what keeps one project's events away from
//! another project's subscriptions. A topic whose events include `workflowStateChanged` or
//! `workflowEventRaised` is split into one filter for its plain events and one per workflow
//! event, so `workflowState` narrows only `workflowStateChanged` (as the Contensis docs describe
//! it) and never silently filters a `published` in the same topic.
//!
//! Validation is pure and collects every problem with its path (`topics[2].event[0]`), so a
//! client fixes a body in one round trip. Names compare ASCII case-insensitively (the model
//! lower-cases types and values); the spelling the client wrote is what the API shows back.

use crate::api::error::FieldError;
use crate::model::{AttributeMatch, Filter, TypePattern, event::attr};

use super::json::Json;

/// The events of entries and assets (the API docs group assets with entries).
const ENTRY_EVENTS: &[&str] = &[
    "created",
    "updated",
    "deleted",
    "published",
    "unpublished",
    "archived",
    "unarchived",
    "restored",
    WORKFLOW_EVENT_RAISED,
    WORKFLOW_STATE_CHANGED,
];

const WORKFLOW_EVENT_RAISED: &str = "workflowEventRaised";
const WORKFLOW_STATE_CHANGED: &str = "workflowStateChanged";

/// Which topic conditions a resource type's events can satisfy. The others would never match
/// (the decoder cannot fill them for that resource), so they are refused instead of silently
/// dropping every event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conditions {
    /// entry, asset, form: content type, language, owner, workflow, id.
    Content,
    /// Everything else: the resource id only.
    IdOnly,
}

/// One resource type of the catalogue.
#[derive(Debug)]
pub struct ResourceType {
    /// The canonical spelling (`contentType`, `comment.entry`).
    pub name: &'static str,
    pub events: &'static [&'static str],
    conditions: Conditions,
}

/// The resourceType × event catalogue (spec §2.3). `contentType` includes `published` (the
/// update examples use it although the topics table omits it); `node` includes `moved` and
/// `childOrderChanged` (the update examples).
pub static CATALOGUE: &[ResourceType] = &[
    ResourceType {
        name: "entry",
        events: ENTRY_EVENTS,
        conditions: Conditions::Content,
    },
    ResourceType {
        name: "asset",
        events: ENTRY_EVENTS,
        conditions: Conditions::Content,
    },
    ResourceType {
        name: "form",
        events: &[
            "created",
            "updated",
            "deleted",
            "archived",
            "unarchived",
            "restored",
            WORKFLOW_EVENT_RAISED,
            WORKFLOW_STATE_CHANGED,
        ],
        conditions: Conditions::Content,
    },
    ResourceType {
        name: "contentType",
        events: &["created", "updated", "deleted", "published"],
        conditions: Conditions::IdOnly,
    },
    ResourceType {
        name: "component",
        events: &["created", "updated", "deleted", "published"],
        conditions: Conditions::IdOnly,
    },
    ResourceType {
        name: "node",
        events: &[
            "created",
            "updated",
            "deleted",
            "moved",
            "childOrderChanged",
        ],
        conditions: Conditions::IdOnly,
    },
    ResourceType {
        name: "project",
        events: &["updated"],
        conditions: Conditions::IdOnly,
    },
    ResourceType {
        name: "user",
        events: &["created", "updated", "deleted"],
        conditions: Conditions::IdOnly,
    },
    ResourceType {
        name: "group",
        events: &[
            "created",
            "updated",
            "deleted",
            "userAdded",
            "userRemoved",
            "groupAdded",
            "groupRemoved",
        ],
        conditions: Conditions::IdOnly,
    },
    ResourceType {
        name: "comment.entry",
        events: &[
            "created",
            "replied",
            "updated",
            "resolved",
            "reactivated",
            "deleted",
        ],
        conditions: Conditions::IdOnly,
    },
];

/// Most topics a subscription may have (each becomes up to three filters).
pub const MAX_TOPICS: usize = 64;
/// Most values in one topic condition.
const MAX_VALUES: usize = 256;
/// Longest single value (an owner, a content type id, a workflow event name).
const MAX_VALUE_LEN: usize = 256;

/// The resource type named `name` (any case).
pub fn resource_type(name: &str) -> Option<&'static ResourceType> {
    CATALOGUE.iter().find(|r| r.name.eq_ignore_ascii_case(name))
}

/// For a template key (`entry`, `entry.news`, `comment.entry.x`): the resource type it names,
/// taking the longest resource type the key starts with; `None` when it names none or the
/// content type part is empty.
pub fn template_key_resource(key: &str) -> Option<&'static ResourceType> {
    CATALOGUE
        .iter()
        .filter(|r| {
            let n = r.name.len();
            key.len() >= n
                && key.is_char_boundary(n)
                && key[..n].eq_ignore_ascii_case(r.name)
                && (key.len() == n || (key.as_bytes()[n] == b'.' && key.len() > n + 1))
        })
        .max_by_key(|r| r.name.len())
}

/// A validated topic: canonical resource type and events, conditions as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub resource_type: &'static str,
    pub events: Vec<&'static str>,
    pub language: Vec<String>,
    pub content_type: Vec<String>,
    pub owner: Vec<String>,
    pub workflow_event: Vec<String>,
    pub workflow_state: Vec<String>,
    pub id: Vec<String>,
}

/// The topic members, in the order the API shows them, with the attribute each one filters on.
/// `None`: not a condition (`resourceType`, `event`).
pub const MEMBERS: [(&str, Option<&str>); 8] = [
    ("resourceType", None),
    ("event", None),
    ("language", Some(attr::LANGUAGE)),
    ("contentTypeId", Some(attr::CONTENT_TYPE)),
    ("owner", Some(attr::OWNER)),
    ("workflowEvent", Some(attr::WORKFLOW_EVENT)),
    ("workflowState", Some(attr::WORKFLOW_STATE)),
    ("id", Some(attr::ENTITY_ID)),
];

/// Parses `topics` (required, a non-empty array), reporting every problem into `errs`.
pub fn parse_topics(v: Option<&Json>, errs: &mut Vec<FieldError>) -> Vec<Topic> {
    let items = match v {
        Some(Json::Array(items)) if items.is_empty() => {
            errs.push(FieldError::new(
                "topics",
                "must list at least one topic: a subscription without topics would receive nothing",
            ));
            return Vec::new();
        }
        Some(Json::Array(items)) if items.len() > MAX_TOPICS => {
            errs.push(FieldError::new(
                "topics",
                format!("at most {MAX_TOPICS} topics"),
            ));
            return Vec::new();
        }
        Some(Json::Array(items)) => items,
        None | Some(Json::Null) => {
            errs.push(FieldError::new(
                "topics",
                "is required: an array of {resourceType, event, …} topics",
            ));
            return Vec::new();
        }
        Some(other) => {
            errs.push(FieldError::new(
                "topics",
                format!("must be an array of topics, not {}", other.kind()),
            ));
            return Vec::new();
        }
    };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, t)| parse_topic(t, &format!("topics[{i}]"), errs))
        .collect()
}

fn parse_topic(v: &Json, path: &str, errs: &mut Vec<FieldError>) -> Option<Topic> {
    let Some(members) = v.as_object() else {
        errs.push(FieldError::new(
            path,
            format!("must be an object, not {}", v.kind()),
        ));
        return None;
    };
    let before = errs.len();
    for (k, _) in members {
        if !MEMBERS.iter().any(|(m, _)| m == k) {
            errs.push(FieldError::new(
                format!("{path}.{k}"),
                "unknown topic field; expected resourceType, event, language, contentTypeId, \
                 owner, workflowEvent, workflowState or id",
            ));
        }
    }
    let rt = match v.get("resourceType") {
        Some(Json::String(s)) => match resource_type(s.trim()) {
            Some(r) => Some(r),
            None => {
                errs.push(FieldError::new(
                    format!("{path}.resourceType"),
                    format!(
                        "`{s}` is not a Contensis resource type; expected one of {}",
                        {
                            let names: Vec<&str> = CATALOGUE.iter().map(|r| r.name).collect();
                            names.join(", ")
                        }
                    ),
                ));
                None
            }
        },
        None | Some(Json::Null) => {
            errs.push(FieldError::new(
                format!("{path}.resourceType"),
                "is required",
            ));
            None
        }
        Some(other) => {
            errs.push(FieldError::new(
                format!("{path}.resourceType"),
                format!("must be a string, not {}", other.kind()),
            ));
            None
        }
    };

    let event_path = format!("{path}.event");
    let raw_events = strings(v.get("event"), &event_path, errs);
    if v.get("event").is_none_or(|e| *e == Json::Null) {
        errs.push(FieldError::new(event_path.clone(), "is required"));
    } else if raw_events.as_ref().is_some_and(|e| e.is_empty()) {
        errs.push(FieldError::new(
            event_path.clone(),
            "must name at least one event",
        ));
    }
    let mut events: Vec<&'static str> = Vec::new();
    if let (Some(rt), Some(raw)) = (rt, &raw_events) {
        for (j, (e, is_array)) in raw.iter().enumerate() {
            let p = if *is_array {
                format!("{event_path}[{j}]")
            } else {
                event_path.clone()
            };
            match rt.events.iter().find(|k| k.eq_ignore_ascii_case(e.trim())) {
                Some(k) if !events.contains(k) => events.push(k),
                Some(_) => {}
                None => errs.push(FieldError::new(
                    p,
                    format!(
                        "`{e}` is not an event of resourceType `{}`; expected one of {}",
                        rt.name,
                        rt.events.join(", ")
                    ),
                )),
            }
        }
    }

    // `None`: the condition is malformed (already reported).
    let mut condition = |name: &str| -> Option<Vec<String>> {
        let p = format!("{path}.{name}");
        let values = strings(v.get(name), &p, errs)?;
        if let Some(rt) = rt
            && !values.is_empty()
            && rt.conditions == Conditions::IdOnly
            && name != "id"
        {
            errs.push(FieldError::new(
                p,
                format!(
                    "does not apply to resourceType `{}` (its events carry no {name})",
                    rt.name
                ),
            ));
        }
        Some(values.into_iter().map(|(s, _)| s).collect())
    };
    let language = condition("language");
    let content_type = condition("contentTypeId");
    let owner = condition("owner");
    let workflow_event = condition("workflowEvent");
    let workflow_state = condition("workflowState");
    let id = condition("id");

    // The semi-dependent parameters (spec §2.3), both ways: a workflow event needs its values,
    // and the values only make sense with their event.
    if rt.is_some_and(|r| r.conditions == Conditions::Content) && raw_events.is_some() {
        for (event, name, values) in [
            (WORKFLOW_STATE_CHANGED, "workflowState", &workflow_state),
            (WORKFLOW_EVENT_RAISED, "workflowEvent", &workflow_event),
        ] {
            let Some(values) = values else { continue };
            let has_event = events.contains(&event);
            if has_event && values.is_empty() {
                errs.push(FieldError::new(
                    format!("{path}.{name}"),
                    format!("is required when `event` includes {event}"),
                ));
            } else if !has_event && !values.is_empty() {
                errs.push(FieldError::new(
                    format!("{path}.{name}"),
                    format!(
                        "only applies to the {event} event; add it to `event` or remove {name}"
                    ),
                ));
            }
        }
    }
    if errs.len() != before {
        return None;
    }
    Some(Topic {
        resource_type: rt.map_or("", |r| r.name),
        events,
        language: language.unwrap_or_default(),
        content_type: content_type.unwrap_or_default(),
        owner: owner.unwrap_or_default(),
        workflow_event: workflow_event.unwrap_or_default(),
        workflow_state: workflow_state.unwrap_or_default(),
        id: id.unwrap_or_default(),
    })
}

/// A string or an array of strings (`null` and `[]` mean no condition). Each value is returned
/// with whether it came from an array (for error paths). `None` when the shape is wrong.
fn strings(
    v: Option<&Json>,
    path: &str,
    errs: &mut Vec<FieldError>,
) -> Option<Vec<(String, bool)>> {
    let check = |s: &str, p: String, errs: &mut Vec<FieldError>| -> bool {
        if s.trim().is_empty() {
            errs.push(FieldError::new(p, "must not be empty"));
            false
        } else if s.len() > MAX_VALUE_LEN {
            errs.push(FieldError::new(
                p,
                format!("must be at most {MAX_VALUE_LEN} characters"),
            ));
            false
        } else {
            true
        }
    };
    match v {
        None | Some(Json::Null) => Some(Vec::new()),
        Some(Json::String(s)) => check(s, path.to_string(), errs).then(|| vec![(s.clone(), false)]),
        Some(Json::Array(items)) if items.len() > MAX_VALUES => {
            errs.push(FieldError::new(
                path,
                format!("at most {MAX_VALUES} values"),
            ));
            None
        }
        Some(Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (j, item) in items.iter().enumerate() {
                match item {
                    Json::String(s) if check(s, format!("{path}[{j}]"), errs) => {
                        out.push((s.clone(), true))
                    }
                    Json::String(_) => ok = false,
                    other => {
                        errs.push(FieldError::new(
                            format!("{path}[{j}]"),
                            format!("must be a string, not {}", other.kind()),
                        ));
                        ok = false;
                    }
                }
            }
            ok.then_some(out)
        }
        Some(other) => {
            errs.push(FieldError::new(
                path,
                format!(
                    "must be a string or an array of strings, not {}",
                    other.kind()
                ),
            ));
            None
        }
    }
}

/// The filters a subscription of `project` with these topics gets (see the module docs).
pub fn filters(topics: &[Topic], project: &str) -> Vec<Filter> {
    let mut out = Vec::with_capacity(topics.len());
    for t in topics {
        let plain: Vec<&str> = t
            .events
            .iter()
            .copied()
            .filter(|e| *e != WORKFLOW_EVENT_RAISED && *e != WORKFLOW_STATE_CHANGED)
            .collect();
        let base = [
            (attr::LANGUAGE, &t.language[..]),
            (attr::CONTENT_TYPE, &t.content_type[..]),
            (attr::OWNER, &t.owner[..]),
            (attr::ENTITY_ID, &t.id[..]),
        ];
        let project = [project.to_string()];
        let build = |events: &[&str], extra: Option<(&str, &[String])>| {
            let types = events
                .iter()
                .filter_map(|e| TypePattern::parse(&format!("{}.{e}", t.resource_type)).ok())
                .collect();
            let mut attributes: Vec<AttributeMatch> = base
                .iter()
                .copied()
                .chain(extra)
                .chain([(attr::PROJECT, &project[..])])
                .filter_map(|(name, values)| attribute(name, values))
                .collect();
            attributes.sort_by(|a, b| a.name.cmp(&b.name));
            Filter {
                types,
                attributes: attributes.into(),
            }
        };
        if !plain.is_empty() {
            out.push(build(&plain, None));
        }
        if t.events.contains(&WORKFLOW_STATE_CHANGED) {
            out.push(build(
                &[WORKFLOW_STATE_CHANGED],
                Some((attr::WORKFLOW_STATE, &t.workflow_state)),
            ));
        }
        if t.events.contains(&WORKFLOW_EVENT_RAISED) {
            out.push(build(
                &[WORKFLOW_EVENT_RAISED],
                Some((attr::WORKFLOW_EVENT, &t.workflow_event)),
            ));
        }
    }
    out
}

/// One attribute condition: values trimmed, lower-cased, deduplicated; `None` for no values.
fn attribute(name: &str, values: &[String]) -> Option<AttributeMatch> {
    let mut out: Vec<Box<str>> = Vec::with_capacity(values.len());
    for v in values {
        let v: Box<str> = v.trim().to_ascii_lowercase().into();
        if !out.contains(&v) {
            out.push(v);
        }
    }
    (!out.is_empty()).then(|| AttributeMatch {
        name: name.into(),
        values: out.into(),
    })
}

/// Topics for filters that were not written as Contensis topics (changed through the native
/// API): one topic per filter and resource type, events in their canonical spelling where the
/// catalogue knows them, conditions as stored (lower-case). The `project` condition is implied
/// by the URL and left out. Type patterns a topic cannot express (`*`, `entry.*`) are shown as
/// written, so the view stays honest even though a PUT of it would be refused.
pub fn derive(filters: &[Filter]) -> Json {
    let mut topics = Vec::new();
    for f in filters {
        // Group the filter's types by resource type, keeping first-seen order.
        let mut groups: Vec<(String, Vec<Json>)> = Vec::new();
        for t in &f.types {
            let (rt, ev) = match t {
                TypePattern::Exact(s) => match s.rfind('.') {
                    Some(i) => (canonical_rt(&s[..i]), canonical_event(&s[..i], &s[i + 1..])),
                    None => (s.to_string(), String::new()),
                },
                other => ("*".to_string(), other.to_pattern_string()),
            };
            let slot = match groups.iter().position(|(r, _)| *r == rt) {
                Some(i) => i,
                None => {
                    groups.push((rt, Vec::new()));
                    groups.len() - 1
                }
            };
            if !ev.is_empty() {
                groups[slot].1.push(Json::String(ev));
            }
        }
        if groups.is_empty() {
            groups.push(("*".to_string(), vec![Json::from("*")]));
        }
        for (rt, events) in groups {
            let mut members = vec![
                ("resourceType".to_string(), Json::String(rt)),
                ("event".to_string(), Json::Array(events)),
            ];
            for (member, name) in MEMBERS.iter().skip(2) {
                if let Some(a) = f.attributes.iter().find(|a| Some(&*a.name) == *name) {
                    members.push((member.to_string(), values_json(&a.values)));
                }
            }
            for a in &f.attributes {
                let known = MEMBERS.iter().any(|(_, n)| *n == Some(&*a.name));
                if !known && &*a.name != attr::PROJECT {
                    members.push((a.name.to_string(), values_json(&a.values)));
                }
            }
            topics.push(Json::Object(members));
        }
    }
    Json::Array(topics)
}

fn values_json(values: &[Box<str>]) -> Json {
    Json::Array(values.iter().map(|v| Json::from(&**v)).collect())
}

fn canonical_rt(lower: &str) -> String {
    resource_type(lower).map_or_else(|| lower.to_string(), |r| r.name.to_string())
}

fn canonical_event(rt_lower: &str, ev: &str) -> String {
    resource_type(rt_lower)
        .and_then(|r| r.events.iter().find(|e| e.eq_ignore_ascii_case(ev)))
        .map_or_else(|| ev.to_string(), |e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Topic>, Vec<FieldError>> {
        let v = Json::parse(text.as_bytes()).unwrap();
        let mut errs = Vec::new();
        let t = parse_topics(Some(&v), &mut errs);
        if errs.is_empty() { Ok(t) } else { Err(errs) }
    }

    fn fields(errs: &[FieldError]) -> Vec<&str> {
        errs.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn valid_topics_table() {
        // (topics, expected filter count)
        let cases = [
            (
                r#"[{"resourceType":"entry","event":["updated","created"],"language":["fr-fr"],"contentTypeId":["blog","news"],"owner":"t.durden"}]"#,
                1,
            ),
            (r#"[{"resourceType":"Entry","event":"PUBLISHED"}]"#, 1),
            (
                r#"[{"resourceType":"contentType","event":["created","published"]}]"#,
                1,
            ),
            (
                r#"[{"resourceType":"entry","event":["workflowEventRaised"],"workflowEvent":["a.b.c"]}]"#,
                1,
            ),
            (
                r#"[{"resourceType":"entry","event":["published","workflowStateChanged","workflowEventRaised"],"workflowState":["w.s"],"workflowEvent":["w.s.e"]}]"#,
                3,
            ),
            (
                r#"[{"resourceType":"comment.entry","event":["replied"],"id":"c1"}]"#,
                1,
            ),
            (
                r#"[{"resourceType":"form","event":["created"],"contentTypeId":[],"language":null}]"#,
                1,
            ),
            (
                r#"[{"resourceType":"node","event":["moved","childOrderChanged"]},{"resourceType":"group","event":"userAdded"}]"#,
                2,
            ),
        ];
        for (text, n) in cases {
            let topics = parse(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(filters(&topics, "movies").len(), n, "{text}");
        }
    }

    #[test]
    fn every_error_is_listed_with_its_path() {
        let text = r#"[
            {"resourceType":"entry","event":["updated","exploded"],"owner":5,"bogus":1},
            {"resourceType":"widget","event":"created"},
            {"event":["created"]},
            {"resourceType":"entry"},
            {"resourceType":"entry","event":["workflowStateChanged"]},
            {"resourceType":"entry","event":["workflowEventRaised"],"workflowEvent":[""]},
            {"resourceType":"entry","event":["published"],"workflowState":["x"]},
            {"resourceType":"user","event":["created"],"contentTypeId":["blog"]},
            "entry",
            {"resourceType":"entry","event":[]},
            {"resourceType":"node","event":["published"]},
            {"resourceType":"entry","event":{"a":1},"language":[1]}
        ]"#;
        let errs = parse(text).unwrap_err();
        let got = fields(&errs);
        for want in [
            "topics[0].event[1]",
            "topics[0].owner",
            "topics[0].bogus",
            "topics[1].resourceType",
            "topics[2].resourceType",
            "topics[3].event",
            "topics[4].workflowState",
            "topics[5].workflowEvent[0]",
            "topics[6].workflowState",
            "topics[7].contentTypeId",
            "topics[8]",
            "topics[9].event",
            "topics[10].event[0]",
            "topics[11].event",
            "topics[11].language[0]",
        ] {
            assert!(got.contains(&want), "missing {want} in {got:?}");
        }
        let unknown = errs
            .iter()
            .find(|e| e.field == "topics[0].event[1]")
            .unwrap();
        assert!(
            unknown.message.contains("`exploded`"),
            "{}",
            unknown.message
        );
    }

    #[test]
    fn topics_shape_errors() {
        for (v, want) in [
            (None, "is required"),
            (Some(Json::Null), "is required"),
            (Some(Json::Array(vec![])), "at least one topic"),
            (Some(Json::from("entry")), "must be an array"),
        ] {
            let mut errs = Vec::new();
            parse_topics(v.as_ref(), &mut errs);
            assert_eq!(errs.len(), 1);
            assert_eq!(errs[0].field, "topics");
            assert!(errs[0].message.contains(want), "{}", errs[0].message);
        }
    }

    #[test]
    fn filters_split_workflow_events_and_carry_the_project() {
        let topics = parse(
            r#"[{"resourceType":"entry","event":["published","workflowStateChanged"],"contentTypeId":["Blog","blog"],"owner":"T.Durden","workflowState":["contensisEntryApproval.awaitingApproval"]}]"#,
        )
        .unwrap();
        let f = filters(&topics, "movieDb");
        assert_eq!(f.len(), 2);
        let names = |f: &Filter| -> Vec<(String, Vec<String>)> {
            f.attributes
                .iter()
                .map(|a| {
                    (
                        a.name.to_string(),
                        a.values.iter().map(|v| v.to_string()).collect(),
                    )
                })
                .collect()
        };
        assert_eq!(*f[0].types, [TypePattern::Exact("entry.published".into())]);
        assert_eq!(
            names(&f[0]),
            vec![
                ("contenttype".into(), vec!["blog".into()]),
                ("owner".into(), vec!["t.durden".into()]),
                ("project".into(), vec!["moviedb".into()]),
            ]
        );
        assert_eq!(
            *f[1].types,
            [TypePattern::Exact("entry.workflowstatechanged".into())]
        );
        assert_eq!(
            names(&f[1]),
            vec![
                ("contenttype".into(), vec!["blog".into()]),
                ("owner".into(), vec!["t.durden".into()]),
                ("project".into(), vec!["moviedb".into()]),
                (
                    "workflowstate".into(),
                    vec!["contensisentryapproval.awaitingapproval".into()]
                ),
            ]
        );
    }

    #[test]
    fn filters_match_decoded_events() {
        use crate::model::{Event, InputKind};
        let topics = parse(
            r#"[{"resourceType":"entry","event":["published"],"contentTypeId":["news"],"language":["en-GB"]}]"#,
        )
        .unwrap();
        let f = filters(&topics, "movieDb");
        let event = |attrs: &[(&str, &str)]| Event {
            seq: 1,
            id: "1".into(),
            source: "contensis".into(),
            kind: InputKind::Contensis,
            event_type: "entry.published".into(),
            time: None,
            received_at_ms: 0,
            attributes: attrs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            payload: bytes::Bytes::new(),
        };
        let cases = [
            (
                vec![
                    ("contenttype", "news"),
                    ("language", "en-gb"),
                    ("project", "moviedb"),
                ],
                true,
            ),
            (
                vec![
                    ("contenttype", "blog"),
                    ("language", "en-gb"),
                    ("project", "moviedb"),
                ],
                false,
            ),
            (
                vec![
                    ("contenttype", "news"),
                    ("language", "fr-fr"),
                    ("project", "moviedb"),
                ],
                false,
            ),
            (
                vec![
                    ("contenttype", "news"),
                    ("language", "en-gb"),
                    ("project", "other"),
                ],
                false,
            ),
            (vec![("contenttype", "news"), ("language", "en-gb")], false),
        ];
        for (attrs, want) in cases {
            let e = event(&attrs);
            assert_eq!(
                crate::model::filter::any_matches(&f, &e, "entry.published"),
                want,
                "{attrs:?}"
            );
        }
    }

    #[test]
    fn template_keys_name_a_resource_type() {
        let cases = [
            ("entry", Some("entry")),
            ("entry.news", Some("entry")),
            ("Entry.News", Some("entry")),
            ("contentType", Some("contentType")),
            ("comment.entry", Some("comment.entry")),
            ("comment.entry.x", Some("comment.entry")),
            ("entry.", None),
            ("entries", None),
            ("widget.news", None),
            ("", None),
            ("é", None),
        ];
        for (key, want) in cases {
            assert_eq!(template_key_resource(key).map(|r| r.name), want, "{key}");
        }
    }

    #[test]
    fn derived_topics_use_canonical_names() {
        let topics = parse(
            r#"[{"resourceType":"entry","event":["workflowStateChanged"],"workflowState":["w.s"]},{"resourceType":"contentType","event":"created"}]"#,
        )
        .unwrap();
        let f = filters(&topics, "p");
        let d = derive(&f);
        assert_eq!(
            d.to_text(),
            r#"[{"resourceType":"entry","event":["workflowStateChanged"],"workflowState":["w.s"]},{"resourceType":"contentType","event":["created"]}]"#
        );
        let any = derive(&[Filter::default()]);
        assert_eq!(any.to_text(), r#"[{"resourceType":"*","event":["*"]}]"#);
    }
}
