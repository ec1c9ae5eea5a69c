//! Request bodies: which shape a subscription asked for ([`BodyPlan`], compiled once) and the
//! per-delivery builders that turn an event into bytes.
//!
//! Every builder reuses the producer's bytes instead of re-serializing them: pass-through and
//! `raw` bodies are `Bytes` clones (no copy at all), the CloudEvents envelope embeds the original
//! payload verbatim as `data`, and the Sitecore shape splices three member values into the
//! original body with [`super::json`]. Each built body is written into one buffer sized up front,
//! so a delivery costs one allocation for its body.
//!
//! Each body kind is a [`BodyPlan`] variant with its compiled form inside: the formats, a
//! Mustache `custom_payload` (over the DatoCMS default body, [`super::datocms`]) and Contensis
//! `templates` (over the Contensis event context, [`super::contensis`]). Template bodies cost
//! one more step: the Mustache data is the default DatoCMS body parsed into a JSON value once per
//! render ([`Scope`], shared with a templated URL), and a Contensis context is the payload itself
//! (or, for other inputs, one small document built per render) read by byte-level lookups.

use bytes::Bytes;
use http::HeaderValue;

use crate::model::{Event, Format, InputKind, Subscription, Template};

use super::json::{self, Place, ScanError, SetMember, Value};
use super::plan::{AttemptCtx, FieldError, FieldProblem};
use super::{contensis, datocms, mustache, pointer};

/// Why an event's payload could not be turned into the body a subscription asked for. Retrying
/// will not help: the payload does not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// It does not have the JSON structure the body shape needs (a Sitecore body that is not an
    /// object, say).
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// A template needs it as JSON data and it is not valid JSON.
    #[error("not valid JSON: {0}")]
    Json(Box<str>),
    /// The rendered body would be larger than [`MAX_BODY_BYTES`] (a template that repeats a
    /// large value many times).
    #[error("the rendered body would exceed {MAX_BODY_BYTES} bytes")]
    TooLarge,
}

/// Largest body a template may render. Bounds the memory one render can take whatever the
/// template and payload (ingest bodies are 10 MiB at most by default).
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// `content-type` of a structured-mode CloudEvent.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";
const APPLICATION_JSON: &str = "application/json";

/// Attributes an event may carry are scanned up to this many when they become CloudEvents
/// extensions (repeated names are skipped, which is a scan over those already written).
const MAX_EXTENSIONS: usize = 64;

/// Context attributes the CloudEvents envelope writes itself, or whose meaning an event attribute
/// must not take over. `subject` is deliberately absent: an event's `subject` attribute is the
/// CloudEvents `subject`.
const CE_OWN_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "time",
    "datacontenttype",
    "dataschema",
    "data",
];

/// This subscription's id in the forms the dialect bodies splice in, JSON-quoted once when the
/// plan is compiled.
#[derive(Debug)]
pub(crate) struct Ids {
    /// DatoCMS `webhook_id` ([`datocms::webhook_id`]).
    pub datocms_webhook_id: Box<[u8]>,
    /// Contensis `subscriptionId`: the id hyphenated, as the Contensis API shows it.
    pub contensis_subscription_id: Box<[u8]>,
    /// A Contensis template embeds the whole event context or its whole `event`: a received
    /// context is then copied with `event.subscriptionId` replaced ([`contensis::context`]).
    pub contensis_embeds_event: bool,
}

impl Ids {
    pub(crate) fn new(sub: &Subscription) -> Ids {
        Ids {
            datocms_webhook_id: json::quoted(&datocms::webhook_id(&sub.id)),
            contensis_subscription_id: json::quoted(&sub.id.to_string()),
            contensis_embeds_event: false,
        }
    }
}

/// One render: the event, the attempt, and what the body, URL and header templates share,
/// built on first use and only once (the DatoCMS default body as Mustache data).
pub(crate) struct Scope<'a> {
    pub event: &'a Event,
    pub ctx: &'a AttemptCtx,
    ids: &'a Ids,
    dato: Option<serde_json::Value>,
    contensis: Option<std::borrow::Cow<'a, [u8]>>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(event: &'a Event, ctx: &'a AttemptCtx, ids: &'a Ids) -> Scope<'a> {
        Scope {
            event,
            ctx,
            ids,
            dato: None,
            contensis: None,
        }
    }

    /// The Contensis event context of this event ([`contensis::context`]) and this
    /// subscription's id as `/event/subscriptionId` resolves, JSON-quoted.
    pub(crate) fn contensis_context(&mut self) -> (&[u8], &'a [u8]) {
        let sub_id: &'a [u8] = &self.ids.contensis_subscription_id;
        let event = self.event;
        let embeds = self.ids.contensis_embeds_event;
        let doc = self
            .contensis
            .get_or_insert_with(|| contensis::context(event, sub_id, embeds));
        (doc, sub_id)
    }

    /// The DatoCMS default body of this attempt as a JSON value: the data of Mustache
    /// templates (DatoCMS: "the original payload we would send is used as source").
    pub(crate) fn datocms_data(&mut self) -> Result<&serde_json::Value, PayloadError> {
        if self.dato.is_none() {
            let mut body = Vec::new();
            datocms::write_body(
                self.event,
                self.ctx,
                &self.ids.datocms_webhook_id,
                &mut body,
            )?;
            let value = serde_json::from_slice(&body)
                .map_err(|e| PayloadError::Json(e.to_string().into()))?;
            self.dato = Some(value);
        }
        Ok(self.dato.get_or_insert(serde_json::Value::Null))
    }
}

/// The body a subscription receives, decided when it is compiled.
#[derive(Debug)]
pub(crate) enum BodyPlan {
    /// Structured-mode CloudEvent: a CloudEvent input as received, anything else wrapped.
    CloudEvents,
    /// The payload exactly as received.
    Raw,
    /// The Sitecore webhook event handler shape.
    Sitecore {
        /// `"<subscription id, hyphenated lower-case>"`, JSON-quoted once here.
        item_id: Box<[u8]>,
        /// The subscription's name, JSON-quoted once here.
        item_name: Box<[u8]>,
    },
    /// Sitecore audit-log forwarding: the audit-log object in a JSON array.
    SitecoreAudit,
    /// The DatoCMS default body (spec §1.8).
    DatoCms,
    /// A DatoCMS `custom_payload`: Mustache over the DatoCMS default body.
    Mustache(mustache::Template),
    /// The Contensis default webhook request structure (spec §2.5).
    Contensis,
    /// Contensis `templates`: the one the event selects, else the format's default body.
    ContensisTemplates {
        templates: contensis::Templates,
        fallback: Box<BodyPlan>,
    },
}

impl BodyPlan {
    /// The body plan for `sub`'s format and template, or `None` with the reasons pushed to
    /// `errors` (a template that does not parse, a format this build cannot render).
    pub(crate) fn compile(sub: &Subscription, errors: &mut Vec<FieldError>) -> Option<BodyPlan> {
        match sub.template.as_deref() {
            None => {}
            Some(Template::Mustache(src)) => {
                return match mustache::Template::compile(src) {
                    Ok(t) => Some(BodyPlan::Mustache(t)),
                    Err(e) => {
                        errors.push(FieldError::new("template", FieldProblem::Syntax(e)));
                        None
                    }
                };
            }
            Some(Template::Contensis(pairs)) => {
                let templates = compile_contensis(pairs, errors);
                let fallback = Self::for_format(sub);
                if fallback.is_none() {
                    errors.push(FieldError::new("format", FieldProblem::FormatUnavailable));
                }
                return Some(BodyPlan::ContensisTemplates {
                    templates: templates?,
                    fallback: Box::new(fallback?),
                });
            }
        }
        let plan = Self::for_format(sub);
        if plan.is_none() {
            errors.push(FieldError::new("format", FieldProblem::FormatUnavailable));
        }
        plan
    }

    /// The format's default body.
    fn for_format(sub: &Subscription) -> Option<BodyPlan> {
        Some(match sub.format {
            Format::CloudEvents => BodyPlan::CloudEvents,
            Format::Raw => BodyPlan::Raw,
            Format::Sitecore => BodyPlan::Sitecore {
                item_id: json::quoted(&sub.id.to_string()),
                item_name: json::quoted(&sub.name),
            },
            Format::SitecoreAudit => BodyPlan::SitecoreAudit,
            Format::DatoCms => BodyPlan::DatoCms,
            Format::Contensis => BodyPlan::Contensis,
        })
    }

    /// The `content-type` that goes with this body (a subscription header may override it).
    pub(crate) fn content_type(&self) -> HeaderValue {
        match self {
            BodyPlan::CloudEvents => HeaderValue::from_static(CLOUDEVENTS_JSON),
            BodyPlan::Raw
            | BodyPlan::Sitecore { .. }
            | BodyPlan::SitecoreAudit
            | BodyPlan::DatoCms
            | BodyPlan::Mustache(_) => HeaderValue::from_static(APPLICATION_JSON),
            BodyPlan::Contensis | BodyPlan::ContensisTemplates { .. } => {
                HeaderValue::from_static(contensis::CONTENT_TYPE)
            }
        }
    }

    /// Stable name for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            BodyPlan::CloudEvents => Format::CloudEvents.as_str(),
            BodyPlan::Raw => Format::Raw.as_str(),
            BodyPlan::Sitecore { .. } => Format::Sitecore.as_str(),
            BodyPlan::SitecoreAudit => Format::SitecoreAudit.as_str(),
            BodyPlan::DatoCms => Format::DatoCms.as_str(),
            BodyPlan::Mustache(_) => "mustache template",
            BodyPlan::Contensis => Format::Contensis.as_str(),
            BodyPlan::ContensisTemplates { .. } => "contensis template",
        }
    }

    /// The body for one attempt (the DatoCMS body carries the call id and retry count).
    pub(crate) fn render(&self, scope: &mut Scope<'_>) -> Result<Bytes, PayloadError> {
        let event = scope.event;
        match self {
            BodyPlan::Raw => Ok(event.payload.clone()),
            BodyPlan::CloudEvents if event.kind == InputKind::CloudEvent => {
                Ok(event.payload.clone())
            }
            BodyPlan::CloudEvents => Ok(cloudevent(event)),
            BodyPlan::Sitecore { item_id, item_name } => Ok(sitecore(event, item_id, item_name)?),
            BodyPlan::SitecoreAudit => {
                let mut b = Vec::with_capacity(event.payload.len() + 2);
                b.push(b'[');
                b.extend_from_slice(&event.payload);
                b.push(b']');
                Ok(Bytes::from(b))
            }
            BodyPlan::DatoCms => {
                let mut out = Vec::new();
                datocms::write_body(event, scope.ctx, &scope.ids.datocms_webhook_id, &mut out)?;
                Ok(Bytes::from(out))
            }
            BodyPlan::Mustache(template) => {
                let mut out = Vec::with_capacity(template.source().len() + 256);
                template.render(scope.datocms_data()?, &mut out)?;
                Ok(Bytes::from(out))
            }
            BodyPlan::Contensis => {
                let (doc, sub_id) = scope.contensis_context();
                let mut out = Vec::with_capacity(512);
                contensis::write_default(event, doc, sub_id, &mut out);
                Ok(Bytes::from(out))
            }
            BodyPlan::ContensisTemplates {
                templates,
                fallback,
            } => match templates.select(event) {
                Some(template) => {
                    let (doc, sub_id) = scope.contensis_context();
                    let mut out = Vec::with_capacity(template.source().len() + 256);
                    template.render(doc, sub_id, &mut out)?;
                    Ok(Bytes::from(out))
                }
                None => fallback.render(scope),
            },
        }
    }

    /// Whether a template embeds the whole Contensis context or its `event` (see [`Ids`]).
    pub(crate) fn embeds_event(&self) -> bool {
        matches!(self, BodyPlan::ContensisTemplates { templates, .. } if templates.embeds_event())
    }
}

/// Compiles Contensis `templates`, pushing a positioned error per template that does not parse
/// (field `template.<key>`) and per key that is empty or given twice.
fn compile_contensis(
    pairs: &[(String, String)],
    errors: &mut Vec<FieldError>,
) -> Option<contensis::Templates> {
    let before = errors.len();
    let mut variants: Vec<(Box<str>, pointer::Template)> = Vec::with_capacity(pairs.len());
    for (i, (key, text)) in pairs.iter().enumerate() {
        let field = format!("template.{key}");
        if key.is_empty() {
            errors.push(FieldError::new(field, FieldProblem::TemplateKey));
            continue;
        }
        if pairs[..i].iter().any(|(k, _)| k.eq_ignore_ascii_case(key)) {
            errors.push(FieldError::new(field, FieldProblem::DuplicateTemplateKey));
            continue;
        }
        match pointer::Template::compile_body(text) {
            Ok(t) => variants.push((key.as_str().into(), t)),
            Err(e) => errors.push(FieldError::new(field, FieldProblem::Syntax(e))),
        }
    }
    (errors.len() == before).then(|| contensis::Templates::new(variants))
}

/// What stands for "the thing the event is about" when another CMS's shape needs it (DatoCMS
/// `entity`, Contensis `resource`): a CloudEvent's `data` (the envelope describes the event,
/// `data` the thing it happened to), else the whole payload.
pub(crate) fn subject(event: &Event) -> &[u8] {
    if event.kind == InputKind::CloudEvent
        && let Ok(Some(data)) = json::member_value(&event.payload, "data")
    {
        return data;
    }
    embeddable(&event.payload)
}

/// The payload as a JSON value to embed: its bytes, or `null` for an empty payload so the
/// envelope stays valid JSON.
pub(crate) fn embeddable(payload: &[u8]) -> &[u8] {
    if payload.iter().all(u8::is_ascii_whitespace) {
        b"null"
    } else {
        payload
    }
}

/// A CloudEvents attribute name: lower-case ASCII letters and digits (CloudEvents 1.0 §2).
fn is_extension_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !CE_OWN_ATTRIBUTES.contains(&name)
}

/// Wraps a non-CloudEvent input in a structured-mode CloudEvent.
fn cloudevent(event: &Event) -> Bytes {
    let attrs = &event.attributes[..event.attributes.len().min(MAX_EXTENSIONS)];
    let time = event
        .time
        .as_deref()
        .filter(|t| t.parse::<jiff::Timestamp>().is_ok());
    let data = embeddable(&event.payload);
    let estimate = 128
        + event.id.len()
        + event.source.len()
        + event.event_type.len()
        + time.map_or(0, |t| t.len() + 10)
        + attrs
            .iter()
            .map(|(n, v)| n.len() + v.len() + 6)
            .sum::<usize>()
        + data.len();
    let mut out = Vec::with_capacity(estimate);
    out.extend_from_slice(br#"{"specversion":"1.0","id":"#);
    json::write_str(&mut out, &event.id);
    out.extend_from_slice(br#","source":"#);
    json::write_str(&mut out, &event.source);
    out.extend_from_slice(br#","type":"#);
    json::write_str(&mut out, &event.event_type);
    if let Some(t) = time {
        out.extend_from_slice(br#","time":"#);
        json::write_str(&mut out, t);
    }
    out.extend_from_slice(br#","datacontenttype":"application/json""#);
    for (i, (name, value)) in attrs.iter().enumerate() {
        // A repeated name keeps its first value: a JSON object cannot hold both.
        if !is_extension_name(name) || attrs[..i].iter().any(|(n, _)| n == name) {
            continue;
        }
        out.push(b',');
        json::write_str(&mut out, name);
        out.push(b':');
        json::write_str(&mut out, value);
    }
    out.extend_from_slice(br#","data":"#);
    out.extend_from_slice(data);
    out.push(b'}');
    Bytes::from(out)
}

/// The Sitecore webhook event handler shape (CMS-APIS §4.2).
fn sitecore(event: &Event, item_id: &[u8], item_name: &[u8]) -> Result<Bytes, ScanError> {
    let payload = &event.payload[..];
    let id = SetMember {
        key: "WebhookItemId",
        value: Value::Json(item_id),
        place: Place::Last,
    };
    let name = SetMember {
        key: "WebhookItemName",
        value: Value::Json(item_name),
        place: Place::Last,
    };
    let extra = item_id.len() + item_name.len() + event.event_type.len() + 64;
    match event.kind {
        // A Sitecore body already has the shape: only this subscription's identity changes.
        InputKind::Sitecore => {
            let mut out = Vec::with_capacity(payload.len() + extra);
            json::write_with_members(payload, &[id, name], true, &mut out)?;
            return Ok(Bytes::from(out));
        }
        InputKind::CloudEvent => {
            if let Some(data) = json::member_value(payload, "data")?
                && data.first() == Some(&b'{')
            {
                let event_name = SetMember {
                    key: "EventName",
                    value: Value::Str(&event.event_type),
                    place: Place::First,
                };
                let mut out = Vec::with_capacity(data.len() + extra);
                json::write_with_members(data, &[event_name, id, name], false, &mut out)?;
                return Ok(Bytes::from(out));
            }
        }
        InputKind::SitecoreAudit | InputKind::Contensis | InputKind::DatoCms => {}
    }
    let data = embeddable(payload);
    let mut out = Vec::with_capacity(data.len() + extra);
    out.extend_from_slice(br#"{"EventName":"#);
    json::write_str(&mut out, &event.event_type);
    out.extend_from_slice(br#","Data":"#);
    out.extend_from_slice(data);
    out.extend_from_slice(br#","WebhookItemId":"#);
    out.extend_from_slice(item_id);
    out.extend_from_slice(br#","WebhookItemName":"#);
    out.extend_from_slice(item_name);
    out.push(b'}');
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::{CLOUDEVENT, SITECORE_ITEM_ADDED, SUB_ID, event, subscription};

    fn plan(format: Format) -> BodyPlan {
        BodyPlan::compile(&subscription(format), &mut Vec::new()).expect("format is supported")
    }

    fn render_with(plan: &BodyPlan, e: &Event) -> Result<Bytes, PayloadError> {
        let ids = Ids::new(&subscription(Format::Raw));
        plan.render(&mut Scope::new(e, &CTX, &ids))
    }

    const CTX: AttemptCtx = AttemptCtx {
        delivery: crate::model::DeliveryId(7),
        attempt: 1,
        timestamp_s: 1,
    };

    fn render(format: Format, e: &Event) -> String {
        let body = render_with(&plan(format), e).expect("renders");
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        // Whatever the shape, the result is one valid JSON document.
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        text
    }

    const ITEM_ID: &str = r#""95398c44-f232-41a8-b947-8aefec4ce6eb""#;
    const ITEM_NAME: &str = r#""Sample \"Webhook\" Handler""#;

    #[test]
    fn pass_through_shapes_are_the_same_bytes_without_a_copy() {
        let cases = [
            (
                Format::CloudEvents,
                event(InputKind::CloudEvent, "entry.published", CLOUDEVENT),
            ),
            (
                Format::Raw,
                event(InputKind::CloudEvent, "entry.published", CLOUDEVENT),
            ),
            (
                Format::Raw,
                event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED),
            ),
            (
                Format::Raw,
                event(InputKind::DatoCms, "item.update", r#"{"a" : 1}"#),
            ),
        ];
        for (format, e) in cases {
            let body = render_with(&plan(format), &e).expect("renders");
            assert_eq!(body, e.payload, "{format:?} {:?}", e.kind);
            assert_eq!(body.as_ptr(), e.payload.as_ptr(), "{format:?} copied");
        }
    }

    #[test]
    fn cloudevents_wraps_other_inputs() {
        let mut full = event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED);
        full.time = Some("2024-05-01T10:00:00.123Z".into());
        full.attributes = [
            ("language", "en"),
            ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
            ("templatename", "sample item"),
            ("Bad-Name", "x"),     // not a CloudEvents name
            ("language", "de"),    // repeated: first value wins
            ("id", "spoof"),       // the envelope's own attribute
            ("data", "spoof"),     // likewise
            ("subject", "x\"y\n"), // the CloudEvents subject, escaped
        ]
        .into_iter()
        .map(|(n, v)| (n.into(), v.into()))
        .collect();
        let full_want = format!(
            "{}{}{}{}}}",
            r#"{"specversion":"1.0","id":"evt-1","source":"sitecore","type":"item:added","#,
            r#""time":"2024-05-01T10:00:00.123Z","datacontenttype":"application/json","#,
            r#""language":"en","contenttype":"0133f52d-271f-4217-b1cd-04342e3457eb","templatename":"sample item","subject":"x\"y\n","data":"#,
            SITECORE_ITEM_ADDED
        );

        let mut odd = event(InputKind::Contensis, "entry.published", "  ");
        odd.id = "a\"b\\c".into();
        odd.source = "contensis".into();
        odd.time = Some("yesterday".into()); // not RFC 3339: left out
        let odd_want = r#"{"specversion":"1.0","id":"a\"b\\c","source":"contensis","type":"entry.published","datacontenttype":"application/json","data":null}"#;

        let dato = event(InputKind::DatoCms, "item.update", "[1,2]\n");
        let dato_want = "{\"specversion\":\"1.0\",\"id\":\"evt-1\",\"source\":\"datocms\",\"type\":\"item.update\",\"datacontenttype\":\"application/json\",\"data\":[1,2]\n}";

        for (e, want) in [
            (full, full_want.as_str()),
            (odd, odd_want),
            (dato, dato_want),
        ] {
            assert_eq!(render(Format::CloudEvents, &e), want);
        }
    }

    #[test]
    fn sitecore_shape() {
        let sitecore_want = SITECORE_ITEM_ADDED
            .replace(r#""00000000-1111-2222-3333-444444444444""#, ITEM_ID)
            .replace(r#""Sample Webhook Event Handler""#, ITEM_NAME);
        let cases = [
            // A Sitecore body: the two members replaced, every other byte (newlines too) kept.
            (
                event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED),
                sitecore_want,
            ),
            // Members absent: appended.
            (
                event(
                    InputKind::Sitecore,
                    "publish:end",
                    "{\"EventName\":\"publish:end\",\"PublisherOptions\":{\"Mode\":\"Smart\"}}\n",
                ),
                format!(
                    "{{\"EventName\":\"publish:end\",\"PublisherOptions\":{{\"Mode\":\"Smart\"}},\"WebhookItemId\":{ITEM_ID},\"WebhookItemName\":{ITEM_NAME}}}\n"
                ),
            ),
            // A CloudEvent whose data is an object: that object, with EventName first.
            (
                event(InputKind::CloudEvent, "entry.published", CLOUDEVENT),
                format!(
                    r#"{{"EventName":"entry.published","entryId": "e1", "title": "Caf\u00e9 \"Ole\"", "WebhookItemId": {ITEM_ID},"WebhookItemName":{ITEM_NAME}}}"#
                ),
            ),
            // A CloudEvent whose data is not an object: wrapped whole.
            (
                event(
                    InputKind::CloudEvent,
                    "x.y",
                    r#"{"specversion":"1.0","data":[1]}"#,
                ),
                format!(
                    r#"{{"EventName":"x.y","Data":{{"specversion":"1.0","data":[1]}},"WebhookItemId":{ITEM_ID},"WebhookItemName":{ITEM_NAME}}}"#
                ),
            ),
            // Any other input: wrapped.
            (
                event(InputKind::Contensis, "entry.\"published\"", r#"{"a":1}"#),
                format!(
                    r#"{{"EventName":"entry.\"published\"","Data":{{"a":1}},"WebhookItemId":{ITEM_ID},"WebhookItemName":{ITEM_NAME}}}"#
                ),
            ),
        ];
        for (e, want) in cases {
            assert_eq!(render(Format::Sitecore, &e), want, "{:?}", e.kind);
        }
        assert!(ITEM_ID.contains(SUB_ID));
    }

    #[test]
    fn sitecore_refuses_payloads_it_cannot_reshape() {
        let cases = [
            event(InputKind::Sitecore, "item:added", "[1,2]"),
            event(InputKind::Sitecore, "item:added", r#"{"EventName":"#),
            event(InputKind::CloudEvent, "x", r#"{"data":{"a":}"#),
        ];
        for e in cases {
            assert!(
                render_with(&plan(Format::Sitecore), &e).is_err(),
                "{:?}",
                e.payload
            );
        }
    }

    #[test]
    fn content_types() {
        let cases = [
            (Format::CloudEvents, CLOUDEVENTS_JSON),
            (Format::Raw, APPLICATION_JSON),
            (Format::Sitecore, APPLICATION_JSON),
            (Format::SitecoreAudit, APPLICATION_JSON),
            (Format::DatoCms, APPLICATION_JSON),
        ];
        for (format, want) in cases {
            assert_eq!(plan(format).content_type(), want, "{format:?}");
        }
    }
}
