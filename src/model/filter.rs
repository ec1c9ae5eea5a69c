//! Topic filters and the pure matching rule (DESIGN §3).
//!
//! A subscription matches an event when any of its filters matches; a filter matches when every
//! key it sets matches, with OR inside each list. Types and attribute values compare ASCII
//! case-insensitively (Sitecore writes `item:sortorderChanged` and `item:sortorderchanged`,
//! Contensis workflow names come in both cases), so everything here is stored lower-case and the
//! event side is lower-cased by the decoders.
//!
//! The topic index (`crate::route`) uses [`Filter::matches`] to verify its candidates, so this is
//! the single definition of what "matches" means.

use serde::{Deserialize, Serialize};

use super::event::Event;

/// One `types` entry: an exact topic, a trailing wildcard (`item:*`, `entry.*`) or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TypePattern {
    /// `*`: every type.
    Any,
    /// An exact type, lower-case.
    Exact(Box<str>),
    /// A trailing wildcard: the text before the `*`, lower-case, separator included (`item:`).
    Prefix(Box<str>),
}

impl TypePattern {
    /// Parses a user-written pattern. Only a single trailing `*` is a wildcard; a `*` anywhere
    /// else is an error, so typos do not silently match nothing.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("an event type must not be empty".into());
        }
        if s == "*" {
            return Ok(TypePattern::Any);
        }
        let lower = s.to_ascii_lowercase();
        match lower.find('*') {
            None => Ok(TypePattern::Exact(lower.into())),
            Some(i) if i == lower.len() - 1 => {
                Ok(TypePattern::Prefix(lower[..i].to_string().into()))
            }
            Some(_) => Err(format!(
                "`{s}`: `*` is only allowed as the last character (`item:*`) or alone (`*`)"
            )),
        }
    }

    /// `event_type_lc` must already be lower-case.
    pub fn matches(&self, event_type_lc: &str) -> bool {
        match self {
            TypePattern::Any => true,
            TypePattern::Exact(t) => &**t == event_type_lc,
            TypePattern::Prefix(p) => event_type_lc.starts_with(&**p),
        }
    }

    /// The pattern as a user writes it.
    pub fn to_pattern_string(&self) -> String {
        match self {
            TypePattern::Any => "*".into(),
            TypePattern::Exact(t) => t.to_string(),
            TypePattern::Prefix(p) => format!("{p}*"),
        }
    }
}

/// One attribute condition: the event must carry `name` with one of `values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttributeMatch {
    /// Lower-case attribute name (see `model::event::attr`).
    pub name: Box<str>,
    /// Accepted values, lower-case, non-empty.
    #[serde(deserialize_with = "super::exact::boxed")]
    pub values: Box<[Box<str>]>,
}

/// One filter. An empty `types` list means any type; an empty `attributes` list means no
/// attribute condition. A filter with both empty matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Filter {
    #[serde(deserialize_with = "super::exact::boxed")]
    pub types: Box<[TypePattern]>,
    /// Sorted by name, one entry per name.
    #[serde(deserialize_with = "super::exact::boxed")]
    pub attributes: Box<[AttributeMatch]>,
}

impl Filter {
    /// Whether this filter matches `event`. `event_type_lc` is the event's type, lower-case
    /// (callers compute it once per event, not once per filter).
    pub fn matches(&self, event: &Event, event_type_lc: &str) -> bool {
        if !self.types.is_empty() && !self.types.iter().any(|t| t.matches(event_type_lc)) {
            return false;
        }
        self.attributes.iter().all(|cond| {
            event
                .attribute(&cond.name)
                .any(|v| cond.values.iter().any(|want| **want == *v))
        })
    }
}

/// Whether any of `filters` matches. No filters at all means the subscription takes every event.
pub fn any_matches(filters: &[Filter], event: &Event, event_type_lc: &str) -> bool {
    filters.is_empty() || filters.iter().any(|f| f.matches(event, event_type_lc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::event::{Event, InputKind};
    use bytes::Bytes;

    fn event(t: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            seq: 1,
            id: "1".into(),
            source: "test".into(),
            kind: InputKind::CloudEvent,
            event_type: t.into(),
            time: None,
            received_at_ms: 0,
            attributes: attrs
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            payload: Bytes::new(),
        }
    }

    fn filter(types: &[&str], attrs: &[(&str, &[&str])]) -> Filter {
        Filter {
            types: types
                .iter()
                .map(|t| TypePattern::parse(t).unwrap())
                .collect(),
            attributes: attrs
                .iter()
                .map(|(n, vs)| AttributeMatch {
                    name: (*n).into(),
                    values: vs.iter().map(|v| (*v).into()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn parses_type_patterns() {
        assert_eq!(TypePattern::parse("*").unwrap(), TypePattern::Any);
        assert_eq!(
            TypePattern::parse("Item:Saved").unwrap(),
            TypePattern::Exact("item:saved".into())
        );
        assert_eq!(
            TypePattern::parse("entry.*").unwrap(),
            TypePattern::Prefix("entry.".into())
        );
        assert!(TypePattern::parse("").is_err());
        assert!(TypePattern::parse("it*em").is_err());
        assert!(TypePattern::parse("**").is_err());
    }

    #[test]
    fn matching_table() {
        let en_saved = event("item:saved", &[("language", "en"), ("contenttype", "abc")]);
        let cases: Vec<(Filter, bool, &str)> = vec![
            (filter(&[], &[]), true, "empty filter matches all"),
            (filter(&["item:saved"], &[]), true, "exact type"),
            (filter(&["item:added"], &[]), false, "other type"),
            (
                filter(&["item:added", "item:saved"], &[]),
                true,
                "OR within types",
            ),
            (filter(&["item:*"], &[]), true, "prefix"),
            (filter(&["publish:*"], &[]), false, "other prefix"),
            (filter(&["*"], &[]), true, "any"),
            (filter(&[], &[("language", &["en"])]), true, "attr"),
            (
                filter(&[], &[("language", &["de", "en"])]),
                true,
                "OR within attr values",
            ),
            (
                filter(&[], &[("language", &["de"])]),
                false,
                "attr mismatch",
            ),
            (
                filter(
                    &["item:saved"],
                    &[("language", &["en"]), ("contenttype", &["abc"])],
                ),
                true,
                "AND across keys",
            ),
            (
                filter(
                    &["item:saved"],
                    &[("language", &["en"]), ("contenttype", &["x"])],
                ),
                false,
                "one key fails",
            ),
            (filter(&[], &[("owner", &["bob"])]), false, "attr absent"),
        ];
        for (f, want, why) in cases {
            assert_eq!(f.matches(&en_saved, "item:saved"), want, "{why}");
        }
    }

    #[test]
    fn any_filter_matches() {
        let e = event("entry.published", &[]);
        assert!(any_matches(&[], &e, "entry.published"));
        let fs = [filter(&["entry.created"], &[]), filter(&["entry.*"], &[])];
        assert!(any_matches(&fs, &e, "entry.published"));
        assert!(!any_matches(&fs[..1], &e, "entry.published"));
    }
}
