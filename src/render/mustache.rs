//! Mustache (<https://mustache.github.io/mustache.5.html>) for DatoCMS `custom_payload` bodies
//! and webhook URLs: compiled once when a subscription is saved, rendered per delivery over a
//! `serde_json::Value` (the DatoCMS default body, [`super::datocms`]).
//!
//! Everything of the core language is here: variables with HTML escaping, `{{{x}}}` and
//! `{{& x}}` unescaped, sections over lists, objects and booleans, inverted sections, dotted
//! names, the implicit iterator `{{.}}`, comments, set-delimiter, and the spec's standalone-line
//! whitespace rules. The official spec cases for interpolation, sections, inverted sections,
//! comments and delimiters run as tests (`mustache_spec.json`, beside this file).
//!
//! Why not a crate: `mustache` (the original) is unmaintained since 2019 and renders from its own
//! `Data` tree, so every delivery would convert the JSON first; `ramhorns` calls itself
//! "Mustache-like" and renders typed structs (`#[derive(Content)]`), not JSON values; `mustache2`
//! is young, resolves templates by name through a `RenderManager` that renders through `&mut`,
//! and also wants its own `Data`; `handlebars` is a different language (no set-delimiter,
//! different section rules). What Herald needs — compile once, render from a borrowed JSON value
//! from many threads, positioned compile errors, a size cap — is a few hundred lines, smaller
//! than any of those dependencies, and tested against the spec itself.
//!
//! Choices where the spec leaves room (documented for DatoCMS users; DatoCMS itself renders
//! with Ruby's `mustache` gem semantics, which these follow):
//! - Falsey: `false`, `null`, a missing name and the empty list. Everything else is truthy,
//!   `""`, `0` and `{}` included.
//! - Interpolating a number writes it as JSON does, `true`/`false` as such, `null` as nothing,
//!   and an object or a list as compact JSON.
//! - HTML escaping covers `&`, `<`, `>`, `"` and `'` (as `&#39;`, what Ruby's `CGI.escapeHTML`
//!   writes).
//! - A dotted part that is a number indexes a list: `{{related_entities.0.id}}`.
//! - Partials (`{{> name}}`) render nothing: a DatoCMS template has no partials to include (the
//!   spec's behaviour for a partial that does not exist).
//! - Lambdas do not exist in JSON data. The rendered text is never checked to be JSON (DatoCMS's
//!   own example template is not).

use std::io::Write as _;
use std::ops::Range;

use serde_json::Value;
use smallvec::SmallVec;

use super::body::{MAX_BODY_BYTES, PayloadError};
use super::syntax::{SyntaxError, SyntaxProblem};

/// How deep sections may nest. Bounds the render's recursion whatever the template.
pub(crate) const MAX_DEPTH: usize = 64;

/// A compiled template. Immutable and `Sync`: one per subscription, shared by every render.
#[derive(Debug)]
pub(crate) struct Template {
    /// The template text; [`Node::Text`] ranges point into it.
    src: Box<str>,
    nodes: Box<[Node]>,
}

#[derive(Debug)]
enum Node {
    Text(Range<usize>),
    Var {
        name: Name,
        escape: bool,
    },
    Section {
        name: Name,
        inverted: bool,
        children: Box<[Node]>,
    },
}

#[derive(Debug)]
enum Name {
    /// `.`: the top of the context stack.
    Dot,
    /// `a.b.c`, split once here.
    Path(Box<[Part]>),
}

#[derive(Debug)]
struct Part {
    key: Box<str>,
    /// The key as a list index, when it is a number.
    index: Option<usize>,
}

/// One lexed token, before standalone lines are trimmed and sections are nested.
#[derive(Debug)]
enum Tok {
    Text(Range<usize>),
    Var {
        name: Range<usize>,
        escape: bool,
        at: usize,
    },
    Open {
        name: Range<usize>,
        inverted: bool,
        at: usize,
    },
    Close {
        name: Range<usize>,
        at: usize,
    },
    /// Comments, set-delimiter tags and partials: they render nothing.
    Silent,
}

impl Tok {
    /// Tags that may stand alone on a line, which then disappears from the output.
    fn standalone_kind(&self) -> bool {
        matches!(self, Tok::Open { .. } | Tok::Close { .. } | Tok::Silent)
    }
}

impl Template {
    /// Parses `src`, or says where and why it is not a template.
    pub(crate) fn compile(src: &str) -> Result<Template, SyntaxError> {
        let mut toks = lex(src)?;
        trim_standalone_lines(src, &mut toks);
        let nodes = nest(src, toks)?;
        Ok(Template {
            src: src.into(),
            nodes,
        })
    }

    /// The output when the template has no variables or sections (a URL that is not templated;
    /// comments and set-delimiter tags may still have been there).
    pub(crate) fn as_plain_text(&self) -> Option<String> {
        let mut text = String::new();
        for node in &self.nodes {
            match node {
                Node::Text(r) => text.push_str(&self.src[r.clone()]),
                Node::Var { .. } | Node::Section { .. } => return None,
            }
        }
        Some(text)
    }

    /// The template text as the user wrote it.
    pub(crate) fn source(&self) -> &str {
        &self.src
    }

    /// Renders over `data` into `out`, refusing to grow `out` past [`MAX_BODY_BYTES`].
    pub(crate) fn render(&self, data: &Value, out: &mut Vec<u8>) -> Result<(), PayloadError> {
        let mut stack: SmallVec<[&Value; 8]> = SmallVec::new();
        stack.push(data);
        self.walk(&self.nodes, &mut stack, out)
    }

    fn walk(
        &self,
        nodes: &[Node],
        stack: &mut SmallVec<[&Value; 8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), PayloadError> {
        for node in nodes {
            match node {
                Node::Text(r) => out.extend_from_slice(self.src[r.clone()].as_bytes()),
                Node::Var { name, escape } => {
                    if let Some(v) = lookup(name, stack) {
                        write_value(v, *escape, out);
                    }
                }
                Node::Section {
                    name,
                    inverted,
                    children,
                } => {
                    let value = lookup(name, stack);
                    if *inverted {
                        if !value.is_some_and(truthy) {
                            self.walk(children, stack, out)?;
                        }
                        continue;
                    }
                    match value {
                        Some(Value::Array(items)) => {
                            for item in items {
                                stack.push(item);
                                let r = self.walk(children, stack, out);
                                stack.pop();
                                r?;
                            }
                        }
                        Some(v) if truthy(v) => {
                            stack.push(v);
                            let r = self.walk(children, stack, out);
                            stack.pop();
                            r?;
                        }
                        _ => {}
                    }
                }
            }
            if out.len() > MAX_BODY_BYTES {
                return Err(PayloadError::TooLarge);
            }
        }
        Ok(())
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => false,
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Resolves a name against the context stack (spec: the first part walks the stack from the
/// top, every further part resolves only inside the value found so far).
fn lookup<'v>(name: &Name, stack: &[&'v Value]) -> Option<&'v Value> {
    match name {
        Name::Dot => stack.last().copied(),
        Name::Path(parts) => {
            let (first, rest) = parts.split_first()?;
            let mut v = stack.iter().rev().find_map(|ctx| child(ctx, first))?;
            for part in rest {
                v = child(v, part)?;
            }
            Some(v)
        }
    }
}

fn child<'v>(v: &'v Value, part: &Part) -> Option<&'v Value> {
    match v {
        Value::Object(map) => map.get(&*part.key),
        Value::Array(items) => part.index.and_then(|i| items.get(i)),
        _ => None,
    }
}

fn write_value(v: &Value, escape: bool, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, s: &[u8]| {
        if escape {
            write_escaped_html(out, s);
        } else {
            out.extend_from_slice(s);
        }
    };
    match v {
        Value::Null => {}
        Value::String(s) => text(out, s.as_bytes()),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // Writing into a `Vec` cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::Array(_) | Value::Object(_) => {
            let json = serde_json::to_vec(v).unwrap_or_default();
            text(out, &json);
        }
    }
}

/// Appends `s` with `&`, `<`, `>`, `"` and `'` replaced by their HTML entities.
fn write_escaped_html(out: &mut Vec<u8>, s: &[u8]) {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let entity: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&#39;",
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(entity);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
}

/// Splits `src` into text and tags, following set-delimiter tags as they come. Text is cut
/// after every newline so that [`trim_standalone_lines`] can work a line at a time.
fn lex(src: &str) -> Result<Vec<Tok>, SyntaxError> {
    let err = |at: usize, p: SyntaxProblem| SyntaxError::at(src, at, p);
    let mut toks = Vec::new();
    let mut open: Box<str> = "{{".into();
    let mut close: Box<str> = "}}".into();
    let mut pos = 0;
    while pos < src.len() {
        let Some(found) = src[pos..].find(&*open) else {
            push_text(src, pos..src.len(), &mut toks);
            break;
        };
        let at = pos + found;
        push_text(src, pos..at, &mut toks);
        let inner = at + open.len();
        let unclosed = || err(at, SyntaxProblem::UnclosedTag(open.clone()));
        let rest = &src[inner..];
        if let Some(after) = rest.strip_prefix('{') {
            // `{{{name}}}`: the closing `}` comes right before the closing delimiter.
            let end = find_pair(after, '}', &close).ok_or_else(unclosed)?;
            let name = name_range(src, inner + 1, inner + 1 + end, at)?;
            toks.push(Tok::Var {
                name,
                escape: false,
                at,
            });
            pos = inner + 1 + end + 1 + close.len();
            continue;
        }
        if let Some(after) = rest.strip_prefix('=') {
            let end = find_pair(after, '=', &close).ok_or_else(unclosed)?;
            let mut parts = after[..end].split_whitespace();
            let (Some(o), Some(c), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err(at, SyntaxProblem::BadDelimiters));
            };
            if o.contains('=') || c.contains('=') {
                return Err(err(at, SyntaxProblem::BadDelimiters));
            }
            pos = inner + 1 + end + 1 + close.len();
            open = o.into();
            close = c.into();
            toks.push(Tok::Silent);
            continue;
        }
        let end = rest.find(&*close).ok_or_else(unclosed)?;
        pos = inner + end + close.len();
        // Whitespace may come before the sigil as well as after it (`{{ #x }}`).
        let content_start = inner + (end - rest[..end].trim_start().len());
        let content_end = inner + end;
        let sigil = src[content_start..content_end].chars().next();
        let after_sigil = content_start + sigil.map_or(0, char::len_utf8);
        toks.push(match sigil {
            Some('!') => Tok::Silent,
            Some('>') => {
                name_range(src, after_sigil, content_end, at)?;
                Tok::Silent
            }
            Some('#' | '^') => Tok::Open {
                name: name_range(src, after_sigil, content_end, at)?,
                inverted: sigil == Some('^'),
                at,
            },
            Some('/') => Tok::Close {
                name: name_range(src, after_sigil, content_end, at)?,
                at,
            },
            Some('&') => Tok::Var {
                name: name_range(src, after_sigil, content_end, at)?,
                escape: false,
                at,
            },
            _ => Tok::Var {
                name: name_range(src, content_start, content_end, at)?,
                escape: true,
                at,
            },
        });
    }
    Ok(toks)
}

/// Where `first` immediately followed by `then` starts in `s`.
fn find_pair(s: &str, first: char, then: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(first) {
        let i = from + i;
        if s[i + first.len_utf8()..].starts_with(then) {
            return Some(i);
        }
        from = i + first.len_utf8();
    }
    None
}

/// The trimmed name in `src[start..end]`, checked: not empty, no whitespace inside.
fn name_range(src: &str, start: usize, end: usize, at: usize) -> Result<Range<usize>, SyntaxError> {
    let raw = &src[start..end];
    let name = raw.trim();
    if name.is_empty() {
        return Err(SyntaxError::at(src, at, SyntaxProblem::EmptyName));
    }
    if name.contains(char::is_whitespace) {
        return Err(SyntaxError::at(src, at, SyntaxProblem::WhitespaceInName));
    }
    let s = start + (raw.len() - raw.trim_start().len());
    Ok(s..s + name.len())
}

fn push_text(src: &str, range: Range<usize>, toks: &mut Vec<Tok>) {
    let mut start = range.start;
    for (i, b) in src.as_bytes()[range.clone()].iter().enumerate() {
        if *b == b'\n' {
            let end = range.start + i + 1;
            toks.push(Tok::Text(start..end));
            start = end;
        }
    }
    if start < range.end {
        toks.push(Tok::Text(start..range.end));
    }
}

/// Applies the spec's standalone rule: a line holding only whitespace and one section, inverted
/// section, closing, comment, partial or set-delimiter tag is removed from the output whole
/// (its indentation and its line ending), leaving the tag.
fn trim_standalone_lines(src: &str, toks: &mut [Tok]) {
    let mut start = 0;
    while start < toks.len() {
        let mut end = start;
        while end < toks.len() {
            end += 1;
            if matches!(&toks[end - 1], Tok::Text(r) if src[r.clone()].ends_with('\n')) {
                break;
            }
        }
        let line = &mut toks[start..end];
        let mut tags = line.iter().filter(|t| !matches!(t, Tok::Text(_)));
        let standalone = matches!((tags.next(), tags.next()), (Some(t), None) if t.standalone_kind())
            && line.iter().all(|t| match t {
                Tok::Text(r) => is_blank(&src[r.clone()]),
                _ => true,
            });
        if standalone {
            for t in line.iter_mut() {
                if let Tok::Text(r) = t {
                    *r = r.start..r.start;
                }
            }
        }
        start = end;
    }
}

/// Spaces and tabs, then optionally the line ending (`\n` or `\r\n`).
fn is_blank(s: &str) -> bool {
    let s = s
        .strip_suffix('\n')
        .map_or(s, |s| s.strip_suffix('\r').unwrap_or(s));
    s.bytes().all(|b| b == b' ' || b == b'\t')
}

/// Builds the section tree, checking every section is closed by its own name.
fn nest(src: &str, toks: Vec<Tok>) -> Result<Box<[Node]>, SyntaxError> {
    struct Open {
        name: Range<usize>,
        inverted: bool,
        at: usize,
        outer: Vec<Node>,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    for tok in toks {
        match tok {
            Tok::Text(r) if r.is_empty() => {}
            // Adjacent text (a line cut at its newline) becomes one node again.
            Tok::Text(r) => match nodes.last_mut() {
                Some(Node::Text(prev)) if prev.end == r.start => prev.end = r.end,
                _ => nodes.push(Node::Text(r)),
            },
            Tok::Silent => {}
            Tok::Var { name, escape, at } => nodes.push(Node::Var {
                name: parse_name(src, name, at)?,
                escape,
            }),
            Tok::Open { name, inverted, at } => {
                if open.len() >= MAX_DEPTH {
                    return Err(SyntaxError::at(src, at, SyntaxProblem::TooDeep(MAX_DEPTH)));
                }
                parse_name(src, name.clone(), at)?;
                open.push(Open {
                    name,
                    inverted,
                    at,
                    outer: std::mem::take(&mut nodes),
                });
            }
            Tok::Close { name, at } => {
                let close = &src[name];
                let Some(section) = open.pop() else {
                    return Err(SyntaxError::at(
                        src,
                        at,
                        SyntaxProblem::UnopenedSection(close.into()),
                    ));
                };
                let opened = &src[section.name.clone()];
                if opened != close {
                    return Err(SyntaxError::at(
                        src,
                        at,
                        SyntaxProblem::MismatchedSection {
                            open: opened.into(),
                            close: close.into(),
                        },
                    ));
                }
                let children = std::mem::replace(&mut nodes, section.outer);
                nodes.push(Node::Section {
                    name: parse_name(src, section.name, section.at)?,
                    inverted: section.inverted,
                    children: children.into_boxed_slice(),
                });
            }
        }
    }
    if let Some(section) = open.pop() {
        return Err(SyntaxError::at(
            src,
            section.at,
            SyntaxProblem::UnclosedSection(src[section.name].into()),
        ));
    }
    Ok(nodes.into_boxed_slice())
}

fn parse_name(src: &str, range: Range<usize>, at: usize) -> Result<Name, SyntaxError> {
    let name = &src[range];
    if name == "." {
        return Ok(Name::Dot);
    }
    let parts: Box<[Part]> = name
        .split('.')
        .map(|key| Part {
            key: key.into(),
            index: key.parse().ok(),
        })
        .collect();
    if parts.iter().any(|p| p.key.is_empty()) {
        return Err(SyntaxError::at(
            src,
            at,
            SyntaxProblem::EmptyNamePart(name.into()),
        ));
    }
    Ok(Name::Path(parts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(template: &str, data: &Value) -> String {
        let t = Template::compile(template).unwrap_or_else(|e| panic!("{template:?}: {e}"));
        let mut out = Vec::new();
        t.render(data, &mut out).expect("renders");
        String::from_utf8(out).expect("utf-8")
    }

    /// The official spec's cases (github.com/mustache/spec, MIT licence): the JSON versions of
    /// `interpolation`, `sections`, `inverted`, `comments` and `delimiters`, without the two
    /// delimiter cases that need partials. Embedded unchanged but for dropping `overview`.
    const SPEC: &str = include_str!("mustache_spec.json");

    #[test]
    fn official_spec_cases() {
        let spec: Value = serde_json::from_str(SPEC).expect("spec JSON");
        let files = spec.as_object().expect("object of files");
        let mut ran = 0;
        for (file, tests) in files {
            for case in tests.as_array().expect("tests") {
                let name = case["name"].as_str().expect("name");
                let template = case["template"].as_str().expect("template");
                let expected = case["expected"].as_str().expect("expected");
                assert_eq!(
                    render(template, &case["data"]),
                    expected,
                    "{file}: {name}: {template:?}"
                );
                ran += 1;
            }
        }
        // interpolation 31 + sections 26 + inverted 21 + comments 11 + delimiters 12.
        assert_eq!(ran, 101);
    }

    /// Cases the spec added after the version embedded above (v1.2–v1.3), written from its
    /// text, and the choices the module doc lists.
    #[test]
    fn later_spec_cases_and_documented_choices() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "I ({{cannot}}) be seen!",
                json!({"cannot": null}),
                "I () be seen!",
            ),
            (
                "I ({{{cannot}}}) be seen!",
                json!({"cannot": null}),
                "I () be seen!",
            ),
            (
                "I ({{&cannot}}) be seen!",
                json!({"cannot": null}),
                "I () be seen!",
            ),
            ("Hello, {{.}}!\n", json!("world"), "Hello, world!\n"),
            ("{{.}}", json!("& \" < >"), "&amp; &quot; &lt; &gt;"),
            ("{{{.}}}", json!("& \" < >"), "& \" < >"),
            (
                "\"{{.}} miles an hour!\"",
                json!(85),
                "\"85 miles an hour!\"",
            ),
            ("{{a.b}}", json!({"a.b": "c"}), ""),
            ("{{a.b}}", json!({"a.b": "c", "a": {"b": "d"}}), "d"),
            ("\"{{#null}}x{{/null}}\"", json!({"null": null}), "\"\""),
            ("\"{{^null}}x{{/null}}\"", json!({"null": null}), "\"x\""),
            (
                "\"{{#sec}}{{a}}, {{b}}, {{c.d}}{{/sec}}\"",
                json!({"a": "foo", "b": "wrong", "sec": {"b": "bar"}, "c": {"d": "baz"}}),
                "\"foo, bar, baz\"",
            ),
            (
                "\"{{#foo}}{{.}} is {{foo}}{{/foo}}\"",
                json!({"foo": "bar"}),
                "\"bar is bar\"",
            ),
            (
                "\"{{#.}}({{value}}){{/.}}\"",
                json!([{"value": "a"}, {"value": "b"}]),
                "\"(a)(b)\"",
            ),
            // Choices: truthiness, non-string interpolation, `'`, list indexes, partials.
            (
                "{{#s}}[{{s}}]{{/s}}{{#z}}{{z}}{{/z}}{{#o}}o{{/o}}",
                json!({"s": "", "z": 0, "o": {}}),
                "[]0o",
            ),
            (
                "{{b}} {{n}} {{f}} {{l}} {{o}}",
                json!({"b": false, "n": -3, "f": 2.5, "l": [1, "a"], "o": {"k": "<v>"}}),
                "false -3 2.5 [1,&quot;a&quot;] {&quot;k&quot;:&quot;&lt;v&gt;&quot;}",
            ),
            ("{{{o}}}", json!({"o": {"k": "<v>"}}), "{\"k\":\"<v>\"}"),
            ("{{q}}", json!({"q": "it's"}), "it&#39;s"),
            (
                "{{list.1.id}} {{list.9.id}} {{#list.0}}{{id}}{{/list.0}}",
                json!({"list": [{"id": "a"}, {"id": "b"}]}),
                "b  a",
            ),
            ("a\n  {{> nothing}}\nb {{>x}}c", json!({}), "a\nb c"),
        ];
        for (template, data, want) in cases {
            assert_eq!(render(template, data), *want, "{template:?}");
        }
    }

    /// DatoCMS's own `custom_payload` example (general-concepts), over the §1.8 default body:
    /// a section, dotted names, and a stray `]` that makes the output invalid JSON — rendered
    /// as written, never validated.
    #[test]
    fn datocms_documented_example() {
        let data = json!({
            "entity_type": "item", "event_type": "update",
            "entity": {"id": "39830648", "attributes": {"title": "Hello <World>"}},
        });
        let template = "{\n  \"message\": \"{{event_type}} on {{entity_type}}\",\n  {{#entity}}\"id\": \"{{id}}\",{{/entity}}\n  \"title\": \"{{entity.attributes.title}}\"]\n}";
        assert_eq!(
            render(template, &data),
            "{\n  \"message\": \"update on item\",\n  \"id\": \"39830648\",\n  \"title\": \"Hello &lt;World&gt;\"]\n}"
        );
    }

    #[test]
    fn syntax_errors_are_positioned() {
        type P = SyntaxProblem;
        let cases: &[(&str, u32, u32, SyntaxProblem)] = &[
            ("abc {{name", 1, 5, P::UnclosedTag("{{".into())),
            ("{{{name}}", 1, 1, P::UnclosedTag("{{".into())),
            ("x\n {{=<% %>=}} <%a", 2, 14, P::UnclosedTag("<%".into())),
            ("{{}}", 1, 1, P::EmptyName),
            ("{{ }}", 1, 1, P::EmptyName),
            ("{{#}}{{/}}", 1, 1, P::EmptyName),
            ("{{a b}}", 1, 1, P::WhitespaceInName),
            ("{{a..b}}", 1, 1, P::EmptyNamePart("a..b".into())),
            ("{{.a}}", 1, 1, P::EmptyNamePart(".a".into())),
            ("{{=<%=}}", 1, 1, P::BadDelimiters),
            ("{{=a b c=}}", 1, 1, P::BadDelimiters),
            ("{{=a= b=}}", 1, 1, P::BadDelimiters),
            ("ok\n{{/x}}", 2, 1, P::UnopenedSection("x".into())),
            (
                "{{#a}}{{#b}}{{/a}}{{/b}}",
                1,
                13,
                P::MismatchedSection {
                    open: "b".into(),
                    close: "a".into(),
                },
            ),
            (
                "é {{#entity}}\n{{id}}",
                1,
                3,
                P::UnclosedSection("entity".into()),
            ),
            ("{{^missing}}", 1, 1, P::UnclosedSection("missing".into())),
        ];
        for (template, line, column, problem) in cases {
            let err = Template::compile(template).expect_err(template);
            assert_eq!(
                err,
                SyntaxError {
                    line: *line,
                    column: *column,
                    problem: problem.clone()
                },
                "{template:?}"
            );
        }
    }

    #[test]
    fn nesting_is_bounded_at_compile_time() {
        let ok = "{{#a}}".repeat(MAX_DEPTH) + &"{{/a}}".repeat(MAX_DEPTH);
        assert!(Template::compile(&ok).is_ok());
        let deep = "{{#a}}".repeat(MAX_DEPTH + 1) + &"{{/a}}".repeat(MAX_DEPTH + 1);
        let err = Template::compile(&deep).expect_err("too deep");
        assert_eq!(err.problem, SyntaxProblem::TooDeep(MAX_DEPTH));
    }

    #[test]
    fn output_is_bounded() {
        // 26 nested loops over 2 items would be 2^26 × 1 KiB; the render stops at the cap.
        let open: String = ('a'..='z').map(|c| format!("{{{{#{c}}}}}")).collect();
        let close: String = ('a'..='z').rev().map(|c| format!("{{{{/{c}}}}}")).collect();
        let t = Template::compile(&format!("{open}{{{{x}}}}{close}")).expect("compiles");
        let mut data = serde_json::Map::new();
        for c in 'a'..='z' {
            data.insert(c.to_string(), json!([1, 2]));
        }
        data.insert("x".into(), json!("y".repeat(1024)));
        let mut out = Vec::new();
        assert_eq!(
            t.render(&Value::Object(data), &mut out),
            Err(PayloadError::TooLarge)
        );
        assert!(out.len() <= MAX_BODY_BYTES + 1024, "{}", out.len());
    }

    #[test]
    fn plain_text_is_recognised() {
        let cases = [
            ("https://example.com/hook", Some("https://example.com/hook")),
            ("", Some("")),
            ("{{! note }}https://a/b", Some("https://a/b")),
            ("https://a/{{=<% %>=}}b<%! c %>/d", Some("https://a/b/d")),
            ("https://example.com/{{entity.id}}", None),
        ];
        for (src, want) in cases {
            let t = Template::compile(src).expect("compiles");
            assert_eq!(t.as_plain_text().as_deref(), want, "{src}");
            assert_eq!(t.source(), src);
        }
    }
}
