//! Deserializing lists into exactly sized `Vec`s, for the model types kept in memory per
//! subscription.
//!
//! Where it sits: the journal stores subscriptions as JSON and start-up decodes every one of them
//! (a million, say) into the model. serde's `Vec` grows by doubling from a capacity of 4, because
//! JSON gives no length up front, so a filter list of one filter with one type and two attribute
//! conditions of one value each kept about 390 bytes of spare capacity per subscription — more
//! than a quarter of its memory (issue 5). Collecting each list on the stack first and then
//! allocating it once at its exact length costs nothing extra per decode and leaves no spare
//! capacity and no freed over-sized blocks behind.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};
use smallvec::SmallVec;

/// Lists up to this long are collected on the stack; longer ones (rare: filters and headers are
/// a handful) are shrunk after collecting.
const INLINE: usize = 4;

/// `#[serde(deserialize_with = "exact::vec")]`: a JSON array as a `Vec` with `capacity == len`.
pub fn vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    d.deserialize_seq(ExactVec(PhantomData))
}

/// `#[serde(deserialize_with = "exact::boxed")]`: a JSON array as a boxed slice, 8 bytes
/// smaller than a `Vec` where it is kept (the `Vec` is exactly sized, so boxing it is free).
pub fn boxed<'de, D, T>(d: D) -> Result<Box<[T]>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    vec(d).map(Vec::into_boxed_slice)
}

struct ExactVec<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ExactVec<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut buf: SmallVec<[T; INLINE]> = SmallVec::new();
        while let Some(item) = seq.next_element()? {
            buf.push(item);
        }
        if buf.spilled() {
            let mut v = buf.into_vec();
            v.shrink_to_fit();
            return Ok(v);
        }
        // `collect` would start at a capacity of 4; `with_capacity` + `extend` is exact.
        let mut v = Vec::with_capacity(buf.len());
        v.extend(buf);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize)]
    struct Lists {
        #[serde(deserialize_with = "super::vec")]
        items: Vec<String>,
    }

    #[test]
    fn lists_are_exactly_sized() {
        for n in [0usize, 1, 2, 3, 4, 5, 9, 33] {
            let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
            let json = serde_json::json!({ "items": items }).to_string();
            let got: Lists = serde_json::from_str(&json).unwrap();
            assert_eq!(got.items, items, "n = {n}");
            assert_eq!(got.items.capacity(), n, "n = {n}");
        }
    }

    #[test]
    fn non_lists_are_refused() {
        assert!(serde_json::from_str::<Lists>(r#"{"items": "x"}"#).is_err());
        assert!(serde_json::from_str::<Lists>(r#"{"items": [1]}"#).is_err());
    }
}
