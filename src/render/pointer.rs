//! Contensis `{/json/pointer}` templates (spec §2.4): bodies, URLs and header values whose
//! placeholders are resolved against the Contensis event context `{"event", "user",
//! "resource"}` ([`super::contensis`] builds it).
//!
//! A template is split once, when the subscription is saved, into literal text and
//! placeholders, and all its pointers are merged into one lookup tree. Rendering resolves the
//! tree in a single pass over the context's raw bytes — every object on a pointer's path is
//! scanned once, however many placeholders reach into it — and copies the values found: no JSON
//! tree is built, and an embedded value is the producer's bytes exactly.
//!
//! Rules (documented for Contensis users):
//! - `{/a/b}` and `{/a.b}` are the same pointer: segments split on `/` and on `.` (the docs
//!   write `{/resource/sys.id}`); empty segments are ignored, so `{/resource/}` is the whole
//!   resource and `{/}` the whole context. `~1` and `~0` stand for `/` and `~` as in RFC 6901; a
//!   key that contains `.` cannot be reached. A segment that is a number also indexes a list.
//! - A body template that is JSON is rendered as JSON: a placeholder that is a whole string
//!   value (`"{/resource/sys}"`) is replaced by the value itself, quotes included (an object, a
//!   number…; `null` when missing); a placeholder inside a longer string inserts the value as
//!   string content, escaped (a string's text, a number's digits, an object's JSON; nothing when
//!   missing or `null`).
//! - Any other text (XML, a URL, a header value) has its placeholders replaced by the value as
//!   text: a string unescaped, a number or `true`/`false` as written, an object or list as its
//!   JSON; nothing when missing or `null`.
//! - `{/` starts a placeholder wherever it appears; one that is never closed with `}` is a
//!   compile error.

use std::ops::Range;

use smallvec::SmallVec;

use super::body::{MAX_BODY_BYTES, PayloadError};
use super::json::{self, Kind};
use super::syntax::{SyntaxError, SyntaxProblem};

/// A compiled template. Immutable and `Sync`.
#[derive(Debug)]
pub(crate) struct Template {
    src: Box<str>,
    segs: Box<[Seg]>,
    lookups: Lookups,
}

#[derive(Debug)]
enum Seg {
    /// Template text copied as is.
    Lit(Range<usize>),
    /// A whole JSON string value: the value itself, or `null`.
    Embed(usize),
    /// Inside a JSON string: the value as escaped string content.
    InStr(usize),
    /// Plain text: the value as text.
    Text(usize),
}

impl Template {
    /// A body template: rendered as JSON when it is JSON, as text otherwise.
    pub(crate) fn compile_body(src: &str) -> Result<Template, SyntaxError> {
        if serde_json::from_str::<serde::de::IgnoredAny>(src).is_ok() {
            Self::compile_json(src)
        } else {
            Self::compile_text(src)
        }
    }

    /// A URL or header value template: always text.
    pub(crate) fn compile_text(src: &str) -> Result<Template, SyntaxError> {
        let mut b = Builder::new(src);
        b.placeholders(0..src.len(), Seg::Text)?;
        Ok(b.finish())
    }

    /// `src` is valid JSON: placeholders can only be inside its strings.
    fn compile_json(src: &str) -> Result<Template, SyntaxError> {
        let bytes = src.as_bytes();
        let mut b = Builder::new(src);
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] != b'"' {
                i += 1;
                continue;
            }
            let end = string_end(bytes, i);
            let inner = i + 1..end.saturating_sub(1).max(i + 1);
            if let Some(pointer) = whole_placeholder(&src[inner.clone()]) {
                // The pointer text starts after the `{`.
                let id = b.pointer(pointer, inner.start + 1)?;
                b.flush(i);
                b.segs.push(Seg::Embed(id));
                b.lit_start = end;
            } else {
                b.placeholders(inner, Seg::InStr)?;
            }
            i = end;
        }
        Ok(b.finish())
    }

    /// Whether the text holds any placeholder (otherwise it is a fixed value).
    pub(crate) fn has_placeholders(&self) -> bool {
        self.segs.iter().any(|s| !matches!(s, Seg::Lit(_)))
    }

    /// Whether a placeholder reaches the whole context or the whole `event` object, which then
    /// must carry this subscription's id ([`super::contensis`] rewrites it).
    pub(crate) fn embeds_event(&self) -> bool {
        let event = self.lookups.find(&["event"]);
        self.segs.iter().any(|s| match *s {
            Seg::Embed(id) | Seg::InStr(id) | Seg::Text(id) => id == 0 || Some(id) == event,
            Seg::Lit(_) => false,
        })
    }

    /// The literal parts (header values check them at compile time).
    pub(crate) fn literals(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Lit(r) => Some(&self.src[r.clone()]),
            _ => None,
        })
    }

    /// The template text as the user wrote it.
    pub(crate) fn source(&self) -> &str {
        &self.src
    }

    /// Renders against the event context `doc`; `subscription_id` (JSON-quoted) is what
    /// `/event/subscriptionId` resolves to.
    pub(crate) fn render(
        &self,
        doc: &[u8],
        subscription_id: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), PayloadError> {
        let mut values = SmallVec::new();
        self.lookups.resolve(doc, subscription_id, &mut values);
        for seg in &*self.segs {
            match *seg {
                Seg::Lit(ref r) => out.extend_from_slice(self.src[r.clone()].as_bytes()),
                Seg::Embed(id) => out.extend_from_slice(values[id].unwrap_or(b"null")),
                Seg::InStr(id) => write_in_string(values[id], out),
                Seg::Text(id) => write_text(values[id], out),
            }
            if out.len() > MAX_BODY_BYTES {
                return Err(PayloadError::TooLarge);
            }
        }
        Ok(())
    }
}

/// A value as the content of a JSON string.
pub(crate) fn write_in_string(v: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(v) = v else { return };
    match json::kind(v) {
        // Already escaped: copied between the template's own quotes unchanged.
        Kind::String => out.extend_from_slice(json::str_inner(v)),
        Kind::Null => {}
        Kind::Scalar => out.extend_from_slice(v),
        Kind::Object | Kind::Array => json::write_escaped(out, v),
    }
}

/// A value as plain text.
pub(crate) fn write_text(v: Option<&[u8]>, out: &mut Vec<u8>) {
    let Some(v) = v else { return };
    match json::kind(v) {
        Kind::String => out.extend_from_slice(json::unescape(v).as_bytes()),
        Kind::Null => {}
        Kind::Scalar | Kind::Object | Kind::Array => out.extend_from_slice(v),
    }
}

/// The index just past the JSON string literal starting at `start` (valid JSON: it is closed).
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => return i + 1,
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The pointer text when `s` is exactly one placeholder, `{/…}`.
fn whole_placeholder(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('{')?.strip_suffix('}')?;
    (inner.starts_with('/') && !inner.contains(['{', '}'])).then_some(inner)
}

struct Builder<'s> {
    src: &'s str,
    segs: Vec<Seg>,
    lookups: Lookups,
    lit_start: usize,
}

impl<'s> Builder<'s> {
    fn new(src: &'s str) -> Self {
        Builder {
            src,
            segs: Vec::new(),
            lookups: Lookups::new(),
            lit_start: 0,
        }
    }

    /// Ends the pending literal at `end`.
    fn flush(&mut self, end: usize) {
        if end > self.lit_start {
            self.segs.push(Seg::Lit(self.lit_start..end));
        }
        self.lit_start = end;
    }

    /// Finds every placeholder in `range`, pushing it as `make(id)`.
    fn placeholders(
        &mut self,
        range: Range<usize>,
        make: fn(usize) -> Seg,
    ) -> Result<(), SyntaxError> {
        let src = self.src;
        let mut from = range.start;
        while let Some(found) = src[from..range.end].find("{/") {
            let open = from + found;
            let Some(len) = src[open..range.end].find('}') else {
                return Err(SyntaxError::at(
                    src,
                    open,
                    SyntaxProblem::UnclosedPlaceholder,
                ));
            };
            let id = self.pointer(&src[open + 1..open + len], open + 1)?;
            self.flush(open);
            self.segs.push(make(id));
            from = open + len + 1;
            self.lit_start = from;
        }
        Ok(())
    }

    /// Parses the pointer text `p` (starting with `/`, found at byte `at`) into the lookup tree.
    fn pointer(&mut self, p: &str, at: usize) -> Result<usize, SyntaxError> {
        let err = |offset: usize, problem| SyntaxError::at(self.src, at + offset, problem);
        if let Some((i, c)) = p
            .char_indices()
            .find(|&(_, c)| matches!(c, '{' | '"' | '\\') || c.is_control())
        {
            return Err(err(i, SyntaxProblem::PlaceholderChar(c)));
        }
        let mut tokens: SmallVec<[String; 4]> = SmallVec::new();
        for (start, token) in split_tokens(p) {
            let mut t = String::with_capacity(token.len());
            let mut chars = token.char_indices();
            while let Some((i, c)) = chars.next() {
                if c != '~' {
                    t.push(c);
                    continue;
                }
                match chars.next() {
                    Some((_, '0')) => t.push('~'),
                    Some((_, '1')) => t.push('/'),
                    _ => return Err(err(start + i, SyntaxProblem::PointerEscape)),
                }
            }
            tokens.push(t);
        }
        Ok(self.lookups.add(&tokens))
    }

    fn finish(mut self) -> Template {
        self.flush(self.src.len());
        Template {
            src: self.src.into(),
            segs: self.segs.into_boxed_slice(),
            lookups: self.lookups,
        }
    }
}

/// The non-empty segments of a pointer, split on `/` and `.`, with their offsets.
fn split_tokens(p: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    p.split(['/', '.']).filter_map(move |t| {
        let at = start;
        start += t.len() + 1;
        (!t.is_empty()).then_some((at, t))
    })
}

/// Every pointer of a template, merged into a tree (node 0 is the whole context), so that
/// rendering scans each object on the way once.
#[derive(Debug)]
pub(crate) struct Lookups {
    nodes: Vec<Node>,
    /// The node of `/event/subscriptionId`, when a pointer reaches it: it always resolves to
    /// this subscription's id, whatever the producer's context says.
    subscription_id: Option<usize>,
}

#[derive(Debug)]
struct Node {
    key: Box<str>,
    /// The key as a list index, when it is a number.
    index: Option<usize>,
    children: SmallVec<[usize; 4]>,
}

impl Lookups {
    pub(crate) fn new() -> Lookups {
        Lookups {
            nodes: vec![Node {
                key: "".into(),
                index: None,
                children: SmallVec::new(),
            }],
            subscription_id: None,
        }
    }

    /// The node for the path `tokens`, added when new. Nodes are only ever appended, so a
    /// parent always comes before its children.
    pub(crate) fn add<S: AsRef<str>>(&mut self, tokens: &[S]) -> usize {
        let mut at = 0;
        for token in tokens {
            let token = token.as_ref();
            let existing = self.nodes[at]
                .children
                .iter()
                .copied()
                .find(|&c| &*self.nodes[c].key == token);
            at = match existing {
                Some(c) => c,
                None => {
                    let id = self.nodes.len();
                    self.nodes.push(Node {
                        key: token.into(),
                        index: token.parse().ok(),
                        children: SmallVec::new(),
                    });
                    self.nodes[at].children.push(id);
                    id
                }
            };
        }
        if let [event, id] = tokens
            && event.as_ref() == "event"
            && id.as_ref() == "subscriptionId"
        {
            self.subscription_id = Some(at);
        }
        at
    }

    /// The node of the path `tokens`, if a pointer reaches it.
    pub(crate) fn find(&self, tokens: &[&str]) -> Option<usize> {
        let mut at = 0;
        for token in tokens {
            at = self.nodes[at]
                .children
                .iter()
                .copied()
                .find(|&c| &*self.nodes[c].key == *token)?;
        }
        Some(at)
    }

    /// Resolves every node against `doc` into `out` (indexed by node): the value's bytes, or
    /// `None` when the path does not exist. `/event/subscriptionId` resolves to
    /// `subscription_id` whatever the context holds.
    pub(crate) fn resolve<'a>(
        &self,
        doc: &'a [u8],
        subscription_id: &'a [u8],
        out: &mut SmallVec<[Option<&'a [u8]>; 16]>,
    ) {
        out.clear();
        out.resize(self.nodes.len(), None);
        let root = json::trim(doc);
        out[0] = (!root.is_empty()).then_some(root);
        for (i, node) in self.nodes.iter().enumerate() {
            if node.children.is_empty() {
                continue;
            }
            let Some(v) = out[i] else { continue };
            // A value that does not scan (it cannot happen for a context Herald accepted or
            // built) leaves its children missing rather than failing the delivery.
            match json::kind(v) {
                Kind::Object => {
                    let _ = json::scan_object(v, |m| {
                        let key = &v[m.key.clone()];
                        for &c in &node.children {
                            if json::key_is(key, &self.nodes[c].key) {
                                out[c] = Some(&v[m.value.clone()]);
                            }
                        }
                    });
                }
                Kind::Array => {
                    let mut n = 0;
                    let _ = json::scan_array(v, |r| {
                        for &c in &node.children {
                            if self.nodes[c].index == Some(n) {
                                out[c] = Some(&v[r.clone()]);
                            }
                        }
                        n += 1;
                    });
                }
                Kind::String | Kind::Null | Kind::Scalar => {}
            }
        }
        if let Some(id) = self.subscription_id {
            out[id] = Some(subscription_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::fixtures::CONTENSIS_CONTEXT;

    const SUB: &[u8] = br#""95398c44-f232-41a8-b947-8aefec4ce6eb""#;

    fn render(t: &Template, doc: &str) -> String {
        let mut out = Vec::new();
        t.render(doc.as_bytes(), SUB, &mut out).expect("renders");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn json_templates() {
        let cases = [
            // Whole string values embed the value itself, whatever it is.
            (
                r#"{"sys": "{/resource/sys/version}", "n": "{/resource/runtime}", "tags": "{/resource/tags}", "none": "{/resource/nope}"}"#,
                r#"{"sys": { "versionNo": "2.0", "published": "2024-05-01T10:15:30.123Z" }, "n": 139, "tags": ["drama", "cult"], "none": null}"#,
            ),
            // Inside a longer string: string content, escaped; nothing when missing.
            (
                r#"{"t": "<{/resource/entryTitle}> ({/resource/runtime} min, {/resource/tags}){/nope}"}"#,
                r#"{"t": "<Fight \"Club\"> (139 min, [\"drama\", \"cult\"])"}"#,
            ),
            // `.` and `/` both separate; list indexes; `~1` for `/` in a key.
            (
                r#"["{/resource/sys.id}", "{/resource.tags.1}", "{/resource/tags/7}", "{/a~1b}"]"#,
                r#"["d69ad539-0e3a-4d7f-9c9d-1fad1b39faad", "cult", null, null]"#,
            ),
            // The subscription id is always this subscription's; the root is the context.
            (
                r#"{"s": "{/event/subscriptionId}", "u": "{/user}"}"#,
                r#"{"s": "95398c44-f232-41a8-b947-8aefec4ce6eb", "u": { "username": "t.durden", "firstName": "Tyler", "lastName": "Durden" }}"#,
            ),
            // Template text outside placeholders is kept byte for byte, escapes included.
            (
                "{ \"a\\\"{\" :\n \"x\\n{/event/name}\\u0041\" }",
                "{ \"a\\\"{\" :\n \"x\\npublished\\u0041\" }",
            ),
            ("\"{/}\"", CONTENSIS_CONTEXT),
            ("", ""),
        ];
        for (src, want) in cases {
            let t = Template::compile_body(src).expect(src);
            assert_eq!(render(&t, CONTENSIS_CONTEXT), want, "{src}");
        }
    }

    #[test]
    fn text_templates() {
        let cases = [
            // Not JSON (XML): values as text, strings unescaped.
            (
                "<entry id=\"{/resource/sys/id}\"><title>{/resource/entryTitle}</title><n>{/resource/runtime}</n>{/nope}</entry>",
                "<entry id=\"d69ad539-0e3a-4d7f-9c9d-1fad1b39faad\"><title>Fight \"Club\"</title><n>139</n></entry>",
            ),
            // Not JSON because of unquoted placeholders: text rules still (a string's text, an
            // object's or list's JSON).
            (
                "{\"version\": {/resource/sys/version/versionNo}, \"tags\": {/resource/tags}}",
                "{\"version\": 2.0, \"tags\": [\"drama\", \"cult\"]}",
            ),
            (
                "https://external.mywebsite.com/handlewebhooks/{/resource/sys.id}?by={/user/username}",
                "https://external.mywebsite.com/handlewebhooks/d69ad539-0e3a-4d7f-9c9d-1fad1b39faad?by=t.durden",
            ),
            (
                "{ not a placeholder } {/resource/department}",
                "{ not a placeholder } Films",
            ),
        ];
        for (src, want) in cases {
            let t = Template::compile_body(src).expect(src);
            assert_eq!(render(&t, CONTENSIS_CONTEXT), want, "{src}");
            assert!(t.has_placeholders());
        }
        let fixed = Template::compile_text("https://example.com/{x}").expect("text");
        assert!(!fixed.has_placeholders());
        assert_eq!(
            fixed.literals().collect::<Vec<_>>(),
            ["https://example.com/{x}"]
        );
    }

    #[test]
    fn syntax_errors_are_positioned() {
        type P = SyntaxProblem;
        let cases = [
            ("abc {/resource", 1, 5, P::UnclosedPlaceholder),
            ("{\"a\": \"{/resource\"}", 1, 8, P::UnclosedPlaceholder),
            ("x\n{/a\"b}", 2, 4, P::PlaceholderChar('"')),
            ("{/a\\b}", 1, 4, P::PlaceholderChar('\\')),
            ("{/a{/b}", 1, 4, P::PlaceholderChar('{')),
            ("{/a/~2}", 1, 5, P::PointerEscape),
            ("{/a~}", 1, 4, P::PointerEscape),
            ("[\"{/x/~2}\"]", 1, 7, P::PointerEscape),
        ];
        for (src, line, column, problem) in cases {
            let err = Template::compile_body(src).expect_err(src);
            assert_eq!(
                err,
                SyntaxError {
                    line,
                    column,
                    problem
                },
                "{src}"
            );
        }
    }

    #[test]
    fn pointers_share_one_lookup_tree() {
        let t = Template::compile_body(
            r#"{"a": "{/resource/sys/id}", "b": "{/resource.sys.id}", "c": "{/resource/sys/language}", "d": "{/resource/}"}"#,
        )
        .expect("compiles");
        // root, resource, sys, id, language.
        assert_eq!(t.lookups.nodes.len(), 5);
        assert!(!t.embeds_event());
        for (src, embeds) in [
            ("\"{/}\"", true),
            ("x{/event}", true),
            ("{/event/id}", false),
        ] {
            assert_eq!(
                Template::compile_body(src).expect(src).embeds_event(),
                embeds,
                "{src}"
            );
        }
    }

    #[test]
    fn output_is_bounded() {
        let big = format!("{{\"v\":\"{}\"}}", "x".repeat(1 << 20));
        let t = Template::compile_text(&"{/v}".repeat(20)).expect("compiles");
        let mut out = Vec::new();
        assert_eq!(
            t.render(big.as_bytes(), SUB, &mut out),
            Err(PayloadError::TooLarge)
        );
    }
}
