//! `POST /v1/events`: CloudEvents 1.0, structured mode (JSON event format), one event, a JSON
//! batch, or NDJSON.
//!
//! The event is validated as the CloudEvents spec requires (required attributes, `specversion`
//! 1.0, RFC 3339 `time`, attribute naming, at most one of `data` / `data_base64`) so that what
//! Herald passes through to subscribers is a valid CloudEvent. Extension attributes become
//! filterable attributes under their own names, which is how a CloudEvents producer sets
//! `language`, `contenttype` and the rest; `subject` becomes [`attr::SUBJECT`].
//!
//! The object is walked once (simd-json's tape iterates keys in order); fields are borrowed
//! from the tape, and only the event's own strings are allocated.

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::tape::Value;

use super::{DecodeError, Obj, Shape, essence, push_attr, type_name, unsupported};
use crate::model::event::attr;
use crate::model::{Attributes, Event, InputKind};

/// Structured-mode content type: the body is one event.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";
/// Batched content type: the body is a JSON array of events.
pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";
/// Newline-delimited JSON: one event per line.
pub const NDJSON_CONTENT_TYPE: &str = "application/x-ndjson";

const ACCEPTED: &str = "/v1/events accepts application/cloudevents+json (one event), \
     application/cloudevents-batch+json (an array of events), application/json (either) or \
     application/x-ndjson (one event per line)";

/// How a `/v1/events` body is framed, from its content type (parameters ignored, compared
/// case-insensitively). No content type is taken as `application/json`.
pub(crate) fn shape(content_type: Option<&str>) -> Result<Shape, DecodeError> {
    let Some(ct) = content_type.map(essence).filter(|e| !e.is_empty()) else {
        return Ok(Shape::ObjectOrArray);
    };
    let is = |t: &str| ct.eq_ignore_ascii_case(t);
    if is("application/json") {
        Ok(Shape::ObjectOrArray)
    } else if is(CONTENT_TYPE) {
        Ok(Shape::Single)
    } else if is(BATCH_CONTENT_TYPE) {
        Ok(Shape::Array)
    } else if is(NDJSON_CONTENT_TYPE) {
        Ok(Shape::Lines)
    } else {
        Err(unsupported(ct, ACCEPTED))
    }
}

/// Maps one CloudEvent object to an event, or says what is wrong with it.
pub(crate) fn decode_item(
    obj: Obj<'_, '_>,
    payload: Bytes,
    received_at_ms: i64,
) -> Result<Event, String> {
    let mut specversion = None;
    let mut id = None;
    let mut source = None;
    let mut ty = None;
    let mut time = None;
    let mut subject = None;
    let mut has_data = false;
    let mut has_data_base64 = false;
    // The first problem found among optional and extension attributes; reported after the
    // required attributes, whose absence is the more useful thing to hear first.
    let mut problem: Option<String> = None;
    let mut attributes = Attributes::new();

    for (name, v) in obj.iter() {
        match name {
            "specversion" => specversion = Some(v),
            "id" => id = Some(v),
            "source" => source = Some(v),
            "type" => ty = Some(v),
            "time" => time = Some(v),
            "subject" => subject = Some(v),
            "datacontenttype" | "dataschema" => {
                if !v.is_null() && !v.is_str() && problem.is_none() {
                    problem = Some(format!("`{name}` must be a string, got {}", type_name(v)));
                }
            }
            "data" => has_data = !v.is_null(),
            "data_base64" => {
                has_data_base64 = !v.is_null();
                if has_data_base64 && !v.is_str() && problem.is_none() {
                    problem = Some(format!(
                        "`data_base64` must be a base64 string, got {}",
                        type_name(v)
                    ));
                }
            }
            _ => {
                if let Err(p) = extension(name, v, &mut attributes) {
                    problem.get_or_insert(p);
                }
            }
        }
    }

    let specversion = required(specversion, "specversion")?;
    if specversion != "1.0" {
        return Err(format!(
            "unsupported specversion `{specversion}`: only CloudEvents 1.0 is accepted"
        ));
    }
    let id = required(id, "id")?;
    let source = required(source, "source")?;
    let ty = required(ty, "type")?;
    let time = match time.filter(|v| !v.is_null()) {
        None => None,
        Some(v) => match v.into_string() {
            Some(t) if is_rfc3339(t) => Some(t),
            Some(t) => {
                return Err(format!(
                    "`time` must be an RFC 3339 timestamp (like 2024-08-26T14:30:00Z), got `{t}`"
                ));
            }
            None => return Err(format!("`time` must be a string, got {}", type_name(v))),
        },
    };
    if let Some(v) = subject.filter(|v| !v.is_null()) {
        match v.into_string() {
            Some(s) => push_attr(&mut attributes, attr::SUBJECT, s),
            None => return Err(format!("`subject` must be a string, got {}", type_name(v))),
        }
    }
    if has_data && has_data_base64 {
        return Err("both `data` and `data_base64` are set; an event carries at most one".into());
    }
    if let Some(p) = problem {
        return Err(p);
    }
    Ok(super::event(
        InputKind::CloudEvent,
        id.into(),
        source.into(),
        ty.into(),
        time,
        attributes,
        payload,
        received_at_ms,
    ))
}

/// A required string attribute: present, a string, not empty.
fn required<'i>(v: Option<Value<'_, 'i>>, name: &str) -> Result<&'i str, String> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Err(format!("missing required attribute `{name}`"));
    };
    match v.into_string() {
        Some("") => Err(format!("`{name}` must not be empty")),
        Some(s) => Ok(s),
        None => Err(format!("`{name}` must be a string, got {}", type_name(v))),
    }
}

/// Checks an extension attribute and adds it to `attributes` (value as text, lower-cased).
fn extension(name: &str, v: Value<'_, '_>, attributes: &mut Attributes) -> Result<(), String> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "attribute name `{name}` is invalid: CloudEvents attribute names use only lower-case \
             letters a-z and digits 0-9"
        ));
    }
    if let Some(s) = v.into_string() {
        push_attr(attributes, name, s);
    } else if let Some(b) = v.as_bool() {
        push_attr(attributes, name, if b { "true" } else { "false" });
    } else if let Some(n) = v.as_i64() {
        attributes.push((name.into(), n.to_string().into_boxed_str()));
    } else if let Some(n) = v.as_u64() {
        attributes.push((name.into(), n.to_string().into_boxed_str()));
    } else if let Some(n) = v.as_f64() {
        attributes.push((name.into(), n.to_string().into_boxed_str()));
    } else if !v.is_null() {
        // A null attribute is the same as an absent one.
        return Err(format!(
            "extension attribute `{name}` must be a string, number or boolean, got {}",
            type_name(v)
        ));
    }
    Ok(())
}

/// RFC 3339 `date-time` (`2024-08-26T14:30:00Z`, `…T14:30:00.123+02:00`; `T` and `Z` in either
/// case). The grammar is checked here, strictly (jiff alone also takes ISO 8601 forms that
/// RFC 3339 does not); jiff then checks the ranges (month 13, February 30, …).
pub(crate) fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize, to: usize| {
        b.get(from..to)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let date_time = digits(0, 4)
        && at(4, b"-")
        && digits(5, 7)
        && at(7, b"-")
        && digits(8, 10)
        && at(10, b"Tt")
        && digits(11, 13)
        && at(13, b":")
        && digits(14, 16)
        && at(16, b":")
        && digits(17, 19);
    if !date_time {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        let frac = i + 1;
        i = frac;
        while at(i, b"0123456789") {
            i += 1;
        }
        if i == frac {
            return false;
        }
    }
    let offset_ok = match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', ..] => {
            b.len() == i + 6 && digits(i + 1, i + 3) && at(i + 3, b":") && digits(i + 4, i + 6)
        }
        _ => false,
    };
    offset_ok && s.parse::<jiff::Timestamp>().is_ok()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::tests::{decode_ok, limits};
    use super::*;
    use crate::decode::{DecodeError, decode};

    /// A realistic ~600-byte structured-mode CloudEvent.
    pub(crate) const EVENT: &str = r#"{
  "specversion": "1.0",
  "id": "A234-1234-1234",
  "source": "https://cms.example.com/sites/main",
  "type": "com.example.cms.entry.published",
  "subject": "Entries/Blog/Hello-World",
  "time": "2024-08-26T14:30:00Z",
  "datacontenttype": "application/json",
  "language": "EN-GB",
  "contenttype": "blogPost",
  "priority": 3,
  "preview": false,
  "data": {
    "id": "39830648",
    "title": "Hello \"world\"",
    "slug": "hello-world",
    "tags": ["news", "release"],
    "author": {"id": "42011", "name": "Mark Smith"},
    "body": "<p>First post of the year, with an escaped \\ backslash and a ] bracket.</p>"
  }
}"#;

    #[test]
    fn content_types_pick_the_framing() {
        let cases: &[(Option<&str>, Option<Shape>)] = &[
            (None, Some(Shape::ObjectOrArray)),
            (Some(""), Some(Shape::ObjectOrArray)),
            (Some("application/json"), Some(Shape::ObjectOrArray)),
            (
                Some("Application/JSON; charset=utf-8"),
                Some(Shape::ObjectOrArray),
            ),
            (Some("application/cloudevents+json"), Some(Shape::Single)),
            (
                Some("application/cloudevents+json;charset=UTF-8"),
                Some(Shape::Single),
            ),
            (
                Some("application/cloudevents-batch+json"),
                Some(Shape::Array),
            ),
            (Some("application/x-ndjson"), Some(Shape::Lines)),
            (Some("text/plain"), None),
            (Some("application/xml"), None),
            (Some("application/vnd.foo+json"), None),
        ];
        for (ct, want) in cases {
            let got = shape(*ct);
            match want {
                Some(s) => assert_eq!(got.ok(), Some(*s), "{ct:?}"),
                None => {
                    let e = got.expect_err("415");
                    assert_eq!(e.status(), 415);
                    assert!(
                        e.to_string().contains("application/cloudevents+json"),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn decodes_a_structured_event() {
        let body = Bytes::from_static(EVENT.as_bytes());
        let evs = decode_ok(InputKind::CloudEvent, Some(CONTENT_TYPE), &body);
        assert_eq!(evs.len(), 1);
        let e = &evs[0];
        assert_eq!(&*e.id, "A234-1234-1234");
        assert_eq!(&*e.source, "https://cms.example.com/sites/main");
        assert_eq!(&*e.event_type, "com.example.cms.entry.published");
        assert_eq!(e.time.as_deref(), Some("2024-08-26T14:30:00Z"));
        assert_eq!(e.kind, InputKind::CloudEvent);
        assert_eq!(e.seq, 0);
        assert_eq!(e.received_at_ms, 1_700_000_000_000);
        assert_eq!(e.payload, body);
        let attrs: Vec<(&str, &str)> = e.attributes.iter().map(|(n, v)| (&**n, &**v)).collect();
        assert_eq!(
            attrs,
            [
                ("language", "en-gb"),
                ("contenttype", "blogpost"),
                ("priority", "3"),
                ("preview", "false"),
                ("subject", "entries/blog/hello-world"),
            ]
        );
    }

    #[test]
    fn extension_values_become_text() {
        let cases = [
            (r#""Mixed Case""#, Some("mixed case")),
            ("42", Some("42")),
            ("-7", Some("-7")),
            ("1.5", Some("1.5")),
            ("true", Some("true")),
            ("null", None),
            (r#""""#, None),
        ];
        for (json, want) in cases {
            let body =
                format!(r#"{{"specversion":"1.0","id":"1","source":"s","type":"t","ext":{json}}}"#);
            let evs = decode_ok(InputKind::CloudEvent, None, &Bytes::from(body));
            assert_eq!(evs[0].attribute("ext").next(), want, "{json}");
        }
    }

    #[test]
    fn invalid_events_say_why() {
        let base = r#""specversion":"1.0","id":"1","source":"/s","type":"t""#;
        let cases: &[(String, &str)] = &[
            (
                r#"{"id":"1","source":"/s","type":"t"}"#.into(),
                "missing required attribute `specversion`",
            ),
            (
                r#"{"specversion":"0.3","id":"1","source":"/s","type":"t"}"#.into(),
                "unsupported specversion `0.3`",
            ),
            (
                r#"{"specversion":1.0,"id":"1","source":"/s","type":"t"}"#.into(),
                "`specversion` must be a string, got a number",
            ),
            (
                r#"{"specversion":"1.0","source":"/s","type":"t"}"#.into(),
                "missing required attribute `id`",
            ),
            (
                r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#.into(),
                "`id` must not be empty",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":null,"type":"t"}"#.into(),
                "missing required attribute `source`",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":7}"#.into(),
                "`type` must be a string, got a number",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s"}"#.into(),
                "missing required attribute `type`",
            ),
            (
                format!(r#"{{{base},"time":"yesterday"}}"#),
                "`time` must be an RFC 3339 timestamp",
            ),
            (
                format!(r#"{{{base},"time":"2024-02-30T00:00:00Z"}}"#),
                "`time` must be an RFC 3339",
            ),
            (format!(r#"{{{base},"time":5}}"#), "`time` must be a string"),
            (
                format!(r#"{{{base},"subject":{{}}}}"#),
                "`subject` must be a string, got an object",
            ),
            (
                format!(r#"{{{base},"data":1,"data_base64":"AQ=="}}"#),
                "both `data` and `data_base64`",
            ),
            (
                format!(r#"{{{base},"data_base64":[1]}}"#),
                "`data_base64` must be a base64 string",
            ),
            (
                format!(r#"{{{base},"datacontenttype":1}}"#),
                "`datacontenttype` must be a string",
            ),
            (
                format!(r#"{{{base},"Language":"en"}}"#),
                "attribute name `Language` is invalid",
            ),
            (
                format!(r#"{{{base},"content_type":"x"}}"#),
                "attribute name `content_type` is invalid",
            ),
            (
                format!(r#"{{{base},"tags":["a"]}}"#),
                "extension attribute `tags` must be a string, number or boolean, got an array",
            ),
            // Required attributes are reported before extension problems.
            (
                r#"{"specversion":"1.0","Bad":1,"id":"1","type":"t"}"#.into(),
                "missing required attribute `source`",
            ),
        ];
        for (body, want) in cases {
            let err = decode(
                InputKind::CloudEvent,
                None,
                &Bytes::from(body.clone()),
                &limits(),
                0,
            )
            .expect_err(body);
            assert!(matches!(err, DecodeError::Invalid(_)), "{body}: {err:?}");
            assert_eq!((err.status(), err.reason()), (400, "invalid"), "{body}");
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn rfc3339_table() {
        let cases = [
            ("2024-08-26T14:30:00Z", true),
            ("2024-08-26t14:30:00z", true),
            ("2024-08-26T14:30:00.123456789+02:00", true),
            ("2024-08-26T14:30:00-05:30", true),
            ("2024-12-31T23:59:60Z", true),
            ("2024-08-26 14:30:00Z", false),
            ("2024-08-26T14:30Z", false),
            ("2024-08-26T14:30:00", false),
            ("2024-08-26T14:30:00.Z", false),
            ("2024-08-26T14:30:00+0200", false),
            ("2024-08-26T14:30:00+02:00[Europe/Paris]", false),
            ("20240826T143000Z", false),
            ("2024-13-01T00:00:00Z", false),
            ("2024-02-30T00:00:00Z", false),
            ("2024-08-26T25:00:00Z", false),
            ("", false),
        ];
        for (s, want) in cases {
            assert_eq!(is_rfc3339(s), want, "{s}");
        }
    }
}
