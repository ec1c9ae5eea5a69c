//! Standard Webhooks signing: the `whsec_` secret → an HMAC-SHA256 key (once, at compile), and
//! per attempt `v1,<base64 HMAC(key, "{webhook-id}.{webhook-timestamp}.{body}")>`.
//!
//! The key is decoded and handed to `ring` once when the subscription is compiled, so a delivery
//! pays for the MAC only. The three parts are fed to the MAC one after another rather than joined
//! into a temporary buffer. Receivers verify with any Standard Webhooks library (svix's among them).

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};
use ring::hmac;

/// The prefix Standard Webhooks (and svix) put in front of the base64 key.
pub const SECRET_PREFIX: &str = "whsec_";

/// Decoded key sizes svix accepts for endpoint secrets; Standard Webhooks requires at least 24.
pub const KEY_LEN: std::ops::RangeInclusive<usize> = 24..=64;

/// Standard base64; padding may be left off (people trim `=` when they copy secrets around).
const SECRET_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `v1,` plus 44 base64 characters of a 32-byte HMAC-SHA256 tag.
pub const SIGNATURE_LEN: usize = 3 + 44;

/// Why a signing secret was refused. Never carries the secret itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretProblem {
    #[error("must start with `whsec_` followed by the base64 key (Standard Webhooks)")]
    MissingPrefix,
    #[error("the part after `whsec_` is not valid base64")]
    NotBase64,
    #[error("the key decodes to {0} bytes; it must be 24 to 64 bytes")]
    KeyLength(usize),
}

/// A compiled signing key.
pub(crate) struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(HMAC-SHA256, ***)")
    }
}

impl Signer {
    /// Parses a `whsec_<base64>` secret.
    pub(crate) fn from_secret(secret: &str) -> Result<Signer, SecretProblem> {
        let b64 = secret
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretProblem::MissingPrefix)?;
        // Bound the work before decoding: 64 bytes are 88 base64 characters.
        if b64.len() > 88 {
            return Err(SecretProblem::KeyLength(
                b64.trim_end_matches('=').len() * 3 / 4,
            ));
        }
        let mut buf = [0u8; 66];
        let n = SECRET_B64
            .decode_slice(b64, &mut buf)
            .map_err(|_| SecretProblem::NotBase64)?;
        let result = if KEY_LEN.contains(&n) {
            Ok(Signer {
                key: hmac::Key::new(hmac::HMAC_SHA256, &buf[..n]),
            })
        } else {
            Err(SecretProblem::KeyLength(n))
        };
        // Leave no copy of the key on the stack beyond what `ring` keeps.
        buf.fill(0);
        result
    }

    /// The `webhook-signature` value for one attempt.
    pub(crate) fn sign(&self, id: &[u8], timestamp: &[u8], body: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(id);
        ctx.update(b".");
        ctx.update(timestamp);
        ctx.update(b".");
        ctx.update(body);
        let tag = ctx.sign();
        let mut out = [0u8; SIGNATURE_LEN];
        out[..3].copy_from_slice(b"v1,");
        // A 32-byte tag always encodes to exactly 44 characters, so this cannot fail.
        let written = STANDARD
            .encode_slice(tag.as_ref(), &mut out[3..])
            .unwrap_or(0);
        debug_assert_eq!(written, 44);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector of the Standard Webhooks libraries ("sign function works").
    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let signer = Signer::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let sig = signer.sign(
            b"msg_p5jXN8AQM9LWM0D4loKWxJek",
            b"1614265330",
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(
            std::str::from_utf8(&sig).expect("ascii"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secret_forms() {
        let key = |n: usize| format!("whsec_{}", STANDARD.encode(vec![7u8; n]));
        let unpadded = key(32).trim_end_matches('=').to_string();
        let cases: Vec<(String, Result<(), SecretProblem>)> = vec![
            (key(24), Ok(())),
            (key(32), Ok(())),
            (unpadded, Ok(())),
            (key(64), Ok(())),
            (key(23), Err(SecretProblem::KeyLength(23))),
            (key(65), Err(SecretProblem::KeyLength(65))),
            (key(200), Err(SecretProblem::KeyLength(200))),
            ("whsec_".into(), Err(SecretProblem::KeyLength(0))),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                Err(SecretProblem::MissingPrefix),
            ),
            (
                "WHSEC_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
                Err(SecretProblem::MissingPrefix),
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8I LPZIo2LaLaSw".into(),
                Err(SecretProblem::NotBase64),
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8I-PZIo2LaLaSw".into(),
                Err(SecretProblem::NotBase64),
            ),
            ("hunter2".into(), Err(SecretProblem::MissingPrefix)),
        ];
        for (secret, want) in cases {
            let got = Signer::from_secret(&secret).map(|_| ());
            assert_eq!(got, want, "{secret}");
        }
    }

    #[test]
    fn debug_hides_the_key() {
        let s = Signer::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid");
        let d = format!("{s:?}");
        assert!(!d.contains("MfKQ"), "{d}");
    }
}
