//! Byte-level JSON helpers for the body builders: string escaping into a buffer, and a scanner
//! that finds the top-level members of an object without parsing the values.
//!
//! Bodies are written straight into one pre-sized `Vec<u8>` instead of through a
//! `serde_json::Value` tree, and rewrites (Sitecore `WebhookItemId`/`WebhookItemName`) splice new
//! values between the original bytes, so every byte the producer sent and we did not mean to change
//! reaches the subscriber unchanged. The payloads were already parsed by `crate::decode`, so the
//! scanner only has to find structure, not validate every number; it still refuses anything it
//! cannot delimit rather than guess. It loops with a depth counter, never recursion, so nesting
//! depth costs nothing.

use std::ops::Range;

use smallvec::SmallVec;

/// Appends `s` as a JSON string (quotes included), escaped exactly as `serde_json` does.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// Appends `bytes` (UTF-8) escaped as the contents of a JSON string, without the quotes: for
/// text that goes inside a string a template already opened.
pub(crate) fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // One table lookup per byte: measured twice as fast as a `match` on the byte.
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        if esc == b'u' {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[(b >> 4) as usize]);
            out.push(HEX[(b & 0xf) as usize]);
        } else {
            out.extend_from_slice(&[b'\\', esc]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// For each byte: 0 when it goes into a JSON string as is, else the character after the `\`
/// (`u` for the `\u00XX` form).
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = b'u';
        b += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// `s` as a JSON string literal, for values compiled once (ids, names) and spliced per render.
pub(crate) fn quoted(s: &str) -> Box<[u8]> {
    let mut v = Vec::with_capacity(s.len() + 2);
    write_str(&mut v, s);
    v.into_boxed_slice()
}

/// Why a payload could not be scanned as a JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("expected a JSON object at byte {0}")]
    NotAnObject(usize),
    #[error("expected a JSON array at byte {0}")]
    NotAnArray(usize),
    #[error("expected a member name (a string) at byte {0}")]
    ExpectedKey(usize),
    #[error("expected `:` at byte {0}")]
    ExpectedColon(usize),
    #[error("expected `,` or `}}` at byte {0}")]
    ExpectedCommaOrEnd(usize),
    #[error("expected a value at byte {0}")]
    ExpectedValue(usize),
    #[error("unexpected end of input")]
    UnexpectedEnd,
}

/// One top-level member: where its name (the bytes between the quotes, escapes not decoded) and
/// its value are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// The shape of one object, found by [`scan_object`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectSpan {
    /// Index of the opening `{`.
    pub open: usize,
    /// Index of the closing `}`.
    pub close: usize,
    /// End of the last member's value (`open + 1` for an empty object): where a new member is
    /// appended, so whitespace before the `}` stays where the producer put it.
    pub last_value_end: usize,
    pub is_empty: bool,
}

/// Walks the object that starts at the first non-whitespace byte of `buf`, calling `on_member`
/// for each top-level member in order. Bytes after the closing `}` are not looked at.
pub(crate) fn scan_object(
    buf: &[u8],
    mut on_member: impl FnMut(&Member),
) -> Result<ObjectSpan, ScanError> {
    let open = skip_ws(buf, 0);
    if buf.get(open) != Some(&b'{') {
        return Err(ScanError::NotAnObject(open));
    }
    let mut i = skip_ws(buf, open + 1);
    if buf.get(i) == Some(&b'}') {
        return Ok(ObjectSpan {
            open,
            close: i,
            last_value_end: open + 1,
            is_empty: true,
        });
    }
    loop {
        if buf.get(i) != Some(&b'"') {
            return Err(if i >= buf.len() {
                ScanError::UnexpectedEnd
            } else {
                ScanError::ExpectedKey(i)
            });
        }
        let key_end = skip_string(buf, i)?;
        let key = i + 1..key_end - 1;
        i = skip_ws(buf, key_end);
        match buf.get(i) {
            Some(b':') => {}
            Some(_) => return Err(ScanError::ExpectedColon(i)),
            None => return Err(ScanError::UnexpectedEnd),
        }
        let value_start = skip_ws(buf, i + 1);
        let value_end = skip_value(buf, value_start)?;
        on_member(&Member {
            key,
            value: value_start..value_end,
        });
        i = skip_ws(buf, value_end);
        match buf.get(i) {
            Some(b',') => i = skip_ws(buf, i + 1),
            Some(b'}') => {
                return Ok(ObjectSpan {
                    open,
                    close: i,
                    last_value_end: value_end,
                    is_empty: false,
                });
            }
            Some(_) => return Err(ScanError::ExpectedCommaOrEnd(i)),
            None => return Err(ScanError::UnexpectedEnd),
        }
    }
}

fn skip_ws(buf: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = buf.get(i) {
        i += 1;
    }
    i
}

/// `buf[start]` is `"`; returns the index just past the closing quote.
fn skip_string(buf: &[u8], start: usize) -> Result<usize, ScanError> {
    // A plain loop: JSON strings are mostly short, and `memchr`'s per-call set-up cost more
    // than it saved here (a third of the Sitecore rewrite in a profile).
    let mut i = start + 1;
    while let Some(&b) = buf.get(i) {
        match b {
            b'"' => return Ok(i + 1),
            // A backslash escapes the next byte (for `\uXXXX` the hex digits need no care).
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Err(ScanError::UnexpectedEnd)
}

/// Returns the index just past the value starting at `start`.
fn skip_value(buf: &[u8], start: usize) -> Result<usize, ScanError> {
    match buf.get(start) {
        None => Err(ScanError::UnexpectedEnd),
        Some(b'"') => skip_string(buf, start),
        Some(b'{' | b'[') => skip_container(buf, start),
        Some(b',' | b'}' | b']' | b':') => Err(ScanError::ExpectedValue(start)),
        Some(_) => {
            // A number, `true`, `false` or `null`: runs until a delimiter.
            let mut i = start;
            while let Some(&b) = buf.get(i) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                i += 1;
            }
            Ok(i)
        }
    }
}

/// `buf[start]` is `{` or `[`; returns the index just past its matching close.
fn skip_container(buf: &[u8], start: usize) -> Result<usize, ScanError> {
    let mut depth = 0usize;
    let mut i = start;
    while let Some(&b) = buf.get(i) {
        if !STRUCTURAL[b as usize] {
            i += 1;
            continue;
        }
        match b {
            b'"' => {
                i = skip_string(buf, i)?;
                continue;
            }
            b'{' | b'[' => depth += 1,
            _ => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 1);
                }
            }
        }
        i += 1;
    }
    Err(ScanError::UnexpectedEnd)
}

/// The bytes [`skip_container`] must look at: quotes and brackets.
static STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'{' as usize] = true;
    t[b'[' as usize] = true;
    t[b'}' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// Where a member that is absent goes: first (Sitecore writes `EventName` first) or last
/// (`WebhookItemId`/`WebhookItemName` close the Sitecore body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    First,
    Last,
}

/// A new member value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// Already JSON (a quoted string compiled once, say): copied as is.
    Json(&'a [u8]),
    /// A string, quoted and escaped as it is written.
    Str(&'a str),
}

impl Value<'_> {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Value::Json(v) => out.extend_from_slice(v),
            Value::Str(s) => write_str(out, s),
        }
    }
}

/// One member to set: its name (plain ASCII, no characters that need escaping), its new value,
/// and where it goes when the object does not have it yet.
pub(crate) struct SetMember<'a> {
    pub key: &'a str,
    pub value: Value<'a>,
    pub place: Place,
}

/// Most members a single rewrite sets (`EventName`, `WebhookItemId`, `WebhookItemName`).
const MAX_SETS: usize = 4;

/// Writes the object at the start of `obj` to `out` with each of `sets` given its new value:
/// every occurrence of the member is replaced in place (so readers that keep the first or the
/// last duplicate both see it), an absent member is added at its [`Place`]. Every other byte of
/// the object, whitespace included, is copied unchanged; bytes after the closing `}` are copied
/// too when `keep_trailing` (a whole body) and dropped otherwise (a nested value).
pub(crate) fn write_with_members(
    obj: &[u8],
    sets: &[SetMember<'_>],
    keep_trailing: bool,
    out: &mut Vec<u8>,
) -> Result<(), ScanError> {
    debug_assert!(sets.len() <= MAX_SETS);
    let mut present = [false; MAX_SETS];
    // Value spans to replace, in document order, with the index of their new value. More than
    // the inline few only when a body repeats a member name; never more than its member count.
    let mut edits: SmallVec<[(Range<usize>, usize); MAX_SETS]> = SmallVec::new();
    let span = scan_object(obj, |m| {
        let key = &obj[m.key.clone()];
        if let Some(k) = sets.iter().position(|s| s.key.as_bytes() == key) {
            present[k] = true;
            edits.push((m.value.clone(), k));
        }
    })?;

    out.extend_from_slice(&obj[..=span.open]);
    let mut first_count = 0;
    for (k, s) in sets.iter().enumerate() {
        if !present[k] && s.place == Place::First {
            if first_count > 0 {
                out.push(b',');
            }
            write_member(out, s);
            first_count += 1;
        }
    }
    if first_count > 0 && !span.is_empty {
        out.push(b',');
    }

    let mut copied = span.open + 1;
    for (value, k) in edits {
        out.extend_from_slice(&obj[copied..value.start]);
        sets[k].value.write(out);
        copied = value.end;
    }
    out.extend_from_slice(&obj[copied..span.last_value_end]);

    let mut need_comma = !span.is_empty || first_count > 0;
    for (k, s) in sets.iter().enumerate() {
        if !present[k] && s.place == Place::Last {
            if need_comma {
                out.push(b',');
            }
            write_member(out, s);
            need_comma = true;
        }
    }
    let tail_end = if keep_trailing {
        obj.len()
    } else {
        span.close + 1
    };
    out.extend_from_slice(&obj[span.last_value_end..tail_end]);
    Ok(())
}

fn write_member(out: &mut Vec<u8>, s: &SetMember<'_>) {
    out.push(b'"');
    out.extend_from_slice(s.key.as_bytes());
    out.extend_from_slice(b"\":");
    s.value.write(out);
}

/// The value of the top-level member `key` of the object in `buf`, if it has one (the last one
/// when the name repeats, as most JSON readers keep the last).
pub(crate) fn member_value<'a>(buf: &'a [u8], key: &str) -> Result<Option<&'a [u8]>, ScanError> {
    let mut found = None;
    scan_object(buf, |m| {
        if &buf[m.key.clone()] == key.as_bytes() {
            found = Some(m.value.clone());
        }
    })?;
    Ok(found.map(|r| &buf[r]))
}

/// Walks the array that starts at the first non-whitespace byte of `buf`, calling `on_element`
/// with the span of each element in order. Bytes after the closing `]` are not looked at.
pub(crate) fn scan_array(
    buf: &[u8],
    mut on_element: impl FnMut(Range<usize>),
) -> Result<(), ScanError> {
    let open = skip_ws(buf, 0);
    if buf.get(open) != Some(&b'[') {
        return Err(ScanError::NotAnArray(open));
    }
    let mut i = skip_ws(buf, open + 1);
    if buf.get(i) == Some(&b']') {
        return Ok(());
    }
    loop {
        let end = skip_value(buf, i)?;
        on_element(i..end);
        i = skip_ws(buf, end);
        match buf.get(i) {
            Some(b',') => i = skip_ws(buf, i + 1),
            Some(b']') => return Ok(()),
            Some(_) => return Err(ScanError::ExpectedCommaOrEnd(i)),
            None => return Err(ScanError::UnexpectedEnd),
        }
    }
}

/// `buf` without the JSON whitespace around it.
pub(crate) fn trim(buf: &[u8]) -> &[u8] {
    let start = skip_ws(buf, 0);
    let mut end = buf.len();
    while end > start && matches!(buf[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
        end -= 1;
    }
    &buf[start..end]
}

/// What kind of JSON value `v` (trimmed, as found by a scan) is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Object,
    Array,
    Null,
    /// A number, `true` or `false`: written the same inside or outside a string.
    Scalar,
}

pub(crate) fn kind(v: &[u8]) -> Kind {
    match v.first() {
        Some(b'"') => Kind::String,
        Some(b'{') => Kind::Object,
        Some(b'[') => Kind::Array,
        Some(b'n') | None => Kind::Null,
        Some(_) => Kind::Scalar,
    }
}

/// The bytes between the quotes of a JSON string literal, escapes left as they are (so they can
/// be copied into another JSON string unchanged).
pub(crate) fn str_inner(v: &[u8]) -> &[u8] {
    if v.len() >= 2 && v[0] == b'"' && v[v.len() - 1] == b'"' {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

/// The text of a JSON string literal, escapes decoded. Borrows when there is nothing to decode.
/// Bytes that are not valid UTF-8 or a malformed escape (the payload was validated when it was
/// accepted, so neither should occur) come out replaced rather than failing the render.
pub(crate) fn unescape(v: &[u8]) -> std::borrow::Cow<'_, str> {
    let inner = str_inner(v);
    if !inner.contains(&b'\\') {
        return String::from_utf8_lossy(inner);
    }
    match serde_json::from_slice::<String>(v) {
        Ok(s) => std::borrow::Cow::Owned(s),
        Err(_) => String::from_utf8_lossy(inner),
    }
}

/// Whether the raw (still escaped) member name `raw` is `name`.
pub(crate) fn key_is(raw: &[u8], name: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|k| k == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_str_matches_serde_json() {
        let cases = [
            "",
            "plain",
            "quote \" and backslash \\",
            "new\nline\rcr\ttab",
            "\u{0}\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "unicode é ✓ 😀 \u{2028}",
            "sitecore\\user@example.com",
            "</script>",
        ];
        for s in cases {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let want = serde_json::to_string(s).expect("a string serializes");
            assert_eq!(String::from_utf8(out).expect("utf-8"), want, "{s:?}");
        }
        // Every single byte value below 0x80 and a few multibyte ones, against serde_json.
        for c in (0u8..0x80).map(char::from).chain(['é', '€', '𝄞']) {
            let s = format!("a{c}b");
            let mut out = Vec::new();
            write_str(&mut out, &s);
            assert_eq!(
                out,
                serde_json::to_vec(&s).expect("serializes"),
                "{:?}",
                c as u32
            );
        }
    }

    fn keys_and_values(buf: &str) -> Result<Vec<(String, String)>, ScanError> {
        let mut out = Vec::new();
        scan_object(buf.as_bytes(), |m| {
            out.push((
                buf[m.key.clone()].to_string(),
                buf[m.value.clone()].to_string(),
            ))
        })?;
        Ok(out)
    }

    #[test]
    fn scans_top_level_members_only() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        let cases: &[(&str, Vec<(String, String)>)] = &[
            ("{}", vec![]),
            (" \n{ \t}\n", vec![]),
            (r#"{"a":1}"#, vec![kv("a", "1")]),
            (
                r#"{ "a" : "x,}\"y" , "b":[1,{"c":"]"}], "d":{"e":{}} ,"f":null,"g":-1.5e3 }"#,
                vec![
                    kv("a", r#""x,}\"y""#),
                    kv("b", r#"[1,{"c":"]"}]"#),
                    kv("d", r#"{"e":{}}"#),
                    kv("f", "null"),
                    kv("g", "-1.5e3"),
                ],
            ),
            (r#"{"k\"ey":true}"#, vec![kv(r#"k\"ey"#, "true")]),
        ];
        for (input, want) in cases {
            assert_eq!(&keys_and_values(input).expect(input), want, "{input}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_delimit() {
        let cases = [
            ("[1]", ScanError::NotAnObject(0)),
            ("", ScanError::NotAnObject(0)),
            ("{", ScanError::UnexpectedEnd),
            (r#"{"a""#, ScanError::UnexpectedEnd),
            (r#"{"a" 1}"#, ScanError::ExpectedColon(5)),
            (r#"{"a":}"#, ScanError::ExpectedValue(5)),
            (r#"{"a":1 "b":2}"#, ScanError::ExpectedCommaOrEnd(7)),
            (r#"{a:1}"#, ScanError::ExpectedKey(1)),
            (r#"{"a":"unterminated}"#, ScanError::UnexpectedEnd),
            (r#"{"a":[1,2}"#, ScanError::UnexpectedEnd),
            (r#"{"a":1,}"#, ScanError::ExpectedKey(7)),
        ];
        for (input, want) in cases {
            assert_eq!(keys_and_values(input), Err(want), "{input}");
        }
    }

    #[test]
    fn sets_members_keeping_every_other_byte() {
        let sets = [
            SetMember {
                key: "EventName",
                value: Value::Str("item:added"),
                place: Place::First,
            },
            SetMember {
                key: "Id",
                value: Value::Json(br#""new""#),
                place: Place::Last,
            },
        ];
        let cases = [
            // Replaced in place, spacing and order kept, trailing newline kept.
            (
                "{ \"Id\" : \"old\", \"x\": [1, 2] ,\n\"EventName\":\"e\" }\n",
                "{ \"Id\" : \"new\", \"x\": [1, 2] ,\n\"EventName\":\"item:added\" }\n",
            ),
            // Absent: EventName first, Id last, before the whitespace that precedes `}`.
            (
                "{\n  \"x\": 1\n}",
                "{\"EventName\":\"item:added\",\n  \"x\": 1,\"Id\":\"new\"\n}",
            ),
            ("{}", "{\"EventName\":\"item:added\",\"Id\":\"new\"}"),
            (" { } ", " {\"EventName\":\"item:added\",\"Id\":\"new\" } "),
            // Duplicates: every occurrence replaced.
            (
                r#"{"Id":1,"Id":{"a":"}"},"EventName":null}"#,
                r#"{"Id":"new","Id":"new","EventName":"item:added"}"#,
            ),
            // A nested member of the same name is not top-level and stays.
            (
                r#"{"EventName":"x","Item":{"Id":"keep"}}"#,
                r#"{"EventName":"item:added","Item":{"Id":"keep"},"Id":"new"}"#,
            ),
        ];
        for (input, want) in cases {
            let mut out = Vec::new();
            write_with_members(input.as_bytes(), &sets, true, &mut out).expect(input);
            assert_eq!(String::from_utf8(out).expect("utf-8"), want, "{input}");
        }
    }

    #[test]
    fn nested_object_drops_what_follows_it() {
        let sets = [SetMember {
            key: "k",
            value: Value::Json(b"2"),
            place: Place::Last,
        }];
        let mut out = Vec::new();
        write_with_members(br#"{"k":1} ,"next":3}"#, &sets, false, &mut out).expect("object");
        assert_eq!(out, br#"{"k":2}"#);
    }

    #[test]
    fn scans_arrays_and_reads_values() {
        let buf = br#" [1, "a,]", {"b":[2]} ,[ ] ,null] tail"#;
        let mut items = Vec::new();
        scan_array(buf, |r| {
            items.push(std::str::from_utf8(&buf[r]).expect("utf-8"))
        })
        .expect("array");
        assert_eq!(items, ["1", r#""a,]""#, r#"{"b":[2]}"#, "[ ]", "null"]);
        assert_eq!(scan_array(b"[]", |_| panic!("empty")), Ok(()));
        assert_eq!(scan_array(b"{}", |_| {}), Err(ScanError::NotAnArray(0)));
        assert_eq!(
            scan_array(b"[1 2]", |_| {}),
            Err(ScanError::ExpectedCommaOrEnd(3))
        );

        let kinds = [
            (&b"\"x\""[..], Kind::String),
            (b"{}", Kind::Object),
            (b"[]", Kind::Array),
            (b"null", Kind::Null),
            (b"", Kind::Null),
            (b"-1.5", Kind::Scalar),
            (b"true", Kind::Scalar),
        ];
        for (v, k) in kinds {
            assert_eq!(kind(v), k, "{v:?}");
        }
        assert_eq!(trim(b" \n {} \t"), b"{}");
        assert_eq!(str_inner(br#""a\"b""#), br#"a\"b"#);
        assert_eq!(unescape(br#""plain""#), "plain");
        assert_eq!(unescape(br#""a\"b\u00e9\n""#), "a\"b\u{e9}\n");
        assert!(key_is(b"name", "name"));
        assert!(key_is(br#"n\u0061me"#, "name"));
        assert!(!key_is(br#"n\u0061mex"#, "name"));
        let mut out = Vec::new();
        write_escaped(&mut out, "a\"\n".as_bytes());
        assert_eq!(out, br#"a\"\n"#);
    }

    #[test]
    fn finds_member_values() {
        let buf = br#"{"specversion":"1.0","data":{"a":[1]},"data":{"b":2},"x":"data"}"#;
        assert_eq!(
            member_value(buf, "data").expect("object"),
            Some(&br#"{"b":2}"#[..])
        );
        assert_eq!(member_value(buf, "nope").expect("object"), None);
        assert!(member_value(b"[]", "data").is_err());
    }
}
