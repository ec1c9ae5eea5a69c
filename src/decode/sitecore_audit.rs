//! `POST /v1/ingest/sitecore-audit`: logs forwarded by a Sitecore Common Audit Log webhook
//! (spec §3.3): one audit-log object, or a JSON array of them (the Cloud Portal's examples are
//! arrays). Each log becomes one event; an array is atomic like any batch.
//!
//! Every log has the same type, `sitecore.backbone.messages.audit.created`; what happened is
//! in `action` (`experience_deleted`, `roles_assigned`, …) and which product logged it in
//! `system` (`Personalize`, …), so both are attributes. `time` is kept as sent: the products
//! write it in different formats. The id is `extensions.eventId` when the product sets one.

use bytes::Bytes;

use super::{Obj, generated_id, obj_field, push_attr, str_field};
use crate::model::event::attr;
use crate::model::{Attributes, Event, InputKind};

/// The event source of every audit log.
pub const SOURCE: &str = "sitecore-audit";
/// The event type of every audit log.
pub const EVENT_TYPE: &str = "sitecore.backbone.messages.audit.created";
/// Attribute: the audit `action` (`experience_deleted`, `user_login`, …).
pub const ATTR_ACTION: &str = "action";
/// Attribute: the audit `system` (the Sitecore product that logged it).
pub const ATTR_SYSTEM: &str = "system";

/// Maps one audit-log object to an event, or says what is wrong with it.
pub(crate) fn decode_item(
    obj: Obj<'_, '_>,
    payload: Bytes,
    received_at_ms: i64,
) -> Result<Event, String> {
    let action = str_field(&obj, "action")
        .ok_or("missing `action`: this does not look like a Sitecore audit log")?;
    let mut attributes = Attributes::new();
    push_attr(&mut attributes, ATTR_ACTION, action);
    if let Some(system) = str_field(&obj, "system") {
        push_attr(&mut attributes, ATTR_SYSTEM, system);
    }
    if let Some(id) = obj_field(&obj, "entity").and_then(|e| str_field(&e, "id")) {
        push_attr(&mut attributes, attr::ENTITY_ID, id);
    }
    let id = obj_field(&obj, "extensions").and_then(|x| str_field(&x, "eventId"));
    Ok(super::event(
        InputKind::SitecoreAudit,
        id.map_or_else(generated_id, Box::from),
        SOURCE.into(),
        EVENT_TYPE.into(),
        str_field(&obj, "time"),
        attributes,
        payload,
        received_at_ms,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{attrs, decode_ok, limits};
    use super::*;
    use crate::decode::decode;

    /// The forwarded-log example of spec §3.3 plus a Cloud Portal log with an event id.
    const LOGS: &str = r#"[
  {
    "system": "Personalize",
    "time": "2025-01-08 08:17:32",
    "action": "experience_deleted",
    "entity": { "id": "574eedc0-79d9-4375-93ad-873737d4c8e1", "type": "EXPERIENCE",
                "extensions": { "entityLevelExtension": "AnyCustomValues" } },
    "sourceSystemUserContext": { "id": "user@example.com", "anonymousId": "dxGef14c",
                                 "IPAddress": "198.10.12.01", "userAgent": "Mozilla/5.0 (X11; Linux x86_64)" },
    "extensions": { "eventLevelExtension": "AnyCustomValues" }
  },
  {
    "system": "CloudPortal",
    "time": "2025-05-27T11:20:16.216+00:00",
    "action": "roles_assigned",
    "entity": { "id": "auth0|6630b5b1c1e7d3a5e8f0a1b2", "type": "user" },
    "sourceSystemUserContext": { "id": "admin@example.com" },
    "extensions": { "eventId": "c0f1e2d3-a4b5-4c6d-8e7f-9a0b1c2d3e4f",
                    "roles": [ { "role": "Admin", "scope": "Organization" } ] }
  }
]"#;

    #[test]
    fn decodes_an_array_of_logs() {
        let body = Bytes::from_static(LOGS.as_bytes());
        let evs = decode_ok(InputKind::SitecoreAudit, None, &body);
        assert_eq!(evs.len(), 2);
        for e in &evs {
            assert_eq!(&*e.event_type, EVENT_TYPE);
            assert_eq!(&*e.source, "sitecore-audit");
            assert_eq!(e.kind, InputKind::SitecoreAudit);
            // Each payload is that log's own object, byte for byte.
            assert!(e.payload.starts_with(b"{") && e.payload.ends_with(b"}"));
            assert!(LOGS.contains(std::str::from_utf8(&e.payload).unwrap()));
        }
        assert!(uuid::Uuid::parse_str(&evs[0].id).is_ok(), "{}", evs[0].id);
        assert_eq!(&*evs[1].id, "c0f1e2d3-a4b5-4c6d-8e7f-9a0b1c2d3e4f");
        assert_eq!(evs[0].time.as_deref(), Some("2025-01-08 08:17:32"));
        assert_eq!(
            evs[1].time.as_deref(),
            Some("2025-05-27T11:20:16.216+00:00")
        );
        assert_eq!(
            attrs(&evs[0]),
            [
                ("action", "experience_deleted"),
                ("system", "personalize"),
                ("entityid", "574eedc0-79d9-4375-93ad-873737d4c8e1"),
            ]
        );
        assert_eq!(
            attrs(&evs[1]),
            [
                ("action", "roles_assigned"),
                ("system", "cloudportal"),
                ("entityid", "auth0|6630b5b1c1e7d3a5e8f0a1b2"),
            ]
        );
    }

    #[test]
    fn decodes_a_single_log_object() {
        let one = r#"{"system":"CDP","action":"user_login","time":"2025-01-08 08:17:32"}"#;
        let body = Bytes::from_static(one.as_bytes());
        let evs = decode_ok(InputKind::SitecoreAudit, Some("application/json"), &body);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].payload, body);
        assert_eq!(
            attrs(&evs[0]),
            [("action", "user_login"), ("system", "cdp")]
        );
    }

    #[test]
    fn an_array_with_a_bad_log_is_refused_whole() {
        let body = Bytes::from_static(
            br#"[{"action":"a"},{"system":"CDP"},{"action":"b"},{"action":""}]"#,
        );
        let err = decode(InputKind::SitecoreAudit, None, &body, &limits(), 0).expect_err("bad");
        assert_eq!((err.status(), err.reason()), (400, "invalid"));
        let idx: Vec<usize> = err.items().iter().map(|i| i.index).collect();
        assert_eq!(idx, [1, 3]);
        assert!(err.items()[0].reason.contains("missing `action`"));
    }
}
