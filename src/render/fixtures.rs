//! Test fixtures shared by the render tests: a subscription and events in each input kind.

use bytes::Bytes;

use crate::model::{
    Attributes, Dialect, Event, Format, HttpMethod, InputKind, Subscription, SubscriptionId,
    Version,
};
use crate::model::{OptDuration, OptText};

pub(crate) const SUB_ID: &str = "95398c44-f232-41a8-b947-8aefec4ce6eb";

/// A plain subscription: no headers, auth or signing; named with a character that needs escaping.
pub(crate) fn subscription(format: Format) -> Subscription {
    Subscription {
        id: SubscriptionId(SUB_ID.parse().expect("uuid")),
        dialect: Dialect::Native,
        tenant: None,
        name: "Sample \"Webhook\" Handler".into(),
        description: OptText::NONE,
        enabled: true,
        url: "https://hooks.example.com/in?key=abc".into(),
        method: HttpMethod::Post,
        filters: Box::default(),
        headers: Box::default(),
        auth: None,
        signing_secret: None,
        format,
        retry: None,
        timeout: OptDuration::NONE,
        connect_timeout: OptDuration::NONE,
        template: None,
        extras: Default::default(),
        disabled_reason: OptText::NONE,
        version: Version {
            created_by: "test".into(),
            created_at_ms: 0,
            modified_by: "test".into(),
            modified_at_ms: 0,
            version_no: 1,
        },
    }
}

pub(crate) fn event(kind: InputKind, event_type: &str, payload: &str) -> Event {
    Event {
        seq: 1,
        id: "evt-1".into(),
        source: kind.as_str().into(),
        kind,
        event_type: event_type.into(),
        time: None,
        received_at_ms: 0,
        attributes: Attributes::new(),
        payload: Bytes::copy_from_slice(payload.as_bytes()),
    }
}

/// The sample request of the Sitecore docs (seed 003), `VersionedFields` filled in.
pub(crate) const SITECORE_ITEM_ADDED: &str = r#"{
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
    "VersionedFields": [
      { "Id": "25bed78c-4957-4165-998a-ca1b52f67497", "Value": "<p>Hello \"world\"</p>", "Version": 1, "Language": "en" }
    ]
  },
  "WebhookItemId": "00000000-1111-2222-3333-444444444444",
  "WebhookItemName": "Sample Webhook Event Handler"
}
"#;

/// A CloudEvent as a producer might send it (odd spacing on purpose: pass-through keeps it).
pub(crate) const CLOUDEVENT: &str = r#"{ "specversion" : "1.0", "id":"ce-42", "source":"urn:cms",
  "type":"entry.published", "time":"2024-05-01T10:00:00Z", "datacontenttype":"application/json",
  "data": {"entryId": "e1", "title": "Caf\u00e9 \"Ole\"", "WebhookItemId": "stale"} }"#;

/// The DatoCMS default body of spec §1.8, the elided parts filled in (as in `decode::datocms`).
pub(crate) const DATOCMS_ITEM_UPDATE: &str = r#"{
  "site_id": "example-site-id",
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

/// DatoCMS's own cache-tags example (spec §1.8): no envelope members at all.
pub(crate) const DATOCMS_CACHE_TAGS: &str = r#"{ "entity_type":"cda_cache_tags", "event_type":"invalidate",
    "entity": { "id":"cda_cache_tags", "type":"cda_cache_tags", "attributes": { "tags": ["N*r;L","6-KZ@"] } } }"#;

/// A Contensis event context as a template sees it (spec §2.4 variables; as in
/// `decode::contensis`).
pub(crate) const CONTENSIS_CONTEXT: &str = r#"{
  "event": {
    "id": "5a8c7e2d-1f3b-4c6a-9e0d-2b4f6a8c0e1d",
    "name": "published",
    "resourceType": "entry",
    "dateTime": "2024-05-01T11:15:30.123+01:00",
    "resourceId": "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
    "resourceUrl": "https://cms-example.cloud.contensis.com/api/management/projects/movieDb/entries/d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
    "subscriptionId": "3a7ce8e3-9c9f-4242-be20-35edb29c4a07"
  },
  "user": { "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" },
  "resource": {
    "entryTitle": "Fight \"Club\"",
    "entryDescription": "The first rule",
    "department": "Films",
    "headline": "Soap & <more>",
    "runtime": 139,
    "tags": ["drama", "cult"],
    "sys": {
      "id": "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
      "projectId": "movieDb",
      "contentTypeId": "news",
      "dataFormat": "entry",
      "language": "en-GB",
      "owner": "T.Durden",
      "version": { "versionNo": "2.0", "published": "2024-05-01T10:15:30.123Z" }
    }
  }
}"#;

/// A Contensis content type event context (no `sys`: a content type is not an entry).
pub(crate) const CONTENSIS_CONTENT_TYPE: &str = r#"{
  "event": { "id": "e-2", "name": "created", "resourceType": "contentType", "dateTime": "2024-05-02T08:00:00Z", "resourceId": "blogPost" },
  "user": { "username": "m.singer" },
  "resource": { "id": "blogPost", "name": { "en-GB": "Blog post" }, "fields": [] }
}"#;

/// The default webhook request structure of spec §2.5 as Contensis renders it (an input Herald
/// accepts too).
pub(crate) const CONTENSIS_DEFAULT_STRUCTURE: &str = r#"{
  "eventId": "0f6f4c1e-8d2b-4a9e-b3c7-5e1d9a2f4b6c",
  "eventName": "workflowStateChanged",
  "subscriptionId": "3a7ce8e3-9c9f-4242-be20-35edb29c4a07",
  "datetime": "2024-05-01T10:15:30.123Z",
  "invokedBy": { "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" },
  "resource": {
    "id": "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
    "type": "entry",
    "projectId": "movieDb",
    "contentTypeId": "blog",
    "title": "Hello",
    "language": "fr-FR",
    "url": "https://cms-example.cloud.contensis.com/api/management/projects/movieDb/entries/d69ad539"
  }
}"#;

/// Seed 001's `templates`, each as the JSON text of the value the seed gives it.
pub(crate) const SEED_TEMPLATES: [(&str, &str); 3] = [
    (
        "entry",
        r#"{"event":"{/event/name}","user":"{/user/firstname} {/user/lastname}","id":"{/resource/sys/id}","title":"{/resource/entryTitle}","description":"{/resource/entryDescription}","department":"{/resource/department}"}"#,
    ),
    (
        "entry.news",
        r#"{"event":"{/event/name}","id":"{/resource/sys/id}","title":"{/resource/entryTitle}","headline":"{/resource/headline}"}"#,
    ),
    ("contentType", r#""{/resource/}""#),
];
