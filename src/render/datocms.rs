//! The DatoCMS default webhook body (spec §1.8): what a `datocms`-format subscription receives
//! and what a DatoCMS `custom_payload` (Mustache) template sees as its data.
//!
//! For an event ingested from DatoCMS the body is the original one, byte for byte, with three
//! members set for this delivery: `webhook_id` (this subscription, as the DatoCMS API shows
//! it — [`webhook_id`]), `webhook_call_id` (the delivery id, the same on every retry) and
//! `attempted_auto_retries_count` (attempt − 1). They are spliced in with [`super::json`], so
//! nothing else the producer sent changes.
//!
//! Any other input is given the same shape, built from the normalized event (INFERRED; the
//! DatoCMS API docs describe the mapping for users):
//!
//! | member | value |
//! |---|---|
//! | `site_id` | the `site` attribute, else `project`, else `space` (attributes are lower-case), else `null` |
//! | `webhook_id`, `webhook_call_id`, `attempted_auto_retries_count` | as above |
//! | `environment` | the `environment` attribute, else `null` |
//! | `is_environment_primary` | `environmenttype` `primary` → `true`, `sandbox` → `false`, else `null` |
//! | `event_triggered_at` | the producer's event time, else when Herald accepted it (RFC 3339) |
//! | `entity_type`, `event_type` | the event type split at its last `.` or `:` (`item:added` → `item`, `added`) |
//! | `entity` | the payload (a CloudEvent's `data` when it has one); `null` when empty |
//! | `previous_entity` | `null` |
//! | `related_entities` | `[]` |

use crate::model::{Event, InputKind, SubscriptionId};

use super::body::{PayloadError, subject};
use super::json::{self, Place, SetMember, Value};
use super::plan::AttemptCtx;

/// `user-agent` of every request a DatoCMS-dialect subscription sends (spec §1.8).
pub(crate) const USER_AGENT: &str = "DatoCMS (datocms.com)";

/// The subscription id as the DatoCMS API shows it (`webhook_id` in bodies, `data.id` of a
/// webhook): 32 lower-case hex digits. The one place that decides the form, so the body and
/// the DatoCMS management API always agree.
pub fn webhook_id(id: &SubscriptionId) -> String {
    id.simple()
}

/// Writes the default DatoCMS body for one attempt of one delivery into `out`.
/// `webhook_id` is this subscription's id, JSON-quoted once at compile time.
pub(crate) fn write_body(
    event: &Event,
    ctx: &AttemptCtx,
    webhook_id: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), PayloadError> {
    let mut call_id = itoa::Buffer::new();
    let call_id = call_id.format(ctx.delivery.0);
    let mut retries = itoa::Buffer::new();
    let retries = retries.format(ctx.attempt.saturating_sub(1));

    if event.kind == InputKind::DatoCms {
        // The producer's body already has the shape: only this delivery's three values change.
        // Absent members go first, where DatoCMS writes its envelope.
        let sets = [
            SetMember {
                key: "webhook_id",
                value: Value::Json(webhook_id),
                place: Place::First,
            },
            SetMember {
                key: "webhook_call_id",
                value: Value::Str(call_id),
                place: Place::First,
            },
            SetMember {
                key: "attempted_auto_retries_count",
                value: Value::Json(retries.as_bytes()),
                place: Place::First,
            },
        ];
        out.reserve(event.payload.len() + webhook_id.len() + 96);
        json::write_with_members(&event.payload, &sets, true, out)?;
        return Ok(());
    }

    let attr = |name: &'static str| event.attribute(name).next();
    let entity = subject(event);
    let (entity_type, event_type) = (event.resource_type(), event.action());
    out.reserve(entity.len() + event.event_type.len() + webhook_id.len() + 320);
    out.extend_from_slice(br#"{"site_id":"#);
    write_opt_str(
        out,
        attr(crate::model::event::attr::SITE)
            .or_else(|| attr(crate::model::event::attr::PROJECT))
            .or_else(|| attr(crate::model::event::attr::SPACE)),
    );
    out.extend_from_slice(br#","webhook_id":"#);
    out.extend_from_slice(webhook_id);
    out.extend_from_slice(br#","environment":"#);
    write_opt_str(out, attr(crate::model::event::attr::ENVIRONMENT));
    out.extend_from_slice(br#","is_environment_primary":"#);
    out.extend_from_slice(
        match attr(crate::model::event::attr::ENVIRONMENT_TYPE) {
            Some("primary") => "true",
            Some("sandbox") => "false",
            _ => "null",
        }
        .as_bytes(),
    );
    out.extend_from_slice(br#","webhook_call_id":"#);
    json::write_str(out, call_id);
    out.extend_from_slice(br#","event_triggered_at":"#);
    match &event.time {
        Some(t) => json::write_str(out, t),
        None => write_received_at(out, event.received_at_ms),
    }
    out.extend_from_slice(br#","attempted_auto_retries_count":"#);
    out.extend_from_slice(retries.as_bytes());
    out.extend_from_slice(br#","entity_type":"#);
    json::write_str(out, entity_type);
    out.extend_from_slice(br#","event_type":"#);
    json::write_str(out, event_type);
    out.extend_from_slice(br#","entity":"#);
    out.extend_from_slice(entity);
    out.extend_from_slice(br#","previous_entity":null,"related_entities":[]}"#);
    Ok(())
}

fn write_opt_str(out: &mut Vec<u8>, v: Option<&str>) {
    match v {
        Some(v) => json::write_str(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

/// When Herald accepted the event, as an RFC 3339 string.
fn write_received_at(out: &mut Vec<u8>, ms: i64) {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => json::write_str(out, &ts.to_string()),
        Err(_) => out.extend_from_slice(b"null"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeliveryId;
    use crate::render::fixtures::{
        CLOUDEVENT, DATOCMS_CACHE_TAGS, DATOCMS_ITEM_UPDATE, SITECORE_ITEM_ADDED, SUB_ID, event,
    };

    fn ctx(attempt: u32) -> AttemptCtx {
        AttemptCtx {
            delivery: DeliveryId(7_123_456_789_012_345),
            attempt,
            timestamp_s: 1_700_000_000,
        }
    }

    fn render(e: &Event, attempt: u32) -> String {
        let id = json::quoted(&webhook_id(&SUB_ID.parse().expect("uuid")));
        let mut out = Vec::new();
        write_body(e, &ctx(attempt), &id, &mut out).expect("renders");
        let text = String::from_utf8(out).expect("utf-8");
        serde_json::from_str::<serde_json::Value>(&text).expect("valid JSON");
        text
    }

    #[test]
    fn webhook_id_is_the_simple_form() {
        let id: SubscriptionId = SUB_ID.parse().expect("uuid");
        assert_eq!(webhook_id(&id), "95398c44f23241a8b9478aefec4ce6eb");
    }

    #[test]
    fn datocms_bodies_keep_every_byte_but_the_three_members() {
        let want = DATOCMS_ITEM_UPDATE
            .replace(
                r#""webhook_id": "123""#,
                r#""webhook_id": "95398c44f23241a8b9478aefec4ce6eb""#,
            )
            .replace(
                r#""webhook_call_id": "456""#,
                r#""webhook_call_id": "7123456789012345""#,
            )
            .replace(
                r#""attempted_auto_retries_count": 3"#,
                r#""attempted_auto_retries_count": 0"#,
            );
        assert_ne!(want, DATOCMS_ITEM_UPDATE);
        let e = event(InputKind::DatoCms, "item.update", DATOCMS_ITEM_UPDATE);
        assert_eq!(render(&e, 1), want);
        // The retry count follows the attempt; nothing else changes.
        assert_eq!(
            render(&e, 3),
            want.replace(
                r#""attempted_auto_retries_count": 0"#,
                r#""attempted_auto_retries_count": 2"#
            )
        );
        // Members the producer left out (DatoCMS's own cache-tags example) are added first.
        let e = event(
            InputKind::DatoCms,
            "cda_cache_tags.invalidate",
            DATOCMS_CACHE_TAGS,
        );
        assert_eq!(
            render(&e, 1),
            format!(
                "{{\"webhook_id\":\"95398c44f23241a8b9478aefec4ce6eb\",\"webhook_call_id\":\"7123456789012345\",\"attempted_auto_retries_count\":0,{}",
                &DATOCMS_CACHE_TAGS[1..]
            )
        );
    }

    #[test]
    fn other_inputs_get_the_datocms_shape() {
        let mut sitecore = event(InputKind::Sitecore, "item:added", SITECORE_ITEM_ADDED);
        sitecore.time = Some("2024-05-01T10:00:00Z".into());
        sitecore.attributes = [("environment", "prod"), ("project", "website")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let sitecore_want = format!(
            "{}{}{}",
            r#"{"site_id":"website","webhook_id":"95398c44f23241a8b9478aefec4ce6eb","environment":"prod","is_environment_primary":null,"webhook_call_id":"7123456789012345","event_triggered_at":"2024-05-01T10:00:00Z","attempted_auto_retries_count":1,"entity_type":"item","event_type":"added","entity":"#,
            SITECORE_ITEM_ADDED,
            r#","previous_entity":null,"related_entities":[]}"#
        );

        let mut ce = event(InputKind::CloudEvent, "entry.published", CLOUDEVENT);
        ce.received_at_ms = 1_714_557_600_250;
        ce.attributes = [("site", "s-1"), ("environmenttype", "sandbox")]
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .collect();
        let ce_want = r#"{"site_id":"s-1","webhook_id":"95398c44f23241a8b9478aefec4ce6eb","environment":null,"is_environment_primary":false,"webhook_call_id":"7123456789012345","event_triggered_at":"2024-05-01T10:00:00.25Z","attempted_auto_retries_count":1,"entity_type":"entry","event_type":"published","entity":{"entryId": "e1", "title": "Caf\u00e9 \"Ole\"", "WebhookItemId": "stale"},"previous_entity":null,"related_entities":[]}"#;

        let empty = event(InputKind::Contensis, "ping", " ");
        let empty_want = r#"{"site_id":null,"webhook_id":"95398c44f23241a8b9478aefec4ce6eb","environment":null,"is_environment_primary":null,"webhook_call_id":"7123456789012345","event_triggered_at":"1970-01-01T00:00:00Z","attempted_auto_retries_count":1,"entity_type":"ping","event_type":"","entity":null,"previous_entity":null,"related_entities":[]}"#;

        for (e, want) in [
            (sitecore, sitecore_want.as_str()),
            (ce, ce_want),
            (empty, empty_want),
        ] {
            assert_eq!(render(&e, 2), want, "{:?}", e.kind);
        }
    }

    #[test]
    fn refuses_a_datocms_payload_it_cannot_reshape() {
        let e = event(InputKind::DatoCms, "item.update", "[1]");
        let id = json::quoted("x");
        let mut out = Vec::new();
        assert!(write_body(&e, &ctx(1), &id, &mut out).is_err());
    }
}
