//! `POST /v1/ingest/sitecore`: one Sitecore webhook event handler body (XM Cloud / SitecoreAI,
//! XM/XP 10.3+; spec §4.2), and the workflow submit / validation action bodies.
//!
//! Sitecore sends the body unchanged from the webhook item's configuration, so Herald takes it
//! as it is: `EventName` is the event type (`item:saved`, `publish:end`, in Sitecore's own
//! spelling), the source is `sitecore`, and the id is generated because Sitecore sends none.
//! Filterable attributes come from the affected item (`Item`; `Copy` then `Source` for
//! `item:copied`; `DataItem` for workflow actions) or, for publish events, from
//! `PublisherOptions`. GUIDs are normalized the way the payload's own ids are written
//! (lower-case, no braces), so a filter written with `{88AD1387-…}` or `88ad1387-…` both match.
//!
//! Only `EventName` is required: the rest of a Sitecore body varies by event and is kept
//! opaque in the payload.

use bytes::Bytes;
use simd_json::prelude::*;

use super::{Obj, generated_id, obj_field, push_attr, push_guid, str_field, type_name};
use crate::model::event::attr;
use crate::model::{Attributes, Event, InputKind};

/// The event source of every Sitecore event handler body.
pub const SOURCE: &str = "sitecore";

/// Event type given to workflow submit / validation action bodies, which carry no `EventName`.
pub const WORKFLOW_ACTION_TYPE: &str = "workflow:action";

/// The `415` sentence: Sitecore's XML serialization is the usual cause.
pub(crate) const ACCEPTED: &str = "this input accepts application/json; set the Sitecore \
     webhook's Serialization Type to JSON";

/// Maps one Sitecore webhook body to an event, or says what is wrong with it.
pub(crate) fn decode_item(
    obj: Obj<'_, '_>,
    payload: Bytes,
    received_at_ms: i64,
) -> Result<Event, String> {
    let mut attributes = Attributes::new();
    let event_type: &str = match obj.get("EventName") {
        Some(v) => match v.into_string() {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => return Err("`EventName` must not be empty".into()),
            None => {
                return Err(format!(
                    "`EventName` must be a string, got {}",
                    type_name(v)
                ));
            }
        },
        // Workflow submit and validation actions have no EventName; they have an action id
        // and the item the workflow command ran on.
        None if obj.get("ActionID").is_some() && obj.get("DataItem").is_some() => {
            WORKFLOW_ACTION_TYPE
        }
        None => {
            return Err(
                "missing `EventName`: this does not look like a Sitecore webhook event \
                        handler body"
                    .into(),
            );
        }
    };

    let (family, action) = event_type.split_once(':').unwrap_or((event_type, ""));
    if family.eq_ignore_ascii_case("publish") {
        if let Some(opts) = obj_field(&obj, "PublisherOptions") {
            publish_attrs(&opts, &mut attributes);
        }
    } else if family.eq_ignore_ascii_case("workflow") && obj.get("EventName").is_none() {
        if let Some(item) = obj_field(&obj, "DataItem") {
            item_attrs(&item, &mut attributes);
        }
        // The state the command moves the item to, else the one it was in.
        let state = obj_field(&obj, "NextState").or_else(|| obj_field(&obj, "PreviousState"));
        if let Some(id) = state.as_ref().and_then(|s| str_field(s, "StateID")) {
            push_guid(&mut attributes, attr::WORKFLOW_STATE, id);
        }
    } else if action.eq_ignore_ascii_case("copied") {
        if let Some(copy) = obj_field(&obj, "Copy") {
            item_attrs(&copy, &mut attributes);
        }
        // The original is affected too: a filter on its id sees that it was copied.
        if let Some(id) = obj_field(&obj, "Source")
            .as_ref()
            .and_then(|s| str_field(s, "Id"))
        {
            push_guid(&mut attributes, attr::ENTITY_ID, id);
        }
    } else {
        if let Some(item) = obj_field(&obj, "Item") {
            item_attrs(&item, &mut attributes);
        }
        // item:deleted also names the parent the item was removed from.
        if attributes.iter().all(|(n, _)| &**n != attr::PARENT_ID)
            && let Some(parent) = str_field(&obj, "ParentID")
        {
            push_guid(&mut attributes, attr::PARENT_ID, parent);
        }
    }

    Ok(super::event(
        InputKind::Sitecore,
        generated_id(),
        SOURCE.into(),
        event_type.into(),
        None,
        attributes,
        payload,
        received_at_ms,
    ))
}

/// Attributes of a Sitecore `Item` object.
fn item_attrs(item: &Obj<'_, '_>, attributes: &mut Attributes) {
    if let Some(id) = str_field(item, "Id") {
        push_guid(attributes, attr::ENTITY_ID, id);
    }
    if let Some(lang) = str_field(item, "Language") {
        push_attr(attributes, attr::LANGUAGE, lang);
    }
    if let Some(t) = str_field(item, "TemplateId") {
        push_guid(attributes, attr::CONTENT_TYPE, t);
    }
    if let Some(t) = str_field(item, "TemplateName") {
        push_attr(attributes, attr::TEMPLATE_NAME, t);
    }
    if let Some(p) = str_field(item, "ParentId") {
        push_guid(attributes, attr::PARENT_ID, p);
    }
}

/// Attributes of `PublisherOptions`: every published language and the root item.
fn publish_attrs(opts: &Obj<'_, '_>, attributes: &mut Attributes) {
    if let Some(langs) = opts.get("Languages").and_then(|v| v.as_array()) {
        for lang in langs.iter().filter_map(|v| v.into_string()) {
            push_attr(attributes, attr::LANGUAGE, lang);
        }
    }
    if let Some(root) = str_field(opts, "RootItemId") {
        push_guid(attributes, attr::ENTITY_ID, root);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{Attrs, attrs, decode_ok, limits};
    use super::*;
    use crate::decode::decode;

    /// The sample `item:added` request of the Sitecore docs (seed 003), fields filled in.
    pub(crate) const ITEM_ADDED: &str = r#"{
  "EventName": "item:added",
  "Item": {
    "Language": "en",
    "Version": 1,
    "Id": "4c3a401e-8b78-440a-bf88-736a71ce8e5a",
    "Name": "New sample item",
    "ParentId": "8fb31904-1bbc-463c-821b-c7c1a87bf13e",
    "TemplateId": "0133f52d-271f-4217-b1cd-04342e3457eb",
    "TemplateName": "Sample Item",
    "MasterId": "00000000-0000-0000-0000-000000000000",
    "SharedFields": [
      {
        "Id": "a4f985d9-98b3-4b52-aaaf-4344f6e747c6",
        "Value": "{88AD1387-D4DA-489D-BB4B-45540917E7ED}"
      }
    ],
    "UnversionedFields": [],
    "VersionedFields": []
  },
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "WebhookItemName": "Sample Webhook Event Handler"
}"#;

    /// `item:saved` with `Changes` (spec §4.2 community model).
    pub(crate) const ITEM_SAVED: &str = r#"{
  "EventName": "item:saved",
  "Item": {
    "Language": "da-DK",
    "Version": 3,
    "Id": "{B1A6F0D4-35B1-4F0B-A6F0-35B14F0BA6F0}",
    "Name": "Home",
    "ParentId": "{0DE95AE4-41AB-4D01-9EB0-67441B7C2450}",
    "TemplateId": "{76036F5E-CBCE-46D1-AF0A-4143F9B557AA}",
    "TemplateName": "Sample Item",
    "MasterId": "00000000-0000-0000-0000-000000000000",
    "SharedFields": [{"Id": "a4f985d9-98b3-4b52-aaaf-4344f6e747c6", "Value": "{88AD1387-D4DA-489D-BB4B-45540917E7ED}"}],
    "UnversionedFields": [{"Id": "52807595-0f8f-4b20-8d2a-cb71d28c6103", "Value": "sitecore\\admin", "Language": "da-DK"}],
    "VersionedFields": [
      {"Id": "75577384-3c97-45da-a847-81b00500e250", "Value": "Welcome to \"Sitecore\"", "Version": 3, "Language": "da-DK"},
      {"Id": "a60acd61-a6db-4182-8329-c957982cec74", "Value": "<p>Rich <b>text</b> body</p>", "Version": 3, "Language": "da-DK"}
    ]
  },
  "Changes": {
    "FieldChanges": [
      {"FieldId": "75577384-3c97-45da-a847-81b00500e250", "Value": "Welcome to \"Sitecore\"", "OriginalValue": "Welcome"}
    ],
    "PropertyChanges": [],
    "IsUnversionedFieldChanged": false,
    "IsSharedFieldChanged": false
  },
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb",
  "WebhookItemName": "Sample Webhook Event Handler"
}"#;

    const PUBLISH_BEGIN: &str = r#"{ "EventName": "publish:begin",
  "PublisherOptions": { "CompareRevisions": false, "Deep": true, "FromDate": "2022-11-29T17:32:22.28Z",
    "Mode": "SingleItem", "PublishDate": "2023-01-20T15:22:18.167Z",
    "PublishingTargets": ["{8E080626-DDC3-4EF4-A1D1-F0BE4A200254}"], "RepublishAll": false,
    "RecoveryId": "6021488d-9a3b-4b1c-8f1e-3c2d1e0f9a8b", "SourceDatabaseName": "master", "TargetDatabaseName": "master",
    "RootItemId": "1e7a632b-0b3c-4d5e-8f9a-0b1c2d3e4f5a", "UserName": "sitecore\\user@example.com", "WillBeQueued": true,
    "Languages": ["en", "da-DK"] },
  "WebhookItemId": "14d2921a-9d8c-4b7a-8e6f-5d4c3b2a1f0e", "WebhookItemName": "Webhook Test Event Handler" }"#;

    const PUBLISH_STATUS: &str = r#"{ "EventName": "publish:statusUpdated",
  "Status": { "CurrentLanguageName": "English", "CurrentTargetName": "master", "Expired": false,
              "Failed": false, "IsDone": true, "Messages": ["Job started: Publish to 'master'"],
              "Processed": 7848, "State": 5 },
  "WebhookItemId": "14d2921a-9d8c-4b7a-8e6f-5d4c3b2a1f0e", "WebhookItemName": "Webhook Test Event Handler" }"#;

    const ITEM_COPIED: &str = r#"{ "EventName": "item:copied",
  "Source": { "Language": "en", "Version": 1, "Id": "4c3a401e-8b78-440a-bf88-736a71ce8e5a", "Name": "A",
              "ParentId": "8fb31904-1bbc-463c-821b-c7c1a87bf13e", "TemplateId": "0133f52d-271f-4217-b1cd-04342e3457eb",
              "TemplateName": "Sample Item" },
  "Copy": { "Language": "en", "Version": 1, "Id": "9d7c6b5a-4f3e-2d1c-0b9a-8f7e6d5c4b3a", "Name": "Copy of A",
            "ParentId": "8fb31904-1bbc-463c-821b-c7c1a87bf13e", "TemplateId": "0133f52d-271f-4217-b1cd-04342e3457eb",
            "TemplateName": "Sample Item" },
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb", "WebhookItemName": "Copies" }"#;

    const ITEM_DELETED: &str = r#"{ "EventName": "item:deleted",
  "Item": { "Language": "en", "Version": 1, "Id": "4c3a401e-8b78-440a-bf88-736a71ce8e5a", "Name": "Gone",
            "TemplateId": "0133f52d-271f-4217-b1cd-04342e3457eb", "TemplateName": "Sample Item" },
  "ParentID": "{8FB31904-1BBC-463C-821B-C7C1A87BF13E}",
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb", "WebhookItemName": "Deletes" }"#;

    const WORKFLOW_SUBMIT: &str = r#"{ "ActionID": "0a6f3cde-1b2c-4d5e-8f9a-0b1c2d3e4f5a", "ActionName": "Sample webhook submit action",
  "Comments": [ { "Key": "Comments", "Value": "Approved!" } ],
  "DataItem": { "Language": "en", "Version": 2, "Id": "4c3a401e-8b78-440a-bf88-736a71ce8e5a", "Name": "Page",
                "ParentId": "8fb31904-1bbc-463c-821b-c7c1a87bf13e", "TemplateId": "0133f52d-271f-4217-b1cd-04342e3457eb",
                "TemplateName": "Page" },
  "Message": "", "NextState": null,
  "PreviousState": { "DisplayName": "Awaiting approval", "FinalState": false, "Icon": "Office/32x32/check.png",
                     "StateID": "{46DA5376-10DC-4B66-B464-AFDAA29DE84F}", "PreviewPublishingTargets": [] },
  "UserName": "sitecore\\john.doe@example.com", "WorkflowName": "Simple Page Workflow",
  "WebhookItemId": "95398c44-f232-41a8-b947-8aefec4ce6eb", "WebhookItemName": "Submit" }"#;

    #[test]
    fn decodes_event_handler_bodies() {
        let item = [
            ("entityid", "4c3a401e-8b78-440a-bf88-736a71ce8e5a"),
            ("language", "en"),
            ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
            ("templatename", "sample item"),
            ("parentid", "8fb31904-1bbc-463c-821b-c7c1a87bf13e"),
        ];
        // (body, type, attributes)
        let cases: &[(&str, &str, Attrs)] = &[
            (ITEM_ADDED, "item:added", item.to_vec()),
            (
                ITEM_SAVED,
                "item:saved",
                vec![
                    ("entityid", "b1a6f0d4-35b1-4f0b-a6f0-35b14f0ba6f0"),
                    ("language", "da-dk"),
                    ("contenttype", "76036f5e-cbce-46d1-af0a-4143f9b557aa"),
                    ("templatename", "sample item"),
                    ("parentid", "0de95ae4-41ab-4d01-9eb0-67441b7c2450"),
                ],
            ),
            (
                PUBLISH_BEGIN,
                "publish:begin",
                vec![
                    ("language", "en"),
                    ("language", "da-dk"),
                    ("entityid", "1e7a632b-0b3c-4d5e-8f9a-0b1c2d3e4f5a"),
                ],
            ),
            (PUBLISH_STATUS, "publish:statusUpdated", vec![]),
            (
                ITEM_COPIED,
                "item:copied",
                vec![
                    ("entityid", "9d7c6b5a-4f3e-2d1c-0b9a-8f7e6d5c4b3a"),
                    ("language", "en"),
                    ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
                    ("templatename", "sample item"),
                    ("parentid", "8fb31904-1bbc-463c-821b-c7c1a87bf13e"),
                    ("entityid", "4c3a401e-8b78-440a-bf88-736a71ce8e5a"),
                ],
            ),
            (
                ITEM_DELETED,
                "item:deleted",
                vec![
                    ("entityid", "4c3a401e-8b78-440a-bf88-736a71ce8e5a"),
                    ("language", "en"),
                    ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
                    ("templatename", "sample item"),
                    ("parentid", "8fb31904-1bbc-463c-821b-c7c1a87bf13e"),
                ],
            ),
            (
                WORKFLOW_SUBMIT,
                "workflow:action",
                vec![
                    ("entityid", "4c3a401e-8b78-440a-bf88-736a71ce8e5a"),
                    ("language", "en"),
                    ("contenttype", "0133f52d-271f-4217-b1cd-04342e3457eb"),
                    ("templatename", "page"),
                    ("parentid", "8fb31904-1bbc-463c-821b-c7c1a87bf13e"),
                    ("workflowstate", "46da5376-10dc-4b66-b464-afdaa29de84f"),
                ],
            ),
        ];
        for (json, ty, want) in cases {
            let body = Bytes::from_static(json.as_bytes());
            let evs = decode_ok(InputKind::Sitecore, Some("application/json"), &body);
            assert_eq!(evs.len(), 1);
            let e = &evs[0];
            assert_eq!(&*e.event_type, *ty);
            assert_eq!(&*e.source, "sitecore");
            assert_eq!(e.kind, InputKind::Sitecore);
            assert!(
                uuid::Uuid::parse_str(&e.id).is_ok(),
                "generated id {}",
                e.id
            );
            assert_eq!(e.time, None);
            assert_eq!(e.payload, body, "{ty}");
            assert_eq!(attrs(e), *want, "{ty}");
        }
    }

    #[test]
    fn generated_ids_differ() {
        let body = Bytes::from_static(ITEM_ADDED.as_bytes());
        let a = decode_ok(InputKind::Sitecore, None, &body);
        let b = decode_ok(InputKind::Sitecore, None, &body);
        assert_ne!(a[0].id, b[0].id);
    }

    #[test]
    fn refuses_what_is_not_an_event_handler_body() {
        let cases = [
            (r#"{"Item":{"Id":"x"}}"#, "missing `EventName`"),
            (r#"{"EventName":""}"#, "`EventName` must not be empty"),
            (
                r#"{"EventName":7}"#,
                "`EventName` must be a string, got a number",
            ),
            (
                r#"[{"EventName":"item:added"}]"#,
                "expected one JSON object, got an array",
            ),
        ];
        for (json, want) in cases {
            let err = decode(InputKind::Sitecore, None, &Bytes::from(json), &limits(), 0)
                .expect_err(json);
            assert_eq!((err.status(), err.reason()), (400, "invalid"), "{json}");
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn xml_serialization_is_refused_with_a_hint() {
        let body = Bytes::from_static(b"<event><EventName>item:added</EventName></event>");
        let err = decode(
            InputKind::Sitecore,
            Some("application/xml"),
            &body,
            &limits(),
            0,
        )
        .expect_err("xml");
        assert_eq!((err.status(), err.reason()), (415, "content_type"));
        assert!(
            err.to_string().contains("Serialization Type to JSON"),
            "{err}"
        );
    }
}
