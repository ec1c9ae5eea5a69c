//! A wrapper for values that must never reach a log line or an API response by accident
//! (STYLE: "Secrets in a wrapper whose `Debug` prints `***`").
//!
//! It serializes transparently because the journal has to store the real value; API views build
//! their own output types and decide per dialect whether a secret is echoed (DatoCMS and Sitecore
//! audit echo it, Contensis and the native API never do).

use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(Box<str>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into().into_boxed_str())
    }

    /// The real value, for the few places that need it (signing, auth headers, storage).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s.into_boxed_str())
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(s.expose(), "hunter2");
    }
}
