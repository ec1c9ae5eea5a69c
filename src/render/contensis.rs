//! Contensis delivery: the event context templates see, the default webhook request structure
//! (spec §2.5), and which of a subscription's `templates` an event gets (spec §2.4).
//!
//! **The event context** `{"event", "user", "resource"}` is what `{/pointer}` placeholders
//! resolve against ([`context`]):
//! - an event ingested from Contensis as a full context is its own context, as received;
//! - an event ingested as the default request structure is mapped back: `event` gets `id`,
//!   `name`, `dateTime`, `resourceType`, `resourceId`, `resourceUrl` from `eventId`,
//!   `eventName`, `datetime`, `resource.type`, `resource.id`, `resource.url`; `user` is
//!   `invokedBy`; `resource` is `{"sys": {id, projectId, contentTypeId, language, dataFormat},
//!   "entryTitle"}` from the structure's `resource`;
//! - any other event is given the same shape (INFERRED): `event` = `{id, name (the part of the
//!   event type after its last `.` or `:`), subscriptionId, dateTime (the producer's time, else
//!   when Herald accepted it), resourceType (the part before), resourceId (the `entityid`
//!   attribute), resourceUrl: null}`, `user` = `{}`, `resource` = the payload (a CloudEvent's
//!   `data` when it has one).
//!
//! In every case `event.subscriptionId` is this subscription's id (hyphenated), never the
//! producer's.
//!
//! **The default request structure** ([`write_default`]) is rendered with the layout of the
//! template Contensis documents (§2.5). Its values come from the context — every value a JSON
//! string, as the Liquid template writes them, `""` when missing (Herald escapes them, so the
//! body stays valid JSON even when a title holds a quote); `datetime` is reformatted to UTC with
//! milliseconds (`%Y-%m-%dT%H:%M:%S.%LZ`). Where the context has no `resource.sys` (events from
//! other CMSs), `projectId`, `contentTypeId`, `language` and `id` fall back to the `project`,
//! `contenttype`, `language` and `entityid` attributes (lower-case). For resource types other
//! than `entry` and `asset` (an asset is an entry in Contensis), `resource.type` is the resource
//! type and the entry-only `contentTypeId`, `title` and `language` are left out (INFERRED: only
//! the entries structure is documented). An event ingested as the default structure is passed
//! through as received with `subscriptionId` set.
//!
//! **Template choice** ([`Templates::select`]): the key `"<resourceType>.<contentTypeId>"` first,
//! then `"<resourceType>"`, compared ASCII case-insensitively (topic filters are); no match
//! sends the format's default body.

use std::borrow::Cow;
use std::sync::LazyLock;

use smallvec::SmallVec;

use crate::model::event::attr;
use crate::model::{Event, InputKind};

use super::body::subject;
use super::json::{self, Kind, Place, SetMember, Value};
use super::pointer::{self, Lookups};

/// `content-type` of every Contensis request unless a header overrides it (spec §2.6).
pub(crate) const CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// Which Contensis body an event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `{"event": {…}, "user": {…}, "resource": {…}}`.
    Context,
    /// `{"eventId", "eventName", …, "resource": {…}}`.
    DefaultStructure,
    /// Not from Contensis (or neither shape).
    Other,
}

fn shape(event: &Event) -> Shape {
    if event.kind != InputKind::Contensis {
        return Shape::Other;
    }
    let payload = &event.payload[..];
    let (mut context, mut default) = (false, false);
    let _ = json::scan_object(payload, |m| match &payload[m.key.clone()] {
        b"event" => context |= payload.get(m.value.start) == Some(&b'{'),
        b"eventName" => default = true,
        _ => {}
    });
    match (context, default) {
        (true, _) => Shape::Context,
        (false, true) => Shape::DefaultStructure,
        (false, false) => Shape::Other,
    }
}

/// The event context of `event` for a subscription whose id is `sub_id` (JSON-quoted).
/// `embeds_event`: a template embeds the whole context or the whole `event`, so a received
/// context must have its `event.subscriptionId` replaced (otherwise the pointer lookups see to
/// that and the payload is used without a copy).
pub(crate) fn context<'a>(event: &'a Event, sub_id: &[u8], embeds_event: bool) -> Cow<'a, [u8]> {
    match shape(event) {
        Shape::Context if !embeds_event => Cow::Borrowed(&event.payload[..]),
        Shape::Context => match with_subscription_id(&event.payload, sub_id) {
            Some(doc) => Cow::Owned(doc),
            None => Cow::Borrowed(&event.payload[..]),
        },
        Shape::DefaultStructure => Cow::Owned(from_default_structure(event, sub_id)),
        Shape::Other => Cow::Owned(from_event(event, sub_id)),
    }
}

/// A received context with `event.subscriptionId` set to `sub_id`, every other byte kept.
fn with_subscription_id(payload: &[u8], sub_id: &[u8]) -> Option<Vec<u8>> {
    let mut event = None;
    json::scan_object(payload, |m| {
        if &payload[m.key.clone()] == b"event" {
            event = Some(m.value.clone());
        }
    })
    .ok()?;
    let event = event?;
    let set = [SetMember {
        key: "subscriptionId",
        value: Value::Json(sub_id),
        place: Place::Last,
    }];
    let mut out = Vec::with_capacity(payload.len() + sub_id.len() + 20);
    out.extend_from_slice(&payload[..event.start]);
    json::write_with_members(&payload[event.clone()], &set, false, &mut out).ok()?;
    out.extend_from_slice(&payload[event.end..]);
    Some(out)
}

/// The pointers read from a default-structure body to map it back to a context.
struct FromDefault {
    lookups: Lookups,
    ids: [usize; 10],
}

static FROM_DEFAULT: LazyLock<FromDefault> = LazyLock::new(|| {
    let mut lookups = Lookups::new();
    let ids = [
        lookups.add(&["eventId"]),
        lookups.add(&["eventName"]),
        lookups.add(&["datetime"]),
        lookups.add(&["invokedBy"]),
        lookups.add(&["resource", "id"]),
        lookups.add(&["resource", "url"]),
        lookups.add(&["resource", "projectId"]),
        lookups.add(&["resource", "contentTypeId"]),
        lookups.add(&["resource", "language"]),
        lookups.add(&["resource", "title"]),
    ];
    FromDefault { lookups, ids }
});

fn from_default_structure(event: &Event, sub_id: &[u8]) -> Vec<u8> {
    let d = &*FROM_DEFAULT;
    let mut v: SmallVec<[Option<&[u8]>; 16]> = SmallVec::new();
    d.lookups.resolve(&event.payload, sub_id, &mut v);
    let [
        id,
        name,
        time,
        user,
        res_id,
        url,
        project,
        content_type,
        language,
        title,
    ] = d.ids.map(|i| v[i]);
    let raw = |out: &mut Vec<u8>, x: Option<&[u8]>| out.extend_from_slice(x.unwrap_or(b"null"));
    let rt = event.resource_type();
    let mut out = Vec::with_capacity(event.payload.len() + 256);
    out.extend_from_slice(br#"{"event":{"id":"#);
    raw(&mut out, id);
    out.extend_from_slice(br#","name":"#);
    raw(&mut out, name);
    out.extend_from_slice(br#","subscriptionId":"#);
    out.extend_from_slice(sub_id);
    out.extend_from_slice(br#","dateTime":"#);
    raw(&mut out, time);
    out.extend_from_slice(br#","resourceType":"#);
    json::write_str(&mut out, rt);
    out.extend_from_slice(br#","resourceId":"#);
    raw(&mut out, res_id);
    out.extend_from_slice(br#","resourceUrl":"#);
    raw(&mut out, url);
    out.extend_from_slice(br#"},"user":"#);
    out.extend_from_slice(user.unwrap_or(b"{}"));
    out.extend_from_slice(br#","resource":{"sys":{"id":"#);
    raw(&mut out, res_id);
    out.extend_from_slice(br#","projectId":"#);
    raw(&mut out, project);
    out.extend_from_slice(br#","contentTypeId":"#);
    raw(&mut out, content_type);
    out.extend_from_slice(br#","language":"#);
    raw(&mut out, language);
    out.extend_from_slice(br#","dataFormat":"#);
    json::write_str(&mut out, rt);
    out.extend_from_slice(br#"},"entryTitle":"#);
    raw(&mut out, title);
    out.extend_from_slice(b"}}");
    out
}

fn from_event(event: &Event, sub_id: &[u8]) -> Vec<u8> {
    let resource = subject(event);
    let mut out = Vec::with_capacity(resource.len() + event.id.len() + 256);
    out.extend_from_slice(br#"{"event":{"id":"#);
    json::write_str(&mut out, &event.id);
    out.extend_from_slice(br#","name":"#);
    json::write_str(&mut out, event.action());
    out.extend_from_slice(br#","subscriptionId":"#);
    out.extend_from_slice(sub_id);
    out.extend_from_slice(br#","dateTime":"#);
    match &event.time {
        Some(t) => json::write_str(&mut out, t),
        None => match jiff::Timestamp::from_millisecond(event.received_at_ms) {
            Ok(ts) => json::write_str(&mut out, &ts.to_string()),
            Err(_) => out.extend_from_slice(b"null"),
        },
    }
    out.extend_from_slice(br#","resourceType":"#);
    json::write_str(&mut out, event.resource_type());
    out.extend_from_slice(br#","resourceId":"#);
    match event.attribute(attr::ENTITY_ID).next() {
        Some(id) => json::write_str(&mut out, id),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(br#","resourceUrl":null},"user":{},"resource":"#);
    out.extend_from_slice(resource);
    out.push(b'}');
    out
}

/// The pointers the default request structure reads from a context.
struct Default {
    lookups: Lookups,
    ids: [usize; 14],
}

static DEFAULT: LazyLock<Default> = LazyLock::new(|| {
    let mut lookups = Lookups::new();
    let ids = [
        lookups.add(&["event", "id"]),
        lookups.add(&["event", "name"]),
        lookups.add(&["event", "dateTime"]),
        lookups.add(&["user", "username"]),
        lookups.add(&["user", "firstName"]),
        lookups.add(&["user", "lastName"]),
        lookups.add(&["event", "resourceId"]),
        lookups.add(&["resource", "sys", "id"]),
        lookups.add(&["resource", "sys", "projectId"]),
        lookups.add(&["resource", "sys", "contentTypeId"]),
        lookups.add(&["resource", "entryTitle"]),
        lookups.add(&["resource", "sys", "language"]),
        lookups.add(&["event", "resourceUrl"]),
        lookups.add(&["event", "subscriptionId"]),
    ];
    Default { lookups, ids }
});

/// Writes the default request structure of `event` into `out`. `doc` is its context
/// ([`context`]); `sub_id` this subscription's id, JSON-quoted.
pub(crate) fn write_default(event: &Event, doc: &[u8], sub_id: &[u8], out: &mut Vec<u8>) {
    if shape(event) == Shape::DefaultStructure {
        let set = [SetMember {
            key: "subscriptionId",
            value: Value::Json(sub_id),
            place: Place::Last,
        }];
        if json::write_with_members(&event.payload, &set, true, out).is_ok() {
            return;
        }
        out.clear();
    }
    let d = &*DEFAULT;
    let mut v: SmallVec<[Option<&[u8]>; 16]> = SmallVec::new();
    d.lookups.resolve(doc, sub_id, &mut v);
    let [
        id,
        name,
        time,
        username,
        first,
        last,
        res_id,
        sys_id,
        project,
        content_type,
        title,
        language,
        url,
        subscription,
    ] = d.ids.map(|i| present(v[i]));
    let attr = |name: &'static str| event.attribute(name).next().map(str::as_bytes);
    let rt = event.resource_type();
    out.reserve(512);
    out.extend_from_slice(b"{\n  \"eventId\": ");
    write_string(out, id);
    out.extend_from_slice(b",\n  \"eventName\": ");
    write_string(out, name);
    out.extend_from_slice(b",\n  \"subscriptionId\": ");
    write_string(out, subscription);
    out.extend_from_slice(b",\n  \"datetime\": ");
    write_datetime(out, time);
    out.extend_from_slice(b",\n  \"invokedBy\": { \"username\": ");
    write_string(out, username);
    out.extend_from_slice(b", \"firstName\": ");
    write_string(out, first);
    out.extend_from_slice(b", \"lastName\": ");
    write_string(out, last);
    out.extend_from_slice(b" },\n  \"resource\": {\n    \"id\": ");
    write_string_or(out, res_id.or(sys_id), attr(attr::ENTITY_ID));
    out.extend_from_slice(b",\n    \"type\": ");
    json::write_str(out, rt);
    out.extend_from_slice(b",\n    \"projectId\": ");
    write_string_or(out, project, attr(attr::PROJECT));
    if matches!(rt, "entry" | "asset") {
        out.extend_from_slice(b",\n    \"contentTypeId\": ");
        write_string_or(out, content_type, attr(attr::CONTENT_TYPE));
        out.extend_from_slice(b",\n    \"title\": ");
        write_string(out, title);
        out.extend_from_slice(b",\n    \"language\": ");
        write_string_or(out, language, attr(attr::LANGUAGE));
    }
    out.extend_from_slice(b",\n    \"url\": ");
    write_string(out, url);
    out.extend_from_slice(b"\n  }\n}");
}

/// `v` unless it is `null`.
fn present(v: Option<&[u8]>) -> Option<&[u8]> {
    v.filter(|v| json::kind(v) != Kind::Null)
}

/// A context value as a JSON string, the way `"{{value}}"` in a Liquid template writes it:
/// `""` when missing.
fn write_string(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(v) if json::kind(v) == Kind::String => out.extend_from_slice(v),
        other => {
            out.push(b'"');
            pointer::write_in_string(other, out);
            out.push(b'"');
        }
    }
}

/// [`write_string`], or the attribute `fallback` when the context has no value.
fn write_string_or(out: &mut Vec<u8>, v: Option<&[u8]>, fallback: Option<&[u8]>) {
    match (v, fallback) {
        (None, Some(f)) => {
            out.push(b'"');
            json::write_escaped(out, f);
            out.push(b'"');
        }
        (v, _) => write_string(out, v),
    }
}

/// `event.dateTime | date.to_string '%Y-%m-%dT%H:%M:%S.%LZ'`: UTC, milliseconds. A value that
/// is not an RFC 3339 time is written as it is.
fn write_datetime(out: &mut Vec<u8>, v: Option<&[u8]>) {
    if let Some(raw) = v
        && json::kind(raw) == Kind::String
        && let Ok(ts) = json::unescape(raw).parse::<jiff::Timestamp>()
    {
        json::write_str(out, &ts.strftime("%Y-%m-%dT%H:%M:%S.%3fZ").to_string());
        return;
    }
    write_string(out, v);
}

/// A subscription's `templates`, compiled, in the order the user gave them.
#[derive(Debug)]
pub(crate) struct Templates {
    variants: Box<[(Box<str>, pointer::Template)]>,
}

impl Templates {
    pub(crate) fn new(variants: Vec<(Box<str>, pointer::Template)>) -> Templates {
        Templates {
            variants: variants.into_boxed_slice(),
        }
    }

    /// The template for `event`: `"<resourceType>.<contentTypeId>"`, else `"<resourceType>"`.
    pub(crate) fn select(&self, event: &Event) -> Option<&pointer::Template> {
        let rt = event.resource_type().as_bytes();
        let find = |matches: &dyn Fn(&[u8]) -> bool| {
            self.variants
                .iter()
                .find(|(k, _)| matches(k.as_bytes()))
                .map(|(_, t)| t)
        };
        if let Some(ct) = event.attribute(attr::CONTENT_TYPE).next() {
            let ct = ct.as_bytes();
            let exact = |k: &[u8]| {
                k.len() == rt.len() + 1 + ct.len()
                    && k[..rt.len()].eq_ignore_ascii_case(rt)
                    && k[rt.len()] == b'.'
                    && k[rt.len() + 1..].eq_ignore_ascii_case(ct)
            };
            if let Some(t) = find(&exact) {
                return Some(t);
            }
        }
        find(&|k: &[u8]| k.eq_ignore_ascii_case(rt))
    }

    /// Whether any template embeds the whole context or the whole `event`.
    pub(crate) fn embeds_event(&self) -> bool {
        self.variants.iter().any(|(_, t)| t.embeds_event())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attributes;
    use crate::render::fixtures::{
        CLOUDEVENT, CONTENSIS_CONTENT_TYPE, CONTENSIS_CONTEXT, CONTENSIS_DEFAULT_STRUCTURE,
        SEED_TEMPLATES, SITECORE_ITEM_ADDED, SUB_ID, event,
    };

    fn quoted_sub() -> Box<[u8]> {
        json::quoted(SUB_ID)
    }

    /// An event as `decode::contensis` makes it (the attributes template choice reads).
    fn contensis(event_type: &str, payload: &str, attrs: &[(&str, &str)]) -> Event {
        let mut e = event(InputKind::Contensis, event_type, payload);
        e.attributes = attrs
            .iter()
            .map(|(n, v)| ((*n).into(), (*v).into()))
            .collect::<Attributes>();
        e
    }

    fn default_body(e: &Event) -> String {
        let sub = quoted_sub();
        let doc = context(e, &sub, false);
        let mut out = Vec::new();
        write_default(e, &doc, &sub, &mut out);
        let text = String::from_utf8(out).expect("utf-8");
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        text
    }

    #[test]
    fn default_structure_from_a_context() {
        let e = contensis(
            "entry.published",
            CONTENSIS_CONTEXT,
            &[("contenttype", "news")],
        );
        // The layout of the documented template; values from the context, escaped; the time
        // in UTC with milliseconds; this subscription's id, not the producer's.
        let want = r#"{
  "eventId": "5a8c7e2d-1f3b-4c6a-9e0d-2b4f6a8c0e1d",
  "eventName": "published",
  "subscriptionId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "datetime": "2024-05-01T10:15:30.123Z",
  "invokedBy": { "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" },
  "resource": {
    "id": "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
    "type": "entry",
    "projectId": "movieDb",
    "contentTypeId": "news",
    "title": "Fight \"Club\"",
    "language": "en-GB",
    "url": "https://cms-example.cloud.contensis.com/api/management/projects/movieDb/entries/d69ad539-0e3a-4d7f-9c9d-1fad1b39faad"
  }
}"#;
        assert_eq!(default_body(&e), want);
    }

    #[test]
    fn default_structure_for_other_resource_types_and_inputs() {
        // A content type: no entry-only keys, missing values empty, whole seconds get `.000`.
        let ct = contensis("contentType.created", CONTENSIS_CONTENT_TYPE, &[]);
        let ct_want = r#"{
  "eventId": "e-2",
  "eventName": "created",
  "subscriptionId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "datetime": "2024-05-02T08:00:00.000Z",
  "invokedBy": { "username": "m.singer", "firstName": "", "lastName": "" },
  "resource": {
    "id": "blogPost",
    "type": "contentType",
    "projectId": "",
    "url": ""
  }
}"#;
        // A Sitecore item: the context is built from the event, `sys` values from attributes.
        let mut sc = event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED);
        sc.id = "evt-\"9\"".into();
        sc.time = Some("not a time".into());
        sc.attributes = [
            ("entityid", "4c3a401e-8b78-440a-bf88-736a71ce8e5a"),
            ("language", "en"),
            ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
        ]
        .into_iter()
        .map(|(n, v)| (n.into(), v.into()))
        .collect();
        let sc_want = r#"{
  "eventId": "evt-\"9\"",
  "eventName": "added",
  "subscriptionId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "datetime": "not a time",
  "invokedBy": { "username": "", "firstName": "", "lastName": "" },
  "resource": {
    "id": "4c3a401e-8b78-440a-bf88-736a71ce8e5a",
    "type": "item",
    "projectId": "",
    "url": ""
  }
}"#;
        // A CloudEvent about an entry keeps the entry keys (values from attributes).
        let mut ce = event(InputKind::CloudEvent, "entry.published", CLOUDEVENT);
        ce.attributes = [("contenttype", "blogpost"), ("project", "website")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        ce.received_at_ms = 1_714_557_600_000;
        let ce_want = r#"{
  "eventId": "evt-1",
  "eventName": "published",
  "subscriptionId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "datetime": "2024-05-01T10:00:00.000Z",
  "invokedBy": { "username": "", "firstName": "", "lastName": "" },
  "resource": {
    "id": "",
    "type": "entry",
    "projectId": "website",
    "contentTypeId": "blogpost",
    "title": "",
    "language": "",
    "url": ""
  }
}"#;
        for (e, want) in [(ct, ct_want), (sc, sc_want), (ce, ce_want)] {
            assert_eq!(default_body(&e), want, "{}", e.event_type);
        }
    }

    #[test]
    fn a_received_default_structure_passes_through() {
        let e = contensis(
            "entry.workflowStateChanged",
            CONTENSIS_DEFAULT_STRUCTURE,
            &[("contenttype", "blog")],
        );
        let want = CONTENSIS_DEFAULT_STRUCTURE.replace(
            r#""subscriptionId": "3a7ce8e3-9c9f-4242-be20-35edb29c4a07""#,
            r#""subscriptionId": "95398c44-f232-41a8-b947-8aefec4ce6eb""#,
        );
        assert_ne!(want, CONTENSIS_DEFAULT_STRUCTURE);
        assert_eq!(default_body(&e), want);
    }

    #[test]
    fn contexts_per_input() {
        let sub = quoted_sub();
        // A received context is used as is, without a copy…
        let e = contensis("entry.published", CONTENSIS_CONTEXT, &[]);
        assert!(
            matches!(context(&e, &sub, false), Cow::Borrowed(b) if b == CONTENSIS_CONTEXT.as_bytes())
        );
        // …unless a template embeds its `event`: then only the subscription id changes.
        let rewritten = context(&e, &sub, true);
        assert_eq!(
            std::str::from_utf8(&rewritten).expect("utf-8"),
            CONTENSIS_CONTEXT.replace(
                r#""subscriptionId": "3a7ce8e3-9c9f-4242-be20-35edb29c4a07""#,
                r#""subscriptionId": "95398c44-f232-41a8-b947-8aefec4ce6eb""#
            )
        );
        // A default structure maps back to a context.
        let d = contensis(
            "entry.workflowStateChanged",
            CONTENSIS_DEFAULT_STRUCTURE,
            &[],
        );
        assert_eq!(
            std::str::from_utf8(&context(&d, &sub, false)).expect("utf-8"),
            r#"{"event":{"id":"0f6f4c1e-8d2b-4a9e-b3c7-5e1d9a2f4b6c","name":"workflowStateChanged","subscriptionId":"95398c44-f232-41a8-b947-8aefec4ce6eb","dateTime":"2024-05-01T10:15:30.123Z","resourceType":"entry","resourceId":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","resourceUrl":"https://cms-example.cloud.contensis.com/api/management/projects/movieDb/entries/d69ad539"},"user":{ "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" },"resource":{"sys":{"id":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","projectId":"movieDb","contentTypeId":"blog","language":"fr-FR","dataFormat":"entry"},"entryTitle":"Hello"}}"#
        );
        // Anything else: built from the event; a CloudEvent's data is the resource.
        let mut ce = event(InputKind::CloudEvent, "entry.published", CLOUDEVENT);
        ce.time = Some("2024-05-01T10:00:00Z".into());
        ce.attributes = [("entityid", "e1")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        assert_eq!(
            std::str::from_utf8(&context(&ce, &sub, false)).expect("utf-8"),
            r#"{"event":{"id":"evt-1","name":"published","subscriptionId":"95398c44-f232-41a8-b947-8aefec4ce6eb","dateTime":"2024-05-01T10:00:00Z","resourceType":"entry","resourceId":"e1","resourceUrl":null},"user":{},"resource":{"entryId": "e1", "title": "Caf\u00e9 \"Ole\"", "WebhookItemId": "stale"}}"#
        );
        for doc in [context(&d, &sub, false), context(&ce, &sub, false)] {
            serde_json::from_slice::<serde_json::Value>(&doc).expect("valid JSON");
        }
    }

    fn seed_templates() -> Templates {
        Templates::new(
            SEED_TEMPLATES
                .iter()
                .map(|(k, t)| ((*k).into(), pointer::Template::compile_body(t).expect(k)))
                .collect(),
        )
    }

    fn render_selected(templates: &Templates, e: &Event) -> Option<String> {
        let sub = quoted_sub();
        let t = templates.select(e)?;
        let doc = context(e, &sub, templates.embeds_event());
        let mut out = Vec::new();
        t.render(&doc, &sub, &mut out).expect("renders");
        Some(String::from_utf8(out).expect("utf-8"))
    }

    #[test]
    fn seed_templates_are_chosen_and_rendered() {
        let templates = seed_templates();
        let cases = [
            // `entry.news` beats `entry`.
            (
                contensis(
                    "entry.published",
                    CONTENSIS_CONTEXT,
                    &[("contenttype", "news")],
                ),
                Some(
                    r#"{"event":"published","id":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","title":"Fight \"Club\"","headline":"Soap & <more>"}"#,
                ),
            ),
            // Another content type: `entry`. The seed spells `firstname` where the context has
            // `firstName`: a missing value renders empty inside a string.
            (
                contensis(
                    "entry.published",
                    CONTENSIS_CONTEXT,
                    &[("contenttype", "movie")],
                ),
                Some(
                    r#"{"event":"published","user":" ","id":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","title":"Fight \"Club\"","description":"The first rule","department":"Films"}"#,
                ),
            ),
            // Keys compare case-insensitively.
            (
                contensis(
                    "ENTRY.published",
                    CONTENSIS_CONTEXT,
                    &[("contenttype", "NEWS")],
                ),
                Some(
                    r#"{"event":"published","id":"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad","title":"Fight \"Club\"","headline":"Soap & <more>"}"#,
                ),
            ),
            // `"{/resource/}"`: the whole resource object, byte for byte.
            (
                contensis("contentType.created", CONTENSIS_CONTENT_TYPE, &[]),
                Some(r#"{ "id": "blogPost", "name": { "en-GB": "Blog post" }, "fields": [] }"#),
            ),
            // No template for assets: the default body is sent instead.
            (contensis("asset.updated", CONTENSIS_CONTEXT, &[]), None),
        ];
        for (e, want) in cases {
            assert_eq!(
                render_selected(&templates, &e).as_deref(),
                want,
                "{}",
                e.event_type
            );
        }
    }
}
