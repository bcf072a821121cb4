//! Request signatures of the chat platforms.
//!
//! Slack signs `v0:{X-Slack-Request-Timestamp}:{raw body}` with the app's signing secret
//! (HMAC-SHA256, hex, prefixed `v0=`, in `X-Slack-Signature`); a timestamp more than five
//! minutes from now is refused, which bounds replays. Teams outgoing webhooks send
//! `Authorization: HMAC {base64(HMAC-SHA256(base64-decoded secret, raw body))}` and no
//! timestamp. Every comparison is constant-time.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// How far a Slack request's timestamp may be from now, either way.
pub const SLACK_MAX_SKEW_SECS: i64 = 5 * 60;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is malformed")]
    Malformed(&'static str),
    #[error("the request timestamp is {0} seconds away from now (more than 5 minutes): refused as a possible replay")]
    Stale(i64),
    #[error("the signature does not match the body")]
    Mismatch,
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Slack's `X-Slack-Signature` for `body` sent at `timestamp`.
pub fn slack_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret, &[b"v0:", timestamp.as_bytes(), b":", body]);
    format!("v0={}", hex::encode(tag))
}

/// Checks a Slack request: its timestamp within five minutes of `now` (Unix seconds), and
/// its signature over the raw body.
pub fn verify_slack(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    const TS: &str = "X-Slack-Request-Timestamp";
    const SIG: &str = "X-Slack-Signature";
    let timestamp = timestamp.ok_or(SignatureError::Missing(TS))?;
    let signature = signature.ok_or(SignatureError::Missing(SIG))?;
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed(TS))?;
    let skew = now.saturating_sub(at);
    if skew.unsigned_abs() > SLACK_MAX_SKEW_SECS.unsigned_abs() {
        return Err(SignatureError::Stale(skew));
    }
    let given = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .filter(|b| b.len() == 32)
        .ok_or(SignatureError::Malformed(SIG))?;
    let expected = mac(secret, &[b"v0:", timestamp.as_bytes(), b":", body]);
    if bool::from(expected.ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Decodes a Teams outgoing webhook's security token (base64, as Teams shows it).
pub fn teams_key(secret_base64: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(secret_base64.trim())
        .ok()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            "expected the base64 security token Teams shows when the outgoing webhook is created"
                .into()
        })
}

/// The `Authorization` value Teams sends with `body`.
pub fn teams_authorization(key: &[u8], body: &[u8]) -> String {
    let tag = mac(key, &[body]);
    format!(
        "HMAC {}",
        base64::engine::general_purpose::STANDARD.encode(tag)
    )
}

/// Checks a Teams outgoing webhook's `Authorization: HMAC <base64>` over the raw body.
pub fn verify_teams(
    key: &[u8],
    authorization: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    const AUTH: &str = "Authorization";
    let authorization = authorization.ok_or(SignatureError::Missing(AUTH))?;
    let (scheme, value) = authorization
        .trim()
        .split_once(' ')
        .ok_or(SignatureError::Malformed(AUTH))?;
    if !scheme.eq_ignore_ascii_case("HMAC") {
        return Err(SignatureError::Malformed(AUTH));
    }
    let given = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or(SignatureError::Malformed(AUTH))?;
    let expected = mac(key, &[body]);
    if bool::from(expected.ct_eq(given.as_slice())) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked example of Slack's "Verifying requests from Slack" guide.
    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: &str = "1531420618";
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    #[test]
    fn slacks_own_example_verifies() {
        assert_eq!(
            slack_signature(SLACK_SECRET.as_bytes(), SLACK_TS, SLACK_BODY.as_bytes()),
            SLACK_SIG
        );
        let now: i64 = SLACK_TS.parse().unwrap();
        assert_eq!(
            verify_slack(
                SLACK_SECRET.as_bytes(),
                Some(SLACK_TS),
                Some(SLACK_SIG),
                SLACK_BODY.as_bytes(),
                now + 10
            ),
            Ok(())
        );
    }

    #[test]
    fn slack_refuses_tampering_staleness_and_garbage() {
        let now: i64 = SLACK_TS.parse().unwrap();
        let secret = SLACK_SECRET.as_bytes();
        let body = SLACK_BODY.as_bytes();
        let check = |ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| {
            verify_slack(secret, ts, sig, body, now)
        };
        assert_eq!(
            check(Some(SLACK_TS), Some(SLACK_SIG), b"token=other", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack(
                b"another secret",
                Some(SLACK_TS),
                Some(SLACK_SIG),
                body,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(Some(SLACK_TS), Some(SLACK_SIG), body, now + 301),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            check(Some(SLACK_TS), Some(SLACK_SIG), body, now - 301),
            Err(SignatureError::Stale(-301))
        );
        assert!(check(Some(SLACK_TS), Some(SLACK_SIG), body, now + 300).is_ok());
        // The timestamp is signed: moving it forward to look fresh breaks the signature.
        let later = (now + 1000).to_string();
        assert_eq!(
            check(Some(&later), Some(SLACK_SIG), body, now + 1000),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            check(None, Some(SLACK_SIG), body, now),
            Err(SignatureError::Missing(_))
        ));
        assert!(matches!(
            check(Some(SLACK_TS), None, body, now),
            Err(SignatureError::Missing(_))
        ));
        for bad in [
            "a2114d57",
            "v1=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
            "v0=zz",
            "v0=a2114d",
        ] {
            assert!(
                matches!(
                    check(Some(SLACK_TS), Some(bad), body, now),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            check(Some("yesterday"), Some(SLACK_SIG), body, now),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn teams_hmac_round_trips_and_refuses_others() {
        let key = teams_key("c2VjcmV0LWtleS1mb3ItdGVhbXM=").unwrap();
        assert_eq!(key, b"secret-key-for-teams");
        let body = br#"{"type":"message","text":"jit status"}"#;
        let auth = teams_authorization(&key, body);
        assert!(auth.starts_with("HMAC "));
        assert_eq!(verify_teams(&key, Some(&auth), body), Ok(()));
        assert_eq!(
            verify_teams(&key, Some(&auth.replace("HMAC", "hmac")), body),
            Ok(())
        );
        assert_eq!(
            verify_teams(&key, Some(&auth), b"{}"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_teams(b"other", Some(&auth), body),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_teams(&key, None, body),
            Err(SignatureError::Missing(_))
        ));
        for bad in ["Bearer abc", "HMAC", "HMAC not-base64!", "HMAC c2hvcnQ="] {
            assert!(
                matches!(
                    verify_teams(&key, Some(bad), body),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
        assert!(teams_key("not base64!").is_err());
        assert!(teams_key("").is_err());
    }
}
