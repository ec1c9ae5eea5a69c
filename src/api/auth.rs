//! Bearer-token checks for the management API and for ingest.
//!
//! Tokens are compared in constant time (DESIGN §8) so a caller cannot learn a token byte by byte
//! from response timings. An empty token list means "open", which config validation allows for
//! the management API only on local listeners.

use crate::model::Secret;

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    Wrong,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => {
                "missing Authorization header: send `Authorization: Bearer <token>`"
            }
            AuthError::Malformed => "malformed Authorization header: expected `Bearer <token>`",
            AuthError::Wrong => "the token is not valid for this endpoint",
        }
    }
}

/// Checks `Authorization: Bearer <token>` against `tokens`; returns the index of the token that
/// matched (`None` when the list is empty and everything is allowed).
pub fn check_bearer(
    header: Option<&http::HeaderValue>,
    tokens: &[Secret],
) -> Result<Option<usize>, AuthError> {
    if tokens.is_empty() {
        return Ok(None);
    }
    let value = header.ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::Malformed);
    }
    let token = token.trim().as_bytes();
    // Compare against every token, so timing does not reveal which one (or how much) matched.
    let mut found = None;
    for (i, t) in tokens.iter().enumerate() {
        if constant_time_eq(t.expose().as_bytes(), token) && found.is_none() {
            found = Some(i);
        }
    }
    found.map(Some).ok_or(AuthError::Wrong)
}

/// Equality whose running time depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn bearer_table() {
        let tokens = vec![
            Secret::new("aaaaaaaaaaaaaaaa"),
            Secret::new("bbbbbbbbbbbbbbbb"),
        ];
        let h = |s: &'static str| Some(HeaderValue::from_static(s));
        type Case = (Option<HeaderValue>, Result<Option<usize>, AuthError>);
        let cases: Vec<Case> = vec![
            (None, Err(AuthError::Missing)),
            (h("Basic abc"), Err(AuthError::Malformed)),
            (h("Bearer"), Err(AuthError::Malformed)),
            (h("Bearer nope"), Err(AuthError::Wrong)),
            (h("Bearer aaaaaaaaaaaaaaab"), Err(AuthError::Wrong)),
            (h("Bearer aaaaaaaaaaaaaaaa"), Ok(Some(0))),
            (h("bearer bbbbbbbbbbbbbbbb"), Ok(Some(1))),
        ];
        for (header, want) in cases {
            assert_eq!(check_bearer(header.as_ref(), &tokens), want, "{header:?}");
        }
        assert_eq!(check_bearer(None, &[]), Ok(None));
    }
}
