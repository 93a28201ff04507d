//! Signature header parsing: any header bytes against any body must give a verdict,
//! never a panic, and only the correctly signed pair may verify.

#![no_main]

use deploy_tracker::webhooks::signature::{
    Secrets, SignatureError, sign_github, sign_vercel, verify_github, verify_vercel,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into a header and a body.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let (header, body) = rest.split_at(at);
    let secrets = Secrets::parse("fuzz-secret,rotated").unwrap();

    let github = verify_github(&secrets, Some(header), body);
    let vercel = verify_vercel(&secrets, Some(header), body);
    if github.is_ok() {
        assert_eq!(
            header,
            sign_github(b"fuzz-secret", body)
                .as_bytes()
                .to_ascii_lowercase()
        );
    }
    if vercel.is_ok() {
        let expected = sign_vercel(b"fuzz-secret", body);
        let alternate = sign_vercel(b"rotated", body);
        let header = header.to_ascii_lowercase();
        assert!(header == expected.as_bytes() || header == alternate.as_bytes());
    }
    assert_eq!(
        verify_github(&secrets, None, body),
        Err(SignatureError::Missing)
    );

    // A real signature always verifies, whatever the body.
    let signed = sign_github(b"rotated", body);
    assert_eq!(
        verify_github(&secrets, Some(signed.as_bytes()), body),
        Ok(())
    );
    let signed = sign_vercel(b"fuzz-secret", body);
    assert_eq!(
        verify_vercel(&secrets, Some(signed.as_bytes()), body),
        Ok(())
    );
});
