//! Signature verification over raw request bytes, and the signing twins used by
//! tests and `replay`. Pure: no I/O, no parsing of the body.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::Sha256;

/// One provider's accepted secrets. Several may be configured at once so a secret
/// can be rotated without dropping deliveries; any one of them verifies.
#[derive(Clone, Default)]
pub struct Secrets(Vec<Vec<u8>>);

impl Secrets {
    /// Parses a comma-separated list. Surrounding white space is trimmed; an empty
    /// entry is an error so that `a,,b` or a trailing comma cannot sneak in a blank key.
    pub fn parse(list: &str) -> Result<Self, EmptySecret> {
        let secrets = list
            .split(',')
            .map(str::trim)
            .map(|s| {
                if s.is_empty() {
                    Err(EmptySecret)
                } else {
                    Ok(s.as_bytes().to_vec())
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self(secrets))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first secret, which `replay` signs with.
    pub fn primary(&self) -> Option<&[u8]> {
        self.0.first().map(Vec::as_slice)
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets([{} redacted])", self.0.len())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret list has an empty entry")]
pub struct EmptySecret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no secret is configured for this provider")]
    NotConfigured,
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is not of the form the provider sends")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
}

const GITHUB_PREFIX: &str = "sha256=";

/// Verifies GitHub's `X-Hub-Signature-256: sha256=<hex>` over the raw body.
pub fn verify_github(
    secrets: &Secrets,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify::<Hmac<Sha256>>(secrets, header, body, GITHUB_PREFIX, 32)
}

/// Verifies Vercel's `x-vercel-signature: <hex>` (HMAC-SHA1, no prefix).
pub fn verify_vercel(
    secrets: &Secrets,
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    verify::<Hmac<Sha1>>(secrets, header, body, "", 20)
}

pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    format!("{GITHUB_PREFIX}{}", sign::<Hmac<Sha256>>(secret, body))
}

pub fn sign_vercel(secret: &[u8], body: &[u8]) -> String {
    sign::<Hmac<Sha1>>(secret, body)
}

fn sign<M: Mac + KeyInit>(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <M as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

fn verify<M: Mac + KeyInit>(
    secrets: &Secrets,
    header: Option<&[u8]>,
    body: &[u8],
    prefix: &str,
    digest_len: usize,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NotConfigured);
    }
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(prefix.as_bytes())
        .ok_or(SignatureError::Malformed)?;
    // Lower or upper case hex both decode; anything else, or the wrong length, is malformed.
    if hex_digest.len() != digest_len * 2 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let matches = secrets.0.iter().any(|secret| {
        let mut mac =
            <M as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &str) -> Secrets {
        Secrets::parse(list).unwrap()
    }

    #[test]
    fn github_signature_matches_the_documented_example() {
        // The example in GitHub's "Validating webhook deliveries" documentation.
        let signed = sign_github(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            signed,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn vercel_signature_is_bare_hex_hmac_sha1() {
        let signed = sign_vercel(b"key", b"The quick brown fox jumps over the lazy dog");
        assert_eq!(signed, "de7c9b85b8b78aa6bc8a7a36f70a90701c9db4d9");
    }

    #[test]
    fn a_signed_body_verifies_for_each_provider() {
        let s = secrets("topsecret");
        let body = br#"{"ok":true}"#;
        let gh = sign_github(b"topsecret", body);
        let vc = sign_vercel(b"topsecret", body);
        assert_eq!(verify_github(&s, Some(gh.as_bytes()), body), Ok(()));
        assert_eq!(verify_vercel(&s, Some(vc.as_bytes()), body), Ok(()));
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let s = secrets("k");
        let sig = sign_vercel(b"k", b"body").to_uppercase();
        assert_eq!(verify_vercel(&s, Some(sig.as_bytes()), b"body"), Ok(()));
    }

    #[test]
    fn any_rotation_secret_verifies() {
        let s = secrets("new-secret, old-secret");
        let sig = sign_github(b"old-secret", b"x");
        assert_eq!(verify_github(&s, Some(sig.as_bytes()), b"x"), Ok(()));
    }

    #[test]
    fn no_configured_secret_fails_closed_even_without_a_header() {
        assert_eq!(
            verify_github(&Secrets::default(), None, b"x"),
            Err(SignatureError::NotConfigured)
        );
        assert_eq!(
            verify_vercel(&Secrets::default(), Some(b"00"), b"x"),
            Err(SignatureError::NotConfigured)
        );
    }

    #[test]
    fn empty_entries_in_a_secret_list_are_rejected() {
        for list in ["", ",", "a,,b", "a,", " , a"] {
            assert_eq!(Secrets::parse(list).err(), Some(EmptySecret), "{list:?}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_secret() {
        let shown = format!("{:?}", secrets("hunter2,swordfish"));
        assert!(!shown.contains("hunter2") && !shown.contains("swordfish"));
    }

    #[test]
    fn bad_github_headers_are_classified() {
        let s = secrets("k");
        let body = b"payload";
        let good = sign_github(b"k", body);
        let sha1_style = format!("sha1={}", sign_vercel(b"k", body));
        let wrong_key = sign_github(b"other", body);
        let cases: Vec<(Option<&[u8]>, SignatureError)> = vec![
            (None, SignatureError::Missing),
            (Some(b""), SignatureError::Malformed),
            (Some(b"sha256="), SignatureError::Malformed),
            (Some(&good.as_bytes()[7..]), SignatureError::Malformed),
            (Some(sha1_style.as_bytes()), SignatureError::Malformed),
            (Some(b"sha256=zz"), SignatureError::Malformed),
            (
                Some(&good.as_bytes()[..good.len() - 2]),
                SignatureError::Malformed,
            ),
            (Some(wrong_key.as_bytes()), SignatureError::Mismatch),
        ];
        for (header, expected) in cases {
            assert_eq!(
                verify_github(&s, header, body),
                Err(expected),
                "{:?}",
                header.map(String::from_utf8_lossy)
            );
        }
        assert_eq!(
            verify_github(&s, Some(good.as_bytes()), b"payload "),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_github_signature_does_not_verify_as_vercel() {
        let s = secrets("k");
        let gh = sign_github(b"k", b"b");
        assert_eq!(
            verify_vercel(&s, Some(gh.as_bytes()), b"b"),
            Err(SignatureError::Malformed)
        );
        let prefixed = format!("sha1={}", sign_vercel(b"k", b"b"));
        assert_eq!(
            verify_vercel(&s, Some(prefixed.as_bytes()), b"b"),
            Err(SignatureError::Malformed)
        );
    }
}
