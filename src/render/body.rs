//! Request bodies: which shape a subscription asked for ([`BodyPlan`], compiled once) and the
//! per-delivery builders that turn an event into bytes.
//!
//! Every builder reuses the producer's bytes instead of re-serializing them: pass-through and
//! `raw` bodies are `Bytes` clones (no copy at all), the CloudEvents envelope embeds the original
//! payload verbatim as `data`, and the Sitecore shape splices three member values into the
//! original body with [`super::json`]. Each built body is written into one buffer sized up front,
//! so a delivery costs one allocation for its body.
//!
//! New body kinds (DatoCMS default body, Mustache or Contensis templates, Sitecore audit arrays)
//! are new [`BodyPlan`] variants with their compiled form inside; `Plan::render` does not change.

use bytes::Bytes;
use http::HeaderValue;

use crate::model::{Event, Format, InputKind, Subscription};

use super::json::{self, Place, ScanError, SetMember, Value};

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
}

impl BodyPlan {
    pub(crate) fn compile(sub: &Subscription) -> BodyPlan {
        match sub.format {
            Format::CloudEvents => BodyPlan::CloudEvents,
            Format::Raw => BodyPlan::Raw,
            Format::Sitecore => BodyPlan::Sitecore {
                item_id: json::quoted(&sub.id.to_string()),
                item_name: json::quoted(&sub.name),
            },
        }
    }

    /// The `content-type` that goes with this body (a subscription header may override it).
    pub(crate) fn content_type(&self) -> HeaderValue {
        match self {
            BodyPlan::CloudEvents => HeaderValue::from_static(CLOUDEVENTS_JSON),
            BodyPlan::Raw | BodyPlan::Sitecore { .. } => HeaderValue::from_static(APPLICATION_JSON),
        }
    }

    /// Stable name for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            BodyPlan::CloudEvents => Format::CloudEvents.as_str(),
            BodyPlan::Raw => Format::Raw.as_str(),
            BodyPlan::Sitecore { .. } => Format::Sitecore.as_str(),
        }
    }

    pub(crate) fn render(&self, event: &Event) -> Result<Bytes, ScanError> {
        match self {
            BodyPlan::Raw => Ok(event.payload.clone()),
            BodyPlan::CloudEvents if event.kind == InputKind::CloudEvent => {
                Ok(event.payload.clone())
            }
            BodyPlan::CloudEvents => Ok(cloudevent(event)),
            BodyPlan::Sitecore { item_id, item_name } => sitecore(event, item_id, item_name),
        }
    }
}

/// The payload as a JSON value to embed: its bytes, or `null` for an empty payload so the
/// envelope stays valid JSON.
fn embeddable(payload: &[u8]) -> &[u8] {
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
