//! `POST /v1/ingest/datocms`: the default body of a DatoCMS webhook (spec §1.8).
//!
//! The event type is `<entity_type>.<event_type>` (`item.update`, `item_type.create`), the
//! spelling DatoCMS's own webhook `events` filters use. `webhook_call_id` is the id: it stays the
//! same across DatoCMS's retries of one call, so a retried delivery dedups against the first.
//! Attributes: the entity id, the record's model (`contenttype`: the item type id, or the
//! entity's own id when the entity is a model), environment and its type, and the site.
//!
//! Only the event type is required; the envelope fields are optional because DatoCMS's own
//! examples (cache-tag invalidation) leave them out.

use bytes::Bytes;

use super::{Obj, generated_id, id_field, obj_field, push_attr, str_field};
use crate::model::event::attr;
use crate::model::{Attributes, Event, InputKind};
use simd_json::prelude::*;

/// The event source of every DatoCMS body.
pub const SOURCE: &str = "datocms";

/// Maps one DatoCMS webhook body to an event, or says what is wrong with it.
pub(crate) fn decode_item(
    obj: Obj<'_, '_>,
    payload: Bytes,
    received_at_ms: i64,
) -> Result<Event, String> {
    let entity = obj_field(&obj, "entity");
    let entity_type = str_field(&obj, "entity_type")
        .or_else(|| entity.as_ref().and_then(|e| str_field(e, "type")))
        .ok_or("missing `entity_type`: this does not look like a DatoCMS webhook body")?;
    let action = str_field(&obj, "event_type")
        .ok_or("missing `event_type`: this does not look like a DatoCMS webhook body")?;
    let mut event_type = String::with_capacity(entity_type.len() + 1 + action.len());
    event_type.push_str(entity_type);
    event_type.push('.');
    event_type.push_str(action);

    let mut attributes = Attributes::new();
    if let Some(entity) = &entity {
        let entity_id = id_field(entity, "id");
        if let Some(id) = &entity_id {
            push_attr(&mut attributes, attr::ENTITY_ID, id);
        }
        if entity_type == "item_type" {
            if let Some(id) = &entity_id {
                push_attr(&mut attributes, attr::CONTENT_TYPE, id);
            }
        } else if let Some(model) = obj_field(entity, "relationships")
            .and_then(|r| obj_field(&r, "item_type"))
            .and_then(|t| obj_field(&t, "data"))
            .and_then(|d| id_field(&d, "id"))
        {
            push_attr(&mut attributes, attr::CONTENT_TYPE, &model);
        }
    }
    if let Some(env) = str_field(&obj, "environment") {
        push_attr(&mut attributes, attr::ENVIRONMENT, env);
    }
    if let Some(primary) = obj.get("is_environment_primary").and_then(|v| v.as_bool()) {
        let kind = if primary { "primary" } else { "sandbox" };
        push_attr(&mut attributes, attr::ENVIRONMENT_TYPE, kind);
    }
    if let Some(site) = id_field(&obj, "site_id") {
        push_attr(&mut attributes, attr::SITE, &site);
    }

    Ok(super::event(
        InputKind::DatoCms,
        id_field(&obj, "webhook_call_id").unwrap_or_else(generated_id),
        SOURCE.into(),
        event_type.into_boxed_str(),
        str_field(&obj, "event_triggered_at"),
        attributes,
        payload,
        received_at_ms,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{Expected, attrs, decode_ok, limits};
    use super::*;
    use crate::decode::decode;

    /// The default body of spec §1.8, with the elided parts filled in.
    const ITEM_UPDATE: &str = r#"{
  "site_id": "Example-Site-ID",
  "webhook_id": "123",
  "environment": "foo-bar",
  "is_environment_primary": true,
  "webhook_call_id": "456",
  "event_triggered_at": "2024-08-26T14:30:00Z",
  "attempted_auto_retries_count": 3,
  "entity_type": "item",
  "event_type": "update",
  "entity": { "id": "39830648", "type": "item",
              "attributes": { "name": "Mark Smith" },
              "relationships": { "item_type": { "data": { "id": "810928", "type": "item_type" } },
                                 "creator": { "data": { "id": "42011", "type": "account" } } },
              "meta": { "created_at": "2024-08-20T10:00:00Z", "updated_at": "2024-08-26T14:30:00Z",
                        "published_at": "2024-08-21T09:00:00Z", "first_published_at": "2024-08-21T09:00:00Z",
                        "status": "updated", "current_version": "117626080" } },
  "previous_entity": { "id": "39830648", "type": "item", "attributes": { "name": "Mark Smyth" } },
  "related_entities": [ { "id": "810928", "type": "item_type", "attributes": { "name": "Author", "api_key": "author" }, "relationships": {} } ]
}"#;

    const MODEL_CREATE: &str = r#"{
  "site_id": 7788, "webhook_id": "123", "environment": "main", "is_environment_primary": false,
  "webhook_call_id": 991, "event_triggered_at": "2024-08-26T14:31:00Z",
  "attempted_auto_retries_count": 0, "entity_type": "item_type", "event_type": "create",
  "entity": { "id": "810929", "type": "item_type", "attributes": { "name": "Article", "api_key": "article" } },
  "previous_entity": null, "related_entities": []
}"#;

    const CACHE_TAGS: &str = r#"{ "entity_type":"cda_cache_tags", "event_type":"invalidate",
    "entity": { "id":"cda_cache_tags", "type":"cda_cache_tags", "attributes": { "tags": ["N*r;L","6-KZ@"] } } }"#;

    #[test]
    fn decodes_default_bodies() {
        // (body, type, id, time, attributes)
        let cases: &[Expected] = &[
            (
                ITEM_UPDATE,
                "item.update",
                Some("456"),
                Some("2024-08-26T14:30:00Z"),
                vec![
                    ("entityid", "39830648"),
                    ("contenttype", "810928"),
                    ("environment", "foo-bar"),
                    ("environmenttype", "primary"),
                    ("site", "example-site-id"),
                ],
            ),
            (
                MODEL_CREATE,
                "item_type.create",
                Some("991"),
                Some("2024-08-26T14:31:00Z"),
                vec![
                    ("entityid", "810929"),
                    ("contenttype", "810929"),
                    ("environment", "main"),
                    ("environmenttype", "sandbox"),
                    ("site", "7788"),
                ],
            ),
            (
                CACHE_TAGS,
                "cda_cache_tags.invalidate",
                None,
                None,
                vec![("entityid", "cda_cache_tags")],
            ),
        ];
        for (json, ty, id, time, want) in cases {
            let body = Bytes::from_static(json.as_bytes());
            let evs = decode_ok(InputKind::DatoCms, Some("application/json"), &body);
            let e = &evs[0];
            assert_eq!(&*e.event_type, *ty);
            assert_eq!(&*e.source, "datocms");
            assert_eq!(e.kind, InputKind::DatoCms);
            match id {
                Some(id) => assert_eq!(&*e.id, *id),
                None => assert!(uuid::Uuid::parse_str(&e.id).is_ok(), "{}", e.id),
            }
            assert_eq!(e.time.as_deref(), *time);
            assert_eq!(e.payload, body);
            assert_eq!(attrs(e), *want, "{ty}");
        }
    }

    #[test]
    fn refuses_bodies_without_a_type() {
        let cases = [
            (r#"{"entity_type":"item"}"#, "missing `event_type`"),
            (r#"{"event_type":"update"}"#, "missing `entity_type`"),
            (
                r#"{"event_type":"update","entity":{"id":"1"}}"#,
                "missing `entity_type`",
            ),
        ];
        for (json, want) in cases {
            let err =
                decode(InputKind::DatoCms, None, &Bytes::from(json), &limits(), 0).expect_err(json);
            assert_eq!((err.status(), err.reason()), (400, "invalid"), "{json}");
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
        // The entity's own type stands in for a missing `entity_type`.
        let body =
            Bytes::from_static(br#"{"event_type":"update","entity":{"id":"1","type":"upload"}}"#);
        assert_eq!(
            &*decode_ok(InputKind::DatoCms, None, &body)[0].event_type,
            "upload.update"
        );
    }
}
