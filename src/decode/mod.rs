//! Decode: request body bytes → normalized [`Event`]s (DESIGN §2).
//!
//! Sits between ingest (listeners, body limits, auth) and the journal. Ingest hands over the
//! whole body as `Bytes` with its content type; [`decode`] picks the input format from the
//! route's [`InputKind`], checks the content type, frames the body into items, parses each item
//! with simd-json and maps it to an `Event`. Nothing is accepted until the whole body decoded:
//! a batch is atomic, and its error lists every bad item. Every error says, for the person who
//! sent the body, what is wrong and where; [`DecodeError::status`] and [`DecodeError::reason`]
//! give ingest the HTTP status and the metric label.
//!
//! How it is built, and why:
//! - Each event's `payload` is a zero-copy slice of the body (the item's exact bytes), because
//!   `raw` delivery and CloudEvents pass-through send those bytes as they came. simd-json cannot
//!   say where a value sits and rewrites its input, so `scan` finds a batch's item boundaries
//!   (and enforces the depth limit) in one cheap pass, and simd-json parses each item from a
//!   reused scratch copy. A single body or NDJSON line goes straight to simd-json, which
//!   enforces the same depth limit; only when it fails does the scanner look again, because it
//!   can say where a body is too deep, unclosed or followed by junk, and simd-json cannot.
//! - simd-json fills a flat tape (one `Vec` of nodes, reused across items and requests, see
//!   `Parser`); the format decoders read fields through borrowed views of it. No value tree
//!   is built; the only allocations per event are its own strings and attributes.
//! - One file per input format ([`cloudevent`], [`sitecore`], [`sitecore_audit`], [`datocms`],
//!   [`contensis`]); each maps one parsed JSON object to an `Event` or a reason for a person.
//!   This file owns what they share: content types, framing, errors, limits.

pub mod cloudevent;
pub mod contensis;
pub mod datocms;
pub(crate) mod scan;
pub mod sitecore;
pub mod sitecore_audit;

use std::cell::RefCell;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::tape::{Tape, Value};
use simd_json::{Buffers, ErrorType, INPUT_PADDING};

use crate::model::{Attributes, Event, InputKind};
use crate::telemetry::metrics::reject;
use scan::ScanError;

/// Input limits, from `[server]` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most items a batch (JSON array or NDJSON) may hold; more is `413`.
    pub max_batch_items: usize,
    /// Deepest nesting of objects and arrays in one event (the event object is level 1; a
    /// batch's own array does not count); deeper is `400 malformed`.
    pub max_json_depth: usize,
}

impl From<&crate::config::ServerConfig> for Limits {
    fn from(s: &crate::config::ServerConfig) -> Self {
        Limits {
            max_batch_items: s.max_batch_items,
            max_json_depth: s.max_json_depth,
        }
    }
}

/// One bad item of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// Position of the item in the batch, from 0 (array index; for NDJSON, the count of
    /// non-blank lines before it).
    pub index: usize,
    /// What is wrong, for a person (NDJSON reasons start with the line number).
    pub reason: String,
}

impl fmt::Display for ItemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "item {}: {}", self.index, self.reason)
    }
}

/// Why a body was refused. Every message is written for the person who sent it.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The content type is not one this input accepts (`415`).
    #[error("unsupported content type `{got}`: {accepted}")]
    ContentType {
        got: String,
        /// Which types are accepted, as a sentence.
        accepted: &'static str,
    },
    /// The body is empty or only whitespace.
    #[error("the request body is empty")]
    Empty,
    /// A batch with no items (`[]`, or NDJSON with only blank lines).
    #[error("the batch is empty: send at least one event")]
    EmptyBatch,
    /// The body's framing is broken (found by the scanner before any parsing).
    #[error("body is not valid JSON at byte {offset}: {what}{at}")]
    Syntax {
        offset: usize,
        what: &'static str,
        at: ItemAt,
    },
    /// simd-json refused an item. `offset` is a byte position in the whole body, if known.
    #[error("body is not valid JSON{}: {what}{at}", at_byte(*.offset))]
    Json {
        offset: Option<usize>,
        what: String,
        at: ItemAt,
        /// Boxed: it is large, and errors travel by value through the hot path's `Result`s.
        #[source]
        source: Box<simd_json::Error>,
    },
    /// Nesting deeper than [`Limits::max_json_depth`].
    #[error("nesting deeper than {limit} levels (at byte {offset}){at}")]
    TooDeep {
        limit: usize,
        offset: usize,
        at: ItemAt,
    },
    /// More items than [`Limits::max_batch_items`] (`413`).
    #[error("the batch has more than {limit} items")]
    TooManyItems { limit: usize },
    /// A single event that is well-formed JSON but not a valid event of its format.
    #[error("{0}")]
    Invalid(String),
    /// Some items of a batch are not valid events; the batch was refused as a whole.
    #[error("{} of {total} items are invalid, nothing was accepted: {}", items.len(), ListItems(items))]
    InvalidItems {
        /// Items in the batch.
        total: usize,
        /// Every bad item, in order.
        items: Vec<ItemError>,
    },
}

fn at_byte(offset: Option<usize>) -> String {
    offset.map_or_else(String::new, |o| format!(" at byte {o}"))
}

/// Which batch item (and NDJSON line) a malformed-JSON error is in; empty for a single body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ItemAt {
    /// Index of the item in the batch, from 0.
    pub item: Option<usize>,
    /// 1-based line of the body, for NDJSON.
    pub line: Option<usize>,
}

impl fmt::Display for ItemAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.item, self.line) {
            (Some(i), Some(l)) => write!(f, " (item {i}, line {l})"),
            (Some(i), None) => write!(f, " (item {i})"),
            (None, Some(l)) => write!(f, " (line {l})"),
            (None, None) => Ok(()),
        }
    }
}

/// Shows the first few item errors of a batch (all of them are in [`DecodeError::items`]).
struct ListItems<'a>(&'a [ItemError]);

impl fmt::Display for ListItems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 10;
        for (i, e) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "; and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl DecodeError {
    /// The HTTP status to answer with: `415`, `413` or `400`.
    pub fn status(&self) -> u16 {
        match self {
            DecodeError::ContentType { .. } => 415,
            DecodeError::TooManyItems { .. } => 413,
            _ => 400,
        }
    }

    /// The `reason` label of `herald_events_rejected_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::ContentType { .. } => reject::CONTENT_TYPE,
            DecodeError::TooManyItems { .. } => reject::TOO_LARGE,
            DecodeError::Syntax { .. } | DecodeError::Json { .. } | DecodeError::TooDeep { .. } => {
                reject::MALFORMED
            }
            DecodeError::Empty
            | DecodeError::EmptyBatch
            | DecodeError::Invalid(_)
            | DecodeError::InvalidItems { .. } => reject::INVALID,
        }
    }

    /// The bad items of a refused batch (empty for any other error).
    pub fn items(&self) -> &[ItemError] {
        match self {
            DecodeError::InvalidItems { items, .. } => items,
            _ => &[],
        }
    }
}

/// Decodes one request body into events.
///
/// `body` is the whole request body; the payloads of the returned events are zero-copy slices
/// of it (each item's exact bytes, surrounding whitespace excluded). Events come back with
/// `seq = 0` (ingest assigns it) and `received_at_ms` as given, in body order.
pub fn decode(
    kind: InputKind,
    content_type: Option<&str>,
    body: &Bytes,
    limits: &Limits,
    received_at_ms: i64,
) -> Result<Vec<Event>, DecodeError> {
    let (shape, item): (Shape, ItemDecoder) = match kind {
        InputKind::CloudEvent => (cloudevent::shape(content_type)?, cloudevent::decode_item),
        InputKind::Sitecore => {
            check_cms_content_type(content_type, sitecore::ACCEPTED)?;
            (Shape::Single, sitecore::decode_item)
        }
        InputKind::SitecoreAudit => {
            check_cms_content_type(content_type, CMS_ACCEPTED)?;
            (Shape::ObjectOrArray, sitecore_audit::decode_item)
        }
        InputKind::Contensis => {
            check_cms_content_type(content_type, CMS_ACCEPTED)?;
            (Shape::Single, contensis::decode_item)
        }
        InputKind::DatoCms => {
            check_cms_content_type(content_type, CMS_ACCEPTED)?;
            (Shape::Single, datocms::decode_item)
        }
    };
    let ctx = Ctx {
        body,
        limits,
        received_at_ms,
        item,
    };
    with_parser(|p| ctx.run(shape, p))
}

/// How a body is framed into items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Exactly one JSON object; an array is refused with this hint.
    Single,
    /// An object is one item, an array is a batch.
    ObjectOrArray,
    /// Must be a JSON array (a batch).
    Array,
    /// NDJSON: one item per non-blank line.
    Lines,
}

/// Maps one parsed JSON object (the item's bytes are `payload`) to an event, or says what is
/// wrong with it.
pub(crate) type ItemDecoder = fn(Obj<'_, '_>, Bytes, i64) -> Result<Event, String>;

/// A parsed JSON object: a borrowed view into the parser's tape.
pub(crate) type Obj<'tape, 'input> = simd_json::tape::Object<'tape, 'input>;

/// The accepted content types of the CMS inputs, as a sentence for the `415` message.
const CMS_ACCEPTED: &str = "this input accepts application/json (or another +json type)";

/// The content type without parameters (`application/json; charset=utf-8` → `application/json`).
pub(crate) fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// CMS inputs take `application/json`, any `+json` type, or no content type at all.
fn check_cms_content_type(
    content_type: Option<&str>,
    accepted: &'static str,
) -> Result<(), DecodeError> {
    let Some(ct) = content_type.map(essence).filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let b = ct.as_bytes();
    let is_json = ct.eq_ignore_ascii_case("application/json")
        || (b.len() > 5 && b[b.len() - 5..].eq_ignore_ascii_case(b"+json"));
    if is_json {
        Ok(())
    } else {
        Err(unsupported(ct, accepted))
    }
}

/// The `415` error, echoing at most 100 bytes of what was sent.
pub(crate) fn unsupported(content_type: &str, accepted: &'static str) -> DecodeError {
    let mut end = content_type.len().min(100);
    while !content_type.is_char_boundary(end) {
        end -= 1;
    }
    DecodeError::ContentType {
        got: content_type[..end].to_string(),
        accepted,
    }
}

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One request's decoding state.
struct Ctx<'a> {
    body: &'a Bytes,
    limits: &'a Limits,
    received_at_ms: i64,
    item: ItemDecoder,
}

impl Ctx<'_> {
    fn run(&self, shape: Shape, p: &mut Parser) -> Result<Vec<Event>, DecodeError> {
        // RFC 8259 §8.1 lets a parser ignore a leading byte order mark, and .NET senders
        // (Sitecore, Contensis) may write one. Payloads start after it.
        let skip = if self.body.starts_with(BOM) {
            BOM.len()
        } else {
            0
        };
        let text = &self.body[skip..];
        let content = scan::trim(text);
        if content.is_empty() {
            return Err(DecodeError::Empty);
        }
        let first = text[content.start];
        let mut ranges = Vec::new();
        let split = match shape {
            Shape::Lines => scan::split_lines(text, self.limits.max_batch_items, &mut ranges),
            Shape::ObjectOrArray | Shape::Array if first == b'[' => scan::split_array(
                text,
                self.limits.max_json_depth,
                self.limits.max_batch_items,
                &mut ranges,
            ),
            _ => {
                let r = skip + content.start..skip + content.end;
                return Ok(vec![self.single(r, shape, p)?]);
            }
        };
        split.map_err(|e| self.scan_error(e, skip, ItemAt::default()))?;
        for r in &mut ranges {
            *r = r.start + skip..r.end + skip;
        }
        self.batch(&ranges, shape == Shape::Lines, p)
    }

    /// Decodes a body that holds one value.
    fn single(&self, r: Range<usize>, shape: Shape, p: &mut Parser) -> Result<Event, DecodeError> {
        let json = &self.body[r.clone()];
        let payload = self.body.slice(r.clone());
        let outcome = p
            .parse(json, self.limits.max_json_depth, |v| match v.as_object() {
                _ if shape == Shape::Array => Err(format!(
                    "a batch ({}) must be a JSON array of events, got {}",
                    cloudevent::BATCH_CONTENT_TYPE,
                    type_name(v)
                )),
                Some(obj) => (self.item)(obj, payload, self.received_at_ms),
                None => Err(not_an_object(v, shape)),
            })
            .map_err(|e| self.parse_error(e, json, r.start, ItemAt::default()))?;
        outcome.map_err(DecodeError::Invalid)
    }

    /// Decodes every item of a batch; refuses the batch if any item is bad, naming each.
    fn batch(
        &self,
        ranges: &[Range<usize>],
        lines: bool,
        p: &mut Parser,
    ) -> Result<Vec<Event>, DecodeError> {
        if ranges.is_empty() {
            return Err(DecodeError::EmptyBatch);
        }
        let mut events = Vec::with_capacity(ranges.len());
        let mut bad = Vec::new();
        let mut line_counter = scan::LineCounter::default();
        for (index, r) in ranges.iter().enumerate() {
            let json = &self.body[r.clone()];
            // Only computed for errors; NDJSON items are named by line as well.
            let mut at = || ItemAt {
                item: Some(index),
                line: lines.then(|| line_counter.line_at(self.body, r.start)),
            };
            let payload = self.body.slice(r.clone());
            let outcome = p
                .parse(json, self.limits.max_json_depth, |v| match v.as_object() {
                    Some(obj) => (self.item)(obj, payload, self.received_at_ms),
                    None => Err(not_an_object(v, Shape::Array)),
                })
                .map_err(|e| self.parse_error(e, json, r.start, at()))?;
            match outcome {
                Ok(ev) if bad.is_empty() => events.push(ev),
                Ok(_) => {}
                Err(reason) => {
                    let reason = match at().line {
                        Some(line) => format!("line {line}: {reason}"),
                        None => reason,
                    };
                    bad.push(ItemError { index, reason });
                }
            }
        }
        if bad.is_empty() {
            Ok(events)
        } else {
            Err(DecodeError::InvalidItems {
                total: ranges.len(),
                items: bad,
            })
        }
    }

    /// A scanner error in the slice that starts at body offset `base`.
    fn scan_error(&self, e: ScanError, base: usize, at: ItemAt) -> DecodeError {
        match e {
            ScanError::Syntax { offset, what } => DecodeError::Syntax {
                offset: base + offset,
                what,
                at,
            },
            ScanError::TooDeep { offset } => DecodeError::TooDeep {
                limit: self.limits.max_json_depth,
                offset: base + offset,
                at,
            },
            ScanError::TooMany => DecodeError::TooManyItems {
                limit: self.limits.max_batch_items,
            },
        }
    }

    /// The error for an item (`json`, at body offset `base`) that simd-json refused. simd-json
    /// enforces the depth limit itself, so items are not pre-scanned on the happy path; only now
    /// does the scanner look, because for depth, unclosed brackets and trailing data it can say
    /// where, and simd-json cannot.
    fn parse_error(
        &self,
        e: simd_json::Error,
        json: &[u8],
        base: usize,
        at: ItemAt,
    ) -> DecodeError {
        match scan::check_value(json, self.limits.max_json_depth) {
            Err(se) => self.scan_error(se, base, at),
            Ok(()) => self.json_error(e, base, at),
        }
    }

    /// A simd-json error in the item that starts at body offset `base`.
    fn json_error(&self, e: simd_json::Error, base: usize, at: ItemAt) -> DecodeError {
        if *e.error() == ErrorType::DepthLimitExceeded {
            // The scanner reports depth first (with a position), so this is only a backstop.
            return DecodeError::TooDeep {
                limit: self.limits.max_json_depth,
                offset: base + e.index(),
                at,
            };
        }
        let kind = e.error();
        // simd-json's positions are byte offsets into the item, except for errors found
        // while scanning strings (escapes, UTF-8, control characters), which carry none.
        let positioned = !matches!(
            kind,
            ErrorType::InvalidEscape
                | ErrorType::InvalidUnicodeEscape
                | ErrorType::InvalidUnicodeCodepoint
                | ErrorType::InvalidUtf8
        ) && (e.index() > 0 || e.character().is_some());
        let what = match (describe(kind), e.character()) {
            ("syntax error", Some(c)) if c.is_ascii_graphic() => format!("unexpected `{c}`"),
            (what, _) => what.to_string(),
        };
        DecodeError::Json {
            offset: positioned.then(|| base + e.index()),
            what,
            at,
            source: Box::new(e),
        }
    }
}

/// The reason for an item that is valid JSON but not an object.
fn not_an_object(v: Value<'_, '_>, shape: Shape) -> String {
    let got = type_name(v);
    match shape {
        Shape::Single if v.is_array() => {
            "expected one JSON object, got an array (this input takes one event per request)"
                .to_string()
        }
        Shape::Array | Shape::Lines => format!("expected a JSON object, got {got}"),
        _ => format!("expected a JSON object (one event) or an array of them, got {got}"),
    }
}

/// "a string", "an array", … for messages.
pub(crate) fn type_name(v: Value<'_, '_>) -> &'static str {
    match v.value_type() {
        ValueType::Null => "null",
        ValueType::Bool => "a boolean",
        ValueType::String => "a string",
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        _ => "a number",
    }
}

/// simd-json's error kinds in words.
fn describe(e: &ErrorType) -> &'static str {
    match e {
        ErrorType::Eof => "unexpected end of input",
        ErrorType::TrailingData => "unexpected data after the JSON value",
        ErrorType::InvalidUtf8 => "invalid UTF-8",
        ErrorType::InvalidEscape => "invalid escape sequence in a string",
        ErrorType::InvalidUnicodeEscape | ErrorType::InvalidUnicodeCodepoint => {
            "invalid \\u escape in a string"
        }
        ErrorType::UnterminatedString => "unterminated string",
        ErrorType::InvalidNumber | ErrorType::InvalidExponent | ErrorType::Overflow => {
            "invalid number"
        }
        ErrorType::ExpectedObjectColon => "expected ':' after an object key",
        ErrorType::ExpectedMapComma | ErrorType::ExpectedMapEnd => {
            "expected ',' or '}' in an object"
        }
        ErrorType::ExpectedArrayComma => "expected ',' or ']' in an array",
        ErrorType::ExpectedObjectKey | ErrorType::KeyMustBeAString => {
            "expected a string key in an object"
        }
        ErrorType::ExpectedTrue | ErrorType::ExpectedFalse | ErrorType::ExpectedNull => {
            "invalid literal (expected true, false or null)"
        }
        ErrorType::UnexpectedCharacter => "unexpected character",
        ErrorType::InputTooLarge => "input too large",
        _ => "syntax error",
    }
}

/// simd-json's buffers and tape, kept per thread so that a request allocates nothing to parse
/// once the thread has seen a body of its size.
pub(crate) struct Parser {
    /// The item being parsed, copied and padded: simd-json unescapes strings in place.
    scratch: Vec<u8>,
    buffers: Buffers,
    /// Always empty between calls; `'static` only because it holds nothing.
    tape: Tape<'static>,
    /// The depth limit `buffers` was built with (`Buffers` cannot change it afterwards).
    max_depth: usize,
}

/// Scratch memory above these is given back after a request, so that one huge body does not
/// pin memory on every worker thread for good. The tape bound matters on its own: a dense item
/// (`[1,1,1,…]`) needs ~24 bytes of tape per input byte.
const KEEP_SCRATCH_BYTES: usize = 1 << 20;
const KEEP_TAPE_NODES: usize = 1 << 16;

impl Parser {
    fn new(max_depth: usize) -> Self {
        Parser {
            scratch: Vec::new(),
            buffers: Buffers::with_max_depth(0, max_depth),
            tape: Tape(Vec::new()),
            max_depth,
        }
    }

    /// Parses `json` and hands a view of the result to `f`. The view cannot outlive the call:
    /// the tape is emptied (keeping its allocation) before the next item overwrites `scratch`.
    fn parse<R>(
        &mut self,
        json: &[u8],
        max_depth: usize,
        f: impl FnOnce(Value<'_, '_>) -> R,
    ) -> Result<R, simd_json::Error> {
        // simd-json refuses the `max_depth + 1`-th nested container, the same rule as the
        // scanner's (tested in `depth_limit_is_inclusive`).
        if self.max_depth != max_depth {
            self.buffers = Buffers::with_max_depth(0, max_depth);
            self.max_depth = max_depth;
        }
        let Parser {
            scratch,
            buffers,
            tape,
            ..
        } = self;
        scratch.clear();
        scratch.reserve(json.len() + INPUT_PADDING);
        scratch.extend_from_slice(json);
        scratch.resize(json.len() + INPUT_PADDING, b' ');
        let mut t: Tape<'_> = std::mem::replace(tape, Tape(Vec::new())).reset();
        let res = simd_json::fill_tape_padded(scratch, json.len(), buffers, &mut t);
        let out = res.map(|()| f(t.as_value()));
        *tape = t.reset();
        out
    }

    /// Drops buffers that grew past [`KEEP_SCRATCH_BYTES`] or [`KEEP_TAPE_NODES`] (simd-json's
    /// own buffers grow with them and go too).
    fn trim(&mut self) {
        if self.scratch.capacity() > KEEP_SCRATCH_BYTES || self.tape.0.capacity() > KEEP_TAPE_NODES
        {
            *self = Parser::new(self.max_depth);
        }
    }
}

thread_local! {
    static PARSER: RefCell<Option<Parser>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's parser (or a fresh one if it is somehow in use).
fn with_parser<R>(f: impl FnOnce(&mut Parser) -> R) -> R {
    PARSER.with(|cell| match cell.try_borrow_mut() {
        Ok(mut slot) => {
            let p = slot.get_or_insert_with(|| Parser::new(0));
            let out = f(p);
            p.trim();
            out
        }
        Err(_) => f(&mut Parser::new(0)),
    })
}

// ---- helpers shared by the format decoders ----

/// Pushes `(name, value)` with the value ASCII-lower-cased (filters compare lower-case; the
/// original spelling stays in the payload). Blank values are skipped: templated CMS bodies
/// leave empty strings where a field does not apply.
pub(crate) fn push_attr(attrs: &mut Attributes, name: &str, value: &str) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    let mut v = String::with_capacity(value.len());
    v.push_str(value);
    v.make_ascii_lowercase();
    attrs.push((name.into(), v.into_boxed_str()));
}

/// Pushes a GUID attribute normalized the way Sitecore writes GUIDs in payloads: braces
/// stripped, lower-case (`{88AD1387-…}` → `88ad1387-…`).
pub(crate) fn push_guid(attrs: &mut Attributes, name: &str, value: &str) {
    let v = value.trim();
    let v = v.strip_prefix('{').unwrap_or(v);
    let v = v.strip_suffix('}').unwrap_or(v);
    push_attr(attrs, name, v);
}

/// A string field of `obj`, if present, a string and not blank.
pub(crate) fn str_field<'i>(obj: &Obj<'_, 'i>, key: &str) -> Option<&'i str> {
    obj.get(key)
        .and_then(|v| v.into_string())
        .filter(|s| !s.trim().is_empty())
}

/// An object field of `obj`, if present and an object.
pub(crate) fn obj_field<'t, 'i>(obj: &Obj<'t, 'i>, key: &str) -> Option<Obj<'t, 'i>> {
    obj.get(key).and_then(|v| v.as_object())
}

/// A string or integer id field as text (DatoCMS sends ids both ways).
pub(crate) fn id_field(obj: &Obj<'_, '_>, key: &str) -> Option<Box<str>> {
    let v = obj.get(key)?;
    if let Some(s) = v.as_str() {
        let s = s.trim();
        return (!s.is_empty()).then(|| s.into());
    }
    if let Some(n) = v.as_u64() {
        return Some(n.to_string().into_boxed_str());
    }
    v.as_i64().map(|n| n.to_string().into_boxed_str())
}

/// A fresh random id for producers that send none (UUID v4 from the OS generator: `(source,
/// id)` is the dedup key, so a weak generator could make two events collide).
pub(crate) fn generated_id() -> Box<str> {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    Box::from(&*uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
}

/// Builds an event with `seq = 0`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn event(
    kind: InputKind,
    id: Box<str>,
    source: Box<str>,
    event_type: Box<str>,
    time: Option<&str>,
    attributes: Attributes,
    payload: Bytes,
    received_at_ms: i64,
) -> Event {
    Event {
        seq: 0,
        id,
        source,
        kind,
        event_type,
        time: time.map(Box::from),
        received_at_ms,
        attributes,
        payload,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn limits() -> Limits {
        Limits {
            max_batch_items: 100,
            max_json_depth: 64,
        }
    }

    /// Decodes and checks what every decoded event must satisfy.
    pub(crate) fn decode_ok(kind: InputKind, ct: Option<&str>, body: &Bytes) -> Vec<Event> {
        let evs = decode(kind, ct, body, &limits(), 1_700_000_000_000)
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        for e in &evs {
            assert_eq!(e.seq, 0);
            assert_eq!(e.kind, kind);
            assert_eq!(e.received_at_ms, 1_700_000_000_000);
            assert!(
                is_slice_of(&e.payload, body),
                "payload is not a slice of the body"
            );
            for (n, v) in &e.attributes {
                assert_eq!(**v, v.to_ascii_lowercase(), "attribute {n} not lower-case");
            }
        }
        evs
    }

    /// Whether `part` points into `whole`'s memory (zero-copy).
    fn is_slice_of(part: &Bytes, whole: &Bytes) -> bool {
        let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
        part.is_empty() || (p >= w && p + part.len() <= w + whole.len())
    }

    /// Expected attributes, in order.
    pub(crate) type Attrs = Vec<(&'static str, &'static str)>;

    /// (body, event type, id, time, attributes) of a decoded fixture.
    pub(crate) type Expected = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Attrs,
    );

    pub(crate) fn attrs(e: &Event) -> Vec<(&str, &str)> {
        e.attributes.iter().map(|(n, v)| (&**n, &**v)).collect()
    }

    fn ce(id: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"/s","type":"t","data":{{"n":[1,"]"]}}}}"#
        )
    }

    #[test]
    fn batches_and_ndjson_keep_each_items_exact_bytes() {
        let items = [ce("a"), ce("b"), ce("c")];
        let array = format!("[\n  {} ,{},\n{}\n]\n", items[0], items[1], items[2]);
        let ndjson = format!("{}\r\n\n{}\n   \n{}", items[0], items[1], items[2]);
        let cases = [
            (None, array.clone()),
            (Some("application/json"), array.clone()),
            (Some("application/cloudevents-batch+json"), array),
            (Some("application/x-ndjson"), ndjson),
        ];
        for (ct, body) in cases {
            let body = Bytes::from(body);
            let evs = decode_ok(InputKind::CloudEvent, ct, &body);
            let ids: Vec<&str> = evs.iter().map(|e| &*e.id).collect();
            assert_eq!(ids, ["a", "b", "c"], "{ct:?}");
            for (e, want) in evs.iter().zip(&items) {
                assert_eq!(e.payload, want.as_bytes(), "{ct:?}");
            }
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored() {
        let with_bom = |s: &str| Bytes::from(format!("\u{feff}{s}"));
        let body = with_bom(&ce("x"));
        let evs = decode_ok(InputKind::CloudEvent, None, &body);
        assert_eq!(evs[0].payload, ce("x").as_bytes());
        let body = with_bom(&format!("[{},{}]", ce("a"), ce("b")));
        let evs = decode_ok(InputKind::CloudEvent, None, &body);
        assert_eq!(evs[1].payload, ce("b").as_bytes());
        // Offsets in messages still count the BOM's bytes.
        let err = decode(InputKind::CloudEvent, None, &with_bom("[1,]"), &limits(), 0)
            .expect_err("trailing comma");
        assert!(err.to_string().contains("at byte 6"), "{err}");
    }

    #[test]
    fn single_body_payload_excludes_surrounding_whitespace() {
        let body = Bytes::from(format!("\n  {}  \r\n", ce("x")));
        let evs = decode_ok(InputKind::CloudEvent, None, &body);
        assert_eq!(evs[0].payload, ce("x").as_bytes());
    }

    /// (kind, content type, body, status, reason, text in the message)
    type Case = (
        InputKind,
        Option<&'static str>,
        String,
        u16,
        &'static str,
        &'static str,
    );

    #[test]
    fn error_table() {
        use InputKind::*;
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let deep_ce = |n: usize| {
            format!(
                r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{}}}"#,
                deep(n - 1)
            )
        };
        let many = |n: usize| format!("[{}]", vec![ce("x"); n].join(","));
        let nd = Some("application/x-ndjson");
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            // Empty bodies, for every input.
            (CloudEvent, None, "".into(), 400, "invalid", "body is empty"),
            (CloudEvent, nd, " \n ".into(), 400, "invalid", "body is empty"),
            (Sitecore, None, "\r\n".into(), 400, "invalid", "body is empty"),
            (SitecoreAudit, None, "".into(), 400, "invalid", "body is empty"),
            (Contensis, None, "".into(), 400, "invalid", "body is empty"),
            (DatoCms, None, "".into(), 400, "invalid", "body is empty"),
            // Empty batches.
            (CloudEvent, None, "[ ]".into(), 400, "invalid", "batch is empty"),
            (SitecoreAudit, None, "[]".into(), 400, "invalid", "batch is empty"),
            // Not JSON, with the byte where it goes wrong.
            (CloudEvent, None, "hello".into(), 400, "malformed", "at byte 0: unexpected `h`"),
            (CloudEvent, None, r#"{"id":"1",}"#.into(), 400, "malformed", "at byte 10: expected a string key"),
            (CloudEvent, None, r#"{"id":"1""#.into(), 400, "malformed", "at byte 9: unexpected end of input"),
            (CloudEvent, None, r#"{"id":"1} "#.into(), 400, "malformed", "at byte 6: unterminated string"),
            (CloudEvent, None, r#"{"a":01}"#.into(), 400, "malformed", "at byte 6: invalid number"),
            (CloudEvent, None, r#"{"a":"\x"}"#.into(), 400, "malformed", "not valid JSON: invalid escape"),
            (CloudEvent, None, format!("{} x", ce("1")), 400, "malformed", "unexpected data after the JSON value"),
            (CloudEvent, None, format!("[{},]", ce("1")), 400, "malformed", "trailing comma"),
            (CloudEvent, None, format!("[{}", ce("1")), 400, "malformed", "not closed"),
            (CloudEvent, None, format!("[{},{{\"a\" 1}}]", ce("1")), 400, "malformed", "expected ':' after an object key (item 1)"),
            (CloudEvent, nd, format!("{}\n{{oops", ce("1")), 400, "malformed", "is not closed (item 1, line 2)"),
            (CloudEvent, nd, format!("{}\n\n{{\"a\" 1}}", ce("1")), 400, "malformed", "after an object key (item 1, line 3)"),
            (Sitecore, None, "{\"EventName\":\"item:added\"".into(), 400, "malformed", "not valid JSON"),
            // Too deep: the event object is level 1; a batch array is not a level.
            (CloudEvent, None, deep_ce(65), 400, "malformed", "nesting deeper than 64 levels"),
            (CloudEvent, None, format!("[{}]", deep_ce(65)), 400, "malformed", "nesting deeper than 64"),
            (CloudEvent, nd, format!("{}\n{}", ce("1"), deep_ce(65)), 400, "malformed", "nesting deeper than 64"),
            (Contensis, None, format!("{{\"a\":{}}}", deep(64)), 400, "malformed", "nesting deeper than 64"),
            // Too many items.
            (CloudEvent, None, many(101), 413, "too_large", "more than 100 items"),
            (CloudEvent, nd, vec![ce("x"); 101].join("\n"), 413, "too_large", "more than 100 items"),
            (SitecoreAudit, None, format!("[{}]", vec![r#"{"action":"a"}"#; 101].join(",")), 413, "too_large", "more than 100"),
            // Valid JSON, wrong shape.
            (CloudEvent, None, r#""event""#.into(), 400, "invalid", "expected a JSON object (one event) or an array"),
            (CloudEvent, Some("application/cloudevents+json"), format!("[{}]", ce("1")), 400, "invalid", "got an array"),
            (CloudEvent, Some("application/cloudevents-batch+json"), ce("1"), 400, "invalid", "must be a JSON array of events, got an object"),
            (Contensis, None, "[]".into(), 400, "invalid", "expected one JSON object, got an array"),
            (DatoCms, None, "42".into(), 400, "invalid", "expected a JSON object"),
            // Content types.
            (CloudEvent, Some("text/plain"), ce("1"), 415, "content_type", "unsupported content type `text/plain`"),
            (Contensis, Some("text/plain; charset=utf-8"), "{}".into(), 415, "content_type", "application/json"),
            (DatoCms, Some("application/x-www-form-urlencoded"), "{}".into(), 415, "content_type", "application/json"),
            (SitecoreAudit, Some("text/xml"), "{}".into(), 415, "content_type", "application/json"),
        ];
        for (kind, ct, body, status, reason, text) in cases {
            let what = format!("{kind:?} {ct:?} {body:.60}");
            let err = decode(kind, ct, &Bytes::from(body), &limits(), 0).expect_err(&what);
            assert_eq!(
                (err.status(), err.reason()),
                (status, reason),
                "{what}: {err}"
            );
            assert!(err.to_string().contains(text), "{what}: {err}");
            assert!(err.items().is_empty(), "{what}");
        }
    }

    #[test]
    fn depth_limit_is_inclusive() {
        let body = |n: usize| {
            Bytes::from(format!(
                r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{}{}}}"#,
                "[".repeat(n - 1),
                "]".repeat(n - 1)
            ))
        };
        let l = Limits {
            max_batch_items: 10,
            max_json_depth: 5,
        };
        assert!(decode(InputKind::CloudEvent, None, &body(5), &l, 0).is_ok());
        let err = decode(InputKind::CloudEvent, None, &body(6), &l, 0).expect_err("6 > 5");
        assert!(
            matches!(err, DecodeError::TooDeep { limit: 5, .. }),
            "{err:?}"
        );
        // The thread's parser follows a changed limit.
        let l2 = Limits {
            max_json_depth: 64,
            ..l
        };
        assert!(decode(InputKind::CloudEvent, None, &body(30), &l2, 0).is_ok());
    }

    #[test]
    fn a_huge_body_does_not_pin_parser_memory() {
        let big = format!(
            r#"{{"specversion":"1.0","id":"1","source":"/s","type":"t","data":[{}1]}}"#,
            "1,".repeat(300_000)
        );
        let body = Bytes::from(big);
        assert_eq!(decode_ok(InputKind::CloudEvent, None, &body).len(), 1);
        PARSER.with(|cell| {
            let slot = cell.borrow();
            let p = slot.as_ref().expect("this thread's parser");
            assert!(p.scratch.capacity() <= KEEP_SCRATCH_BYTES);
            assert!(p.tape.0.capacity() <= KEEP_TAPE_NODES);
        });
    }

    #[test]
    fn item_limit_is_inclusive() {
        let body = Bytes::from(format!("[{}]", vec![ce("x"); 100].join(",")));
        assert_eq!(decode_ok(InputKind::CloudEvent, None, &body).len(), 100);
    }

    #[test]
    fn a_batch_names_every_bad_item() {
        let good = ce("ok");
        let body = format!(
            "[{good},{},{good},{},42,{}]",
            r#"{"specversion":"1.0","id":"1","type":"t"}"#,
            r#"{"specversion":"1.0","id":"2","source":"/s","type":"t","time":"now"}"#,
            r#"{"specversion":"2.0","id":"3","source":"/s","type":"t","Bad":1}"#,
        );
        let err = decode(
            InputKind::CloudEvent,
            None,
            &Bytes::from(body),
            &limits(),
            0,
        )
        .expect_err("bad items");
        assert_eq!((err.status(), err.reason()), (400, "invalid"));
        let got: Vec<(usize, &str)> = err
            .items()
            .iter()
            .map(|i| (i.index, i.reason.as_str()))
            .collect();
        assert_eq!(got.len(), 4, "{got:?}");
        let want = [
            (1, "missing required attribute `source`"),
            (3, "`time` must be an RFC 3339 timestamp"),
            (4, "expected a JSON object, got a number"),
            (5, "unsupported specversion `2.0`"),
        ];
        for ((i, reason), (wi, wr)) in got.iter().zip(want) {
            assert_eq!(*i, wi);
            assert!(reason.starts_with(wr), "{reason}");
        }
        let msg = err.to_string();
        assert!(msg.starts_with("4 of 6 items are invalid"), "{msg}");
        assert!(
            msg.contains("item 1: missing required attribute `source`"),
            "{msg}"
        );
        assert!(msg.contains("item 5: unsupported specversion"), "{msg}");
    }

    #[test]
    fn ndjson_item_errors_name_their_line() {
        let body = format!("{}\n\n{{\"specversion\":\"1.0\"}}\n{}\n", ce("a"), ce("b"));
        let err = decode(
            InputKind::CloudEvent,
            Some("application/x-ndjson"),
            &Bytes::from(body),
            &limits(),
            0,
        )
        .expect_err("line 3");
        assert_eq!(err.items().len(), 1);
        assert_eq!(err.items()[0].index, 1);
        assert_eq!(
            err.items()[0].reason,
            "line 3: missing required attribute `id`"
        );
    }

    #[test]
    fn long_item_lists_are_shortened_in_the_message_only() {
        let bad = r#"{"specversion":"1.0"}"#;
        let body = Bytes::from(format!("[{}]", vec![bad; 25].join(",")));
        let err = decode(InputKind::CloudEvent, None, &body, &limits(), 0).expect_err("bad");
        assert_eq!(err.items().len(), 25);
        assert!(err.to_string().ends_with("; and 15 more"), "{err}");
    }

    #[test]
    fn json_errors_point_into_the_body() {
        // The second element's broken token sits at a known body offset.
        let first = ce("1");
        let body = format!("[{first}, {{\"id\" 1}}]");
        let at = body.find(" 1}").unwrap_or(0) + 1;
        let err = decode(
            InputKind::CloudEvent,
            None,
            &Bytes::from(body),
            &limits(),
            0,
        )
        .expect_err("bad json");
        match err {
            DecodeError::Json {
                offset: Some(o),
                at:
                    ItemAt {
                        item: Some(1),
                        line: None,
                    },
                ..
            } => assert_eq!(o, at, "{err}"),
            other => panic!("{other:?}"),
        }
        let err = decode(
            InputKind::CloudEvent,
            None,
            &Bytes::from_static(b"{\"a\":\xff}"),
            &limits(),
            0,
        )
        .expect_err("utf-8");
        assert!(err.to_string().contains("invalid UTF-8"), "{err}");
    }

    #[test]
    fn cms_content_types() {
        let body = Bytes::from_static(br#"{"EventName":"item:added"}"#);
        let ok = [
            None,
            Some(""),
            Some("application/json"),
            Some("APPLICATION/JSON; charset=utf-8"),
            Some("application/vnd.sitecore+json"),
            Some("application/problem+JSON"),
        ];
        for ct in ok {
            assert!(
                decode(InputKind::Sitecore, ct, &body, &limits(), 0).is_ok(),
                "{ct:?}"
            );
        }
        for ct in [
            "application/xml",
            "text/json",
            "+json",
            "application/jsonx",
            "é+jsoné",
        ] {
            let err = decode(InputKind::Sitecore, Some(ct), &body, &limits(), 0).expect_err(ct);
            assert_eq!(err.status(), 415, "{ct}");
        }
    }
}
