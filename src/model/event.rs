//! The normalized event: what every accepted input becomes (DESIGN §2).
//!
//! Decoders (`crate::decode`) build it, the journal stores it, the topic index routes on it and the
//! renderers turn it into request bodies. It is plain data: no I/O, no parsing beyond what the
//! helper methods need. The original bytes are kept untouched in `payload` so that `raw` delivery
//! and CloudEvents pass-through never re-serialize.

use bytes::Bytes;
use smallvec::SmallVec;

/// Which input an event came through. Renderers use it to pick how the payload maps to a body
/// (a CloudEvent is passed through as is; a Sitecore body is wrapped as CloudEvent `data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum InputKind {
    /// `POST /v1/events`: a structured-mode CloudEvent; `payload` is the event's own JSON.
    CloudEvent = 0,
    /// `POST /v1/ingest/sitecore`: a Sitecore webhook event handler body.
    Sitecore = 1,
    /// `POST /v1/ingest/sitecore-audit`: one Sitecore Common Audit Log object.
    SitecoreAudit = 2,
    /// `POST /v1/ingest/contensis`: a Contensis event context or default request structure.
    Contensis = 3,
    /// `POST /v1/ingest/datocms`: a DatoCMS default webhook body.
    DatoCms = 4,
}

impl InputKind {
    pub const ALL: [InputKind; 5] = [
        InputKind::CloudEvent,
        InputKind::Sitecore,
        InputKind::SitecoreAudit,
        InputKind::Contensis,
        InputKind::DatoCms,
    ];

    /// The stable, bounded label used in metrics and in the journal.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::CloudEvent => "cloudevents",
            InputKind::Sitecore => "sitecore",
            InputKind::SitecoreAudit => "sitecore-audit",
            InputKind::Contensis => "contensis",
            InputKind::DatoCms => "datocms",
        }
    }

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(v as usize).copied()
    }
}

/// Normalized attribute names that filters match on (DESIGN §2, issue 2 §3). Decoders use these
/// constants so that a filter written once works for every CMS that can fill the attribute.
pub mod attr {
    pub const LANGUAGE: &str = "language";
    pub const CONTENT_TYPE: &str = "contenttype";
    pub const OWNER: &str = "owner";
    pub const WORKFLOW_EVENT: &str = "workflowevent";
    pub const WORKFLOW_STATE: &str = "workflowstate";
    pub const ENTITY_ID: &str = "entityid";
    pub const ENVIRONMENT: &str = "environment";
    pub const PROJECT: &str = "project";
    /// Sitecore template name (the content type id goes in `contenttype`).
    pub const TEMPLATE_NAME: &str = "templatename";
    /// Sitecore parent item id.
    pub const PARENT_ID: &str = "parentid";
    /// Sitecore audit space, Contensis project, DatoCMS site: the tenant scope of the event.
    pub const SPACE: &str = "space";
    pub const SITE: &str = "site";
    /// DatoCMS environment type (`primary` / `sandbox`).
    pub const ENVIRONMENT_TYPE: &str = "environmenttype";
    /// CloudEvents `subject`.
    pub const SUBJECT: &str = "subject";
}

/// Attributes as `(name, value)` pairs. Names are lower-case; values are lower-cased for matching
/// (filters compare case-insensitively; the original spelling stays in `payload`). A name may
/// repeat when an event carries several values (a DatoCMS record and its model, say).
pub type Attributes = SmallVec<[(Box<str>, Box<str>); 6]>;

/// One accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Herald's own sequence number: unique, time-ordered (microseconds since the epoch, bumped
    /// to stay strictly increasing). Assigned at acceptance; 0 until then. It is the journal key.
    pub seq: u64,
    /// The producer's id (CloudEvents `id`, DatoCMS `webhook_call_id`, Contensis `event.id`), or a
    /// generated UUID when the producer has none. `(source, id)` is the dedup key.
    pub id: Box<str>,
    /// Which system sent it: `sitecore`, `sitecore-audit`, `contensis`, `datocms`, or a
    /// CloudEvents `source`.
    pub source: Box<str>,
    pub kind: InputKind,
    /// The topic in the producer's own spelling: `item:added`, `entry.published`, `item.update`.
    pub event_type: Box<str>,
    /// Producer's event time as it sent it (RFC 3339 for CloudEvents), if any.
    pub time: Option<Box<str>>,
    /// When Herald accepted it, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// What filters match on; see [`attr`].
    pub attributes: Attributes,
    /// The original bytes of this event (for a batch, of this item), byte for byte.
    pub payload: Bytes,
}

impl Event {
    /// The half of `event_type` before its last `:` or `.` (`item` in `item:added`, `entry` in
    /// `entry.published`, `comment.entry` in `comment.entry.created`). The whole type when it has
    /// no separator.
    pub fn resource_type(&self) -> &str {
        split_type(&self.event_type).0
    }

    /// The half of `event_type` after its last `:` or `.` (`added`, `published`); empty when the
    /// type has no separator.
    pub fn action(&self) -> &str {
        split_type(&self.event_type).1
    }

    /// Values of one attribute (names are lower-case).
    pub fn attribute<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes
            .iter()
            .filter(move |(n, _)| &**n == name)
            .map(|(_, v)| &**v)
    }
}

/// Splits a topic at its last `:` or `.` into `(resource_type, action)`.
pub fn split_type(t: &str) -> (&str, &str) {
    match t.rfind([':', '.']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_types_at_last_separator() {
        let cases = [
            ("item:added", ("item", "added")),
            ("entry.published", ("entry", "published")),
            ("comment.entry.created", ("comment.entry", "created")),
            (
                "sitecore.backbone.messages.audit.created",
                ("sitecore.backbone.messages.audit", "created"),
            ),
            ("ping", ("ping", "")),
        ];
        for (t, want) in cases {
            assert_eq!(split_type(t), want, "{t}");
        }
    }

    #[test]
    fn input_kind_roundtrips_through_u8() {
        for k in InputKind::ALL {
            assert_eq!(InputKind::from_u8(k as u8), Some(k));
        }
        assert_eq!(InputKind::from_u8(9), None);
    }
}
