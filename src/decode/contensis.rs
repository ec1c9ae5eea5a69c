//! `POST /v1/ingest/contensis`: a Contensis webhook body, in either of its two untemplated
//! shapes (spec §2.4, §2.5):
//!
//! - the full event context a template sees, `{"event": {id, name, resourceType, dateTime,
//!   resourceId, …}, "user": {…}, "resource": {…, "sys": {…}}}` (what a `{/}`-style template
//!   or a Contensis-compatible sender posts);
//! - the default webhook request structure, `{"eventId", "eventName", "datetime",
//!   "resource": {id, type, projectId, contentTypeId, language, …}}`.
//!
//! The event type is `<resourceType>.<event name>` (`entry.published`), the pair Contensis
//! topics subscribe to. Attributes mirror the Contensis topic filters: content type, language,
//! owner, project, workflow state and event, entity id.
//!
//! Workflow values are qualified with the workflow id the way Contensis topic filters spell
//! them (`contensisEntryApproval.awaitingApproval`, `….draft.submit`). Where the resource's
//! `sys.workflow` carries the invoked event is not documented; `event`, or `transition.event`
//! (prefixed with `transition.from` when the event is not already `state.event`), is read.

use bytes::Bytes;

use super::{Obj, generated_id, obj_field, push_attr, str_field};
use crate::model::event::attr;
use crate::model::{Attributes, Event, InputKind};

/// The event source of every Contensis body.
pub const SOURCE: &str = "contensis";

/// Resource type assumed when the body names none (the default structure is the entries one).
const DEFAULT_RESOURCE_TYPE: &str = "entry";

/// Maps one Contensis webhook body to an event, or says what is wrong with it.
pub(crate) fn decode_item(
    obj: Obj<'_, '_>,
    payload: Bytes,
    received_at_ms: i64,
) -> Result<Event, String> {
    let mut attributes = Attributes::new();
    let resource = obj_field(&obj, "resource");
    let (id, name, resource_type, time) = if let Some(ev) = obj_field(&obj, "event") {
        let name = str_field(&ev, "name")
            .ok_or("missing `event.name`: a Contensis event context names its event")?;
        let sys = resource.as_ref().and_then(|r| obj_field(r, "sys"));
        let resource_type = str_field(&ev, "resourceType")
            .or_else(|| sys.as_ref().and_then(|s| str_field(s, "dataFormat")))
            .unwrap_or(DEFAULT_RESOURCE_TYPE);
        let entity = sys
            .as_ref()
            .and_then(|s| str_field(s, "id"))
            .or_else(|| str_field(&ev, "resourceId"));
        if let Some(id) = entity {
            push_attr(&mut attributes, attr::ENTITY_ID, id);
        }
        if let Some(sys) = &sys {
            sys_attrs(sys, &mut attributes);
        }
        // Resources without `sys.projectId` (content types, components, …) carry the project at
        // their top level; without it a project's subscriptions could never match them.
        if !attributes.iter().any(|(n, _)| &**n == attr::PROJECT)
            && let Some(p) = resource.as_ref().and_then(|r| str_field(r, "projectId"))
        {
            push_attr(&mut attributes, attr::PROJECT, p);
        }
        (
            str_field(&ev, "id"),
            name,
            resource_type,
            str_field(&ev, "dateTime"),
        )
    } else if let Some(name) = str_field(&obj, "eventName") {
        let resource_type = resource
            .as_ref()
            .and_then(|r| str_field(r, "type"))
            .unwrap_or(DEFAULT_RESOURCE_TYPE);
        if let Some(r) = &resource {
            default_resource_attrs(r, &mut attributes);
        }
        (
            str_field(&obj, "eventId"),
            name,
            resource_type,
            str_field(&obj, "datetime"),
        )
    } else {
        return Err(
            "missing `event.name` and `eventName`: expected a Contensis event context \
                    or default webhook request structure"
                .into(),
        );
    };

    let mut event_type = String::with_capacity(resource_type.len() + 1 + name.len());
    event_type.push_str(resource_type);
    event_type.push('.');
    event_type.push_str(name);
    Ok(super::event(
        InputKind::Contensis,
        id.map_or_else(generated_id, Box::from),
        SOURCE.into(),
        event_type.into_boxed_str(),
        time,
        attributes,
        payload,
        received_at_ms,
    ))
}

/// Attributes from a resource's `sys` block (the Management API representation).
fn sys_attrs(sys: &Obj<'_, '_>, attributes: &mut Attributes) {
    let fields = [
        ("contentTypeId", attr::CONTENT_TYPE),
        ("language", attr::LANGUAGE),
        ("owner", attr::OWNER),
        ("projectId", attr::PROJECT),
    ];
    for (key, name) in fields {
        if let Some(v) = str_field(sys, key) {
            push_attr(attributes, name, v);
        }
    }
    if let Some(wf) = obj_field(sys, "workflow") {
        workflow_attrs(&wf, attributes);
    }
}

/// Attributes from the default structure's `resource` block.
fn default_resource_attrs(r: &Obj<'_, '_>, attributes: &mut Attributes) {
    let fields = [
        ("id", attr::ENTITY_ID),
        ("contentTypeId", attr::CONTENT_TYPE),
        ("language", attr::LANGUAGE),
        ("projectId", attr::PROJECT),
    ];
    for (key, name) in fields {
        if let Some(v) = str_field(r, key) {
            push_attr(attributes, name, v);
        }
    }
}

/// `workflowstate` and `workflowevent` from `sys.workflow`, qualified with the workflow id.
fn workflow_attrs(wf: &Obj<'_, '_>, attributes: &mut Attributes) {
    let workflow_id = str_field(wf, "id");
    if let Some(state) = str_field(wf, "state") {
        push_attr(
            attributes,
            attr::WORKFLOW_STATE,
            &qualify(workflow_id, None, state),
        );
    }
    let transition = obj_field(wf, "transition");
    let (event, from) = match str_field(wf, "event") {
        Some(e) => (Some(e), None),
        None => (
            transition.as_ref().and_then(|t| str_field(t, "event")),
            transition.as_ref().and_then(|t| str_field(t, "from")),
        ),
    };
    if let Some(event) = event {
        let from = from.filter(|_| !event.contains('.'));
        push_attr(
            attributes,
            attr::WORKFLOW_EVENT,
            &qualify(workflow_id, from, event),
        );
    }
}

/// `<workflow>.<state>.<value>` with the parts that are known and not already in `value`.
fn qualify(workflow_id: Option<&str>, state: Option<&str>, value: &str) -> String {
    let mut out = String::new();
    if let Some(w) = workflow_id {
        let v = value.as_bytes();
        let already = v.len() > w.len()
            && v[..w.len()].eq_ignore_ascii_case(w.as_bytes())
            && v[w.len()] == b'.';
        if !already {
            out.push_str(w);
            out.push('.');
        }
    }
    if let Some(s) = state {
        out.push_str(s);
        out.push('.');
    }
    out.push_str(value);
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{Expected, attrs, decode_ok, limits};
    use super::*;
    use crate::decode::decode;

    /// The full event context a Contensis template sees (spec §2.4 variables).
    const CONTEXT_PUBLISHED: &str = r#"{
  "event": {
    "id": "5a8c7e2d-1f3b-4c6a-9e0d-2b4f6a8c0e1d",
    "name": "published",
    "resourceType": "entry",
    "dateTime": "2024-05-01T10:15:30.123Z",
    "resourceId": "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
    "resourceUrl": "https://cms-example.cloud.contensis.com/api/management/projects/movieDb/entries/d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
    "subscriptionId": "3a7ce8e3-9c9f-4242-be20-35edb29c4a07"
  },
  "user": { "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" },
  "resource": {
    "entryTitle": "Fight Club",
    "entryDescription": "The first rule",
    "department": "Films",
    "sys": {
      "id": "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad",
      "projectId": "movieDb",
      "contentTypeId": "movie",
      "dataFormat": "entry",
      "language": "en-GB",
      "owner": "T.Durden",
      "workflow": { "id": "contensisEntryApproval", "state": "versionComplete",
                    "transition": { "from": "awaitingApproval", "event": "approve", "invokedBy": "m.singer" } },
      "version": { "versionNo": "2.0", "published": "2024-05-01T10:15:30.123Z" }
    }
  }
}"#;

    const CONTEXT_CONTENT_TYPE: &str = r#"{
  "event": { "id": "e-2", "name": "created", "resourceType": "contentType", "dateTime": "2024-05-02T08:00:00Z", "resourceId": "blogPost" },
  "user": { "username": "m.singer" },
  "resource": { "id": "blogPost", "name": { "en-GB": "Blog post" } }
}"#;

    /// The default webhook request structure of spec §2.5, as rendered.
    const DEFAULT_STRUCTURE: &str = r#"{
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

    #[test]
    fn decodes_both_shapes() {
        // (body, type, id, time, attributes)
        let cases: &[Expected] = &[
            (
                CONTEXT_PUBLISHED,
                "entry.published",
                Some("5a8c7e2d-1f3b-4c6a-9e0d-2b4f6a8c0e1d"),
                Some("2024-05-01T10:15:30.123Z"),
                vec![
                    ("entityid", "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad"),
                    ("contenttype", "movie"),
                    ("language", "en-gb"),
                    ("owner", "t.durden"),
                    ("project", "moviedb"),
                    ("workflowstate", "contensisentryapproval.versioncomplete"),
                    (
                        "workflowevent",
                        "contensisentryapproval.awaitingapproval.approve",
                    ),
                ],
            ),
            (
                CONTEXT_CONTENT_TYPE,
                "contentType.created",
                Some("e-2"),
                Some("2024-05-02T08:00:00Z"),
                vec![("entityid", "blogpost")],
            ),
            (
                DEFAULT_STRUCTURE,
                "entry.workflowStateChanged",
                Some("0f6f4c1e-8d2b-4a9e-b3c7-5e1d9a2f4b6c"),
                Some("2024-05-01T10:15:30.123Z"),
                vec![
                    ("entityid", "d69ad539-0e3a-4d7f-9c9d-1fad1b39faad"),
                    ("contenttype", "blog"),
                    ("language", "fr-fr"),
                    ("project", "moviedb"),
                ],
            ),
        ];
        for (json, ty, id, time, want) in cases {
            let body = Bytes::from_static(json.as_bytes());
            let evs = decode_ok(
                InputKind::Contensis,
                Some("application/json; charset=utf-8"),
                &body,
            );
            let e = &evs[0];
            assert_eq!(&*e.event_type, *ty);
            assert_eq!(&*e.source, "contensis");
            assert_eq!(e.kind, InputKind::Contensis);
            assert_eq!(Some(&*e.id), *id);
            assert_eq!(e.time.as_deref(), *time);
            assert_eq!(e.payload, body);
            assert_eq!(attrs(e), *want, "{ty}");
        }
    }

    #[test]
    fn resource_type_falls_back_to_sys_data_format() {
        let body = Bytes::from_static(
            br#"{"event":{"name":"updated"},"resource":{"sys":{"id":"a1","dataFormat":"asset"}}}"#,
        );
        let e = &decode_ok(InputKind::Contensis, None, &body)[0];
        assert_eq!(&*e.event_type, "asset.updated");
        assert!(
            uuid::Uuid::parse_str(&e.id).is_ok(),
            "generated id {}",
            e.id
        );
        // An empty templated id is no id.
        let body = Bytes::from_static(
            br#"{"eventId":"","eventName":"deleted","resource":{"type":"node","id":""}}"#,
        );
        let e = &decode_ok(InputKind::Contensis, None, &body)[0];
        assert_eq!(&*e.event_type, "node.deleted");
        assert!(
            uuid::Uuid::parse_str(&e.id).is_ok(),
            "generated id {}",
            e.id
        );
        assert!(e.attributes.is_empty());
    }

    #[test]
    fn qualifies_workflow_values() {
        let cases = [
            (
                Some("contensisEntryApproval"),
                None,
                "awaitingApproval",
                "contensisEntryApproval.awaitingApproval",
            ),
            (
                Some("contensisEntryApproval"),
                None,
                "contensisEntryApproval.draft",
                "contensisEntryApproval.draft",
            ),
            (Some("wf"), Some("draft"), "submit", "wf.draft.submit"),
            (Some("wf"), None, "wfx.draft", "wf.wfx.draft"),
            (None, None, "draft.submit", "draft.submit"),
            (Some("w"), None, "éé", "w.éé"),
        ];
        for (wf, state, v, want) in cases {
            assert_eq!(qualify(wf, state, v), want);
        }
    }

    #[test]
    fn refuses_bodies_without_an_event_name() {
        let cases = [
            (
                r#"{"resource":{"sys":{"id":"1"}}}"#,
                "missing `event.name` and `eventName`",
            ),
            (r#"{"event":{"id":"1"}}"#, "missing `event.name`"),
        ];
        for (json, want) in cases {
            let err = decode(InputKind::Contensis, None, &Bytes::from(json), &limits(), 0)
                .expect_err(json);
            assert_eq!((err.status(), err.reason()), (400, "invalid"), "{json}");
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
    }

    #[test]
    fn top_level_project_id_counts_for_resources_without_sys() {
        let body = r#"{"event": {"id": "e-9", "name": "created", "resourceType": "contentType"},
                       "resource": {"id": "blogPost", "projectId": "website"}}"#;
        let events = decode(
            InputKind::Contensis,
            Some("application/json"),
            &Bytes::from_static(body.as_bytes()),
            &limits(),
            0,
        )
        .unwrap();
        assert_eq!(&*events[0].event_type, "contentType.created");
        assert!(
            events[0]
                .attributes
                .iter()
                .any(|(n, v)| &**n == attr::PROJECT && &**v == "website"),
            "{:?}",
            events[0].attributes
        );
    }
}
