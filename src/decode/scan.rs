//! Byte-level JSON framing: finds where each item of a batch starts and ends, and enforces the
//! nesting limit, in one pass over the body, without building anything.
//!
//! Decoding sits between ingest (which hands over the whole request body as `Bytes`) and the
//! journal. Every event keeps its original bytes as a zero-copy slice of the body, so the decoder
//! must know each item's exact byte range. simd-json does not report positions of values, and it
//! rewrites its input while unescaping strings, so the ranges come from this scanner; simd-json
//! then parses (and fully validates) each item from a scratch copy.
//!
//! The scanner checks only what it must: string boundaries (so brackets inside strings do not
//! count), bracket depth, and the array's own framing (`[`, `,`, `]`, nothing after). Everything
//! else (numbers, escapes, UTF-8, colons, commas inside objects) is left to simd-json on each
//! item. That split is sound: if every element parses on its own and the array's framing is
//! right, the whole array is valid JSON, and the other way round (see the property test).

use std::ops::Range;

/// What the scanner found wrong. Offsets are byte positions in the scanned slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// The framing is broken at `offset`; `what` says how, for a person to read.
    Syntax { offset: usize, what: &'static str },
    /// A bracket at `offset` opens one level more than the limit allows.
    TooDeep { offset: usize },
    /// The batch has more items than the limit allows (scanning stops at the first extra one).
    TooMany,
}

const OTHER: u8 = 0;
const WS: u8 = 1;
const QUOTE: u8 = 2;
const OPEN: u8 = 3;
const CLOSE: u8 = 4;
const COMMA: u8 = 5;

/// Byte classes, looked up once per byte outside strings.
static CLASS: [u8; 256] = {
    let mut t = [OTHER; 256];
    t[b' ' as usize] = WS;
    t[b'\t' as usize] = WS;
    t[b'\n' as usize] = WS;
    t[b'\r' as usize] = WS;
    t[b'"' as usize] = QUOTE;
    t[b'[' as usize] = OPEN;
    t[b'{' as usize] = OPEN;
    t[b']' as usize] = CLOSE;
    t[b'}' as usize] = CLOSE;
    t[b',' as usize] = COMMA;
    t
};

/// JSON whitespace (RFC 8259 §2).
#[inline]
pub(crate) fn is_ws(b: u8) -> bool {
    CLASS[b as usize] == WS
}

/// The range of `bytes` without leading and trailing JSON whitespace (empty when all blank).
pub(crate) fn trim(bytes: &[u8]) -> Range<usize> {
    let start = bytes.iter().position(|&b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes[start..]
        .iter()
        .rposition(|&b| !is_ws(b))
        .map_or(start, |i| start + i + 1);
    start..end
}

/// Given `bytes[open] == b'"'`, returns the index just past the closing quote. Jumps from one
/// `"` or `\` to the next with memchr, which is where most of a JSON body's bytes are.
#[inline]
fn skip_string(bytes: &[u8], open: usize) -> Result<usize, ScanError> {
    let mut i = open + 1;
    // Most strings (keys, ids, short values) end within a few bytes: look at those directly
    // before paying for memchr's set-up.
    let near = (i + 24).min(bytes.len());
    while i < near {
        match bytes[i] {
            b'"' => return Ok(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    while i < bytes.len() {
        match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
            Some(k) if bytes[i + k] == b'"' => return Ok(i + k + 1),
            // A backslash escapes the next byte, whatever it is (`\"`, `\\`, `\u…`).
            Some(k) => i += k + 2,
            None => break,
        }
    }
    Err(ScanError::Syntax {
        offset: open,
        what: "unterminated string",
    })
}

/// Checks the one JSON value in `bytes` before it is parsed: it nests no deeper than
/// `max_depth` (the outermost object or array is level 1), its brackets are all closed, and
/// nothing follows it. Those are the errors simd-json reports without a useful position;
/// mismatched brackets and everything else are left to it.
pub(crate) fn check_value(bytes: &[u8], max_depth: usize) -> Result<(), ScanError> {
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match CLASS[bytes[i] as usize] {
            QUOTE => {
                i = skip_string(bytes, i)?;
                continue;
            }
            OPEN => {
                depth += 1;
                if depth > max_depth {
                    return Err(ScanError::TooDeep { offset: i });
                }
            }
            CLOSE => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let rest = i + 1 + trim(&bytes[i + 1..]).start;
                    if rest < bytes.len() {
                        return Err(ScanError::Syntax {
                            offset: rest,
                            what: "unexpected data after the JSON value",
                        });
                    }
                    return Ok(());
                }
            }
            _ => {}
        }
        i += 1;
    }
    if depth > 0 {
        return Err(ScanError::Syntax {
            offset: bytes.len(),
            what: "unexpected end of input: an object or array is not closed",
        });
    }
    Ok(())
}

/// Splits the top-level JSON array in `bytes` into the byte ranges of its elements (whitespace
/// around each element excluded) and appends them to `out`.
///
/// Depth is counted per element (the batch array itself is not a level), so an event nests the
/// same whether it arrives alone or in a batch. Stops with [`ScanError::TooMany`] as soon as a
/// `max_items + 1`-th element starts, so `out` never grows past `max_items`.
pub(crate) fn split_array(
    bytes: &[u8],
    max_depth: usize,
    max_items: usize,
    out: &mut Vec<Range<usize>>,
) -> Result<(), ScanError> {
    let mut i = trim(bytes).start;
    if bytes.get(i) != Some(&b'[') {
        return Err(ScanError::Syntax {
            offset: i,
            what: "expected '[' to start a batch",
        });
    }
    let first_item = out.len();
    i += 1;
    // Depth below the batch array: 0 between elements.
    let mut depth = 0usize;
    // Start of the element being scanned (None between a separator and the next value) and the
    // end of its last non-blank byte.
    let mut start: Option<usize> = None;
    let mut end = 0usize;
    while i < bytes.len() {
        let class = CLASS[bytes[i] as usize];
        if depth == 0 {
            match class {
                WS => {
                    i += 1;
                    continue;
                }
                COMMA => {
                    let Some(s) = start.take() else {
                        return Err(ScanError::Syntax {
                            offset: i,
                            what: "expected a value before ','",
                        });
                    };
                    out.push(s..end);
                    i += 1;
                    continue;
                }
                CLOSE => {
                    if bytes[i] != b']' {
                        return Err(ScanError::Syntax {
                            offset: i,
                            what: "expected ',' or ']' in the batch array",
                        });
                    }
                    match start.take() {
                        Some(s) => out.push(s..end),
                        None if out.len() > first_item => {
                            return Err(ScanError::Syntax {
                                offset: i,
                                what: "expected a value after ',' (trailing comma)",
                            });
                        }
                        None => {}
                    }
                    let rest = i + 1 + trim(&bytes[i + 1..]).start;
                    if rest < bytes.len() {
                        return Err(ScanError::Syntax {
                            offset: rest,
                            what: "unexpected data after the batch array",
                        });
                    }
                    return Ok(());
                }
                _ => {
                    if start.is_none() {
                        if out.len() - first_item >= max_items {
                            return Err(ScanError::TooMany);
                        }
                        start = Some(i);
                    }
                }
            }
        }
        match class {
            QUOTE => {
                i = skip_string(bytes, i)?;
                if depth == 0 {
                    end = i;
                }
                continue;
            }
            OPEN => {
                depth += 1;
                if depth > max_depth {
                    return Err(ScanError::TooDeep { offset: i });
                }
            }
            // depth > 0 here: a closer at depth 0 was handled above.
            CLOSE => depth -= 1,
            _ => {}
        }
        i += 1;
        if depth == 0 && class != WS {
            end = i;
        }
    }
    Err(ScanError::Syntax {
        offset: bytes.len(),
        what: "unexpected end of body: the batch array is not closed with ']'",
    })
}

/// Splits an NDJSON body into the byte ranges of its non-blank lines (line ends and surrounding
/// whitespace excluded) and appends them to `out`; stops with [`ScanError::TooMany`] at the
/// `max_items + 1`-th line with content.
pub(crate) fn split_lines(
    bytes: &[u8],
    max_items: usize,
    out: &mut Vec<Range<usize>>,
) -> Result<(), ScanError> {
    let first_item = out.len();
    let mut line_start = 0usize;
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    for line_end in ends {
        let r = trim(&bytes[line_start..line_end]);
        if !r.is_empty() {
            if out.len() - first_item >= max_items {
                return Err(ScanError::TooMany);
            }
            out.push(line_start + r.start..line_start + r.end);
        }
        line_start = line_end + 1;
    }
    Ok(())
}

/// 1-based line numbers of increasing byte offsets (for messages about NDJSON items), counted
/// incrementally so that naming every bad line of a batch stays linear in the body size.
#[derive(Debug, Default)]
pub(crate) struct LineCounter {
    pos: usize,
    newlines: usize,
}

impl LineCounter {
    /// The line of byte `offset`; offsets must not decrease between calls.
    pub(crate) fn line_at(&mut self, bytes: &[u8], offset: usize) -> usize {
        let offset = offset.min(bytes.len());
        if offset > self.pos {
            self.newlines += memchr::memchr_iter(b'\n', &bytes[self.pos..offset]).count();
            self.pos = offset;
        }
        self.newlines + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Result<Vec<&str>, ScanError> {
        let mut out = Vec::new();
        split_array(s.as_bytes(), 64, 100, &mut out)?;
        Ok(out.into_iter().map(|r| &s[r]).collect())
    }

    #[test]
    fn trims_json_whitespace() {
        let cases = [
            ("", 0..0),
            ("   ", 3..3),
            (" {} ", 1..3),
            ("\r\n\t[1]\n", 3..6),
            ("x", 0..1),
        ];
        for (s, want) in cases {
            assert_eq!(trim(s.as_bytes()), want, "{s:?}");
        }
    }

    #[test]
    fn splits_arrays_into_exact_element_ranges() {
        let cases: &[(&str, &[&str])] = &[
            ("[]", &[]),
            (" [ ] ", &[]),
            ("[1]", &["1"]),
            ("[ 1 , 2 ,3 ]", &["1", "2", "3"]),
            (
                r#"[{"a":"]"},{"b":"[,"}]"#,
                &[r#"{"a":"]"}"#, r#"{"b":"[,"}"#],
            ),
            (r#"["a\"],", "\\"]"#, &[r#""a\"],""#, r#""\\""#]),
            ("[[1,[2]],[]]", &["[1,[2]]", "[]"]),
            (
                "\n[\n  {\"x\": [1, 2]} ,\n  true\n]\n",
                &["{\"x\": [1, 2]}", "true"],
            ),
            // Junk inside one element stays inside it; the parser rejects that element.
            ("[1 2]", &["1 2"]),
            (r#"["\u005d"]"#, &[r#""\u005d""#]),
        ];
        for (s, want) in cases {
            assert_eq!(split(s).as_deref(), Ok(*want), "{s:?}");
        }
    }

    /// Escapes at every position around the short-string fast path's end (24 bytes).
    #[test]
    fn escapes_anywhere_in_long_and_short_strings() {
        for n in 0..40 {
            for esc in [r#"\""#, r#"\\"#, r#"\u005d"#] {
                let s = format!(r#""{}{esc}]""#, "x".repeat(n));
                let body = format!("[{s}, {s}]");
                assert_eq!(split(&body), Ok(vec![s.as_str(), s.as_str()]), "{body}");
                assert_eq!(check_value(s.as_bytes(), 1), Ok(()), "{s}");
                let open = format!(r#""{}{esc}"#, "x".repeat(n));
                assert!(check_value(open.as_bytes(), 1).is_err(), "{open}");
            }
        }
    }

    #[test]
    fn rejects_broken_array_framing() {
        let cases: &[(&str, usize, &str)] = &[
            ("{}", 0, "expected '['"),
            ("[,1]", 1, "before ','"),
            ("[1,,2]", 3, "before ','"),
            ("[1,]", 3, "trailing comma"),
            ("[1", 2, "not closed"),
            ("[1] x", 4, "after the batch array"),
            ("[1]]", 3, "after the batch array"),
            ("[1}", 2, "expected ',' or ']'"),
            (r#"["abc]"#, 1, "unterminated string"),
            (r#"["abc\"]"#, 1, "unterminated string"),
            (r#"["abc\"#, 1, "unterminated string"),
        ];
        for (s, at, what) in cases {
            match split(s) {
                Err(ScanError::Syntax { offset, what: w }) => {
                    assert_eq!(offset, *at, "{s:?}");
                    assert!(w.contains(what), "{s:?}: {w}");
                }
                other => panic!("{s:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn depth_is_counted_per_element_and_ignores_strings() {
        let mut out = Vec::new();
        assert_eq!(split_array(b"[[[1]]]", 2, 10, &mut out), Ok(()));
        out.clear();
        assert_eq!(
            split_array(b"[[[[1]]]]", 2, 10, &mut out),
            Err(ScanError::TooDeep { offset: 3 })
        );
        out.clear();
        assert_eq!(split_array(br#"["[[[[[[["]"#, 1, 10, &mut out), Ok(()));

        assert_eq!(check_value(b"{\"a\":[1]}", 2), Ok(()));
        assert_eq!(
            check_value(b"{\"a\":[{}]}", 2),
            Err(ScanError::TooDeep { offset: 6 })
        );
        assert_eq!(check_value(br#"{"a":"{{{{{{"}"#, 1), Ok(()));
    }

    #[test]
    fn single_values_are_closed_and_alone() {
        let syntax = |offset, what| Err(ScanError::Syntax { offset, what });
        let end = "unexpected end of input: an object or array is not closed";
        let after = "unexpected data after the JSON value";
        let cases = [
            ("{}", Ok(())),
            (" {\"a\":[1,{}]} \n", Ok(())),
            ("42", Ok(())),
            ("\"x\"", Ok(())),
            ("{\"a\":1", syntax(6, end)),
            ("[[]", syntax(3, end)),
            ("{\"a\":1} x", syntax(8, after)),
            ("{}}", syntax(2, after)),
            ("[][]", syntax(2, after)),
            ("{\"a\":\"}", syntax(5, "unterminated string")),
        ];
        for (s, want) in cases {
            assert_eq!(check_value(s.as_bytes(), 64), want, "{s:?}");
        }
    }

    #[test]
    fn item_limit_stops_early() {
        let mut out = Vec::new();
        assert_eq!(split_array(b"[1,2,3]", 3, 3, &mut out), Ok(()));
        assert_eq!(out.len(), 3);
        out.clear();
        assert_eq!(
            split_array(b"[1,2,3,4]", 3, 3, &mut out),
            Err(ScanError::TooMany)
        );
        assert_eq!(out.len(), 3);
        out.clear();
        assert_eq!(split_lines(b"1\n2\n\n3\n", 3, &mut out), Ok(()));
        out.clear();
        assert_eq!(
            split_lines(b"1\n2\n3\n4", 3, &mut out),
            Err(ScanError::TooMany)
        );
    }

    #[test]
    fn splits_ndjson_lines() {
        let body = "{\"a\":1}\r\n\n  \n {\"b\":2}  \n{\"c\":3}";
        let mut out = Vec::new();
        split_lines(body.as_bytes(), 10, &mut out).unwrap();
        let got: Vec<&str> = out.iter().map(|r| &body[r.clone()]).collect();
        assert_eq!(got, ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
        let mut lines = LineCounter::default();
        assert_eq!(lines.line_at(body.as_bytes(), out[0].start), 1);
        assert_eq!(lines.line_at(body.as_bytes(), out[1].start), 4);
        assert_eq!(lines.line_at(body.as_bytes(), out[2].start), 5);
        out.clear();
        split_lines(b"\n \n", 10, &mut out).unwrap();
        assert!(out.is_empty());
    }

    /// The splitter agrees with simd-json: a body splits without error and every element parses
    /// exactly when simd-json accepts the whole body as an array, and then the elements are the
    /// array's values, in order.
    #[test]
    fn splitter_agrees_with_simd_json() {
        let inputs = [
            r#"[]"#,
            r#"[1,2,3]"#,
            r#"[ "a\"b" , "c\\" , "\\\"" ]"#,
            r#"[[1,[2,[3]]],{"k":[{"x":"]"}]}]"#,
            "\t[\r\n{\"a\" : [ ] } ,\n null\t]\r\n",
            r#"["\u005b", "\ud83d\ude00", "é"]"#,
            r#"[{"a":1,"b":{"c":"}"}},"x"]"#,
            r#"[1 2]"#,
            r#"[{"a":1}{"b":2}]"#,
            r#"[{"a":]"#,
            r#"[{"a":1]}"#,
            r#"[{]}"#,
            r#"[1,]"#,
            r#"[,]"#,
            r#"[tru]"#,
            r#"["a"]x"#,
            r#"[{"a":"\"}]"#,
            r#"[{"a":[1,2}]]"#,
            r#"[-0.5e10,true,false,null,"",{}]"#,
        ];
        for s in inputs {
            let mut whole = s.as_bytes().to_vec();
            let simd: Option<Vec<String>> =
                simd_json::to_owned_value(&mut whole)
                    .ok()
                    .and_then(|v| match v {
                        simd_json::OwnedValue::Array(a) => Some(
                            a.iter()
                                .map(simd_json::to_string)
                                .map(Result::unwrap)
                                .collect(),
                        ),
                        _ => None,
                    });
            let mut ranges = Vec::new();
            let ours: Option<Vec<String>> = split_array(s.as_bytes(), 64, 100, &mut ranges)
                .ok()
                .and_then(|()| {
                    ranges
                        .iter()
                        .map(|r| {
                            let mut item = s.as_bytes()[r.clone()].to_vec();
                            simd_json::to_owned_value(&mut item)
                                .ok()
                                .map(|v| simd_json::to_string(&v).unwrap())
                        })
                        .collect()
                });
            assert_eq!(ours, simd, "{s:?}");
        }
    }
}
