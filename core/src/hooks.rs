//! Per-cluster failover webhooks: where they go and the secret that signs them.

use secrecy::{ExposeSecret, SecretString};

/// Purpose of the per-member credential a cluster's nodes sign their role-change
/// reports with (`MasterKey::derive_token(CALLBACK_PURPOSE, callback_credential_id(..))`).
pub const CALLBACK_PURPOSE: &str = "patroni-callback";

/// A signed callback is accepted this long either side of its timestamp: a captured
/// report cannot be replayed later, and the nodes' clocks (NTP) are well within it.
pub const CALLBACK_WINDOW_SECS: i64 = 60;

/// Whose credential: one per member, so a node can only ever speak for itself.
pub fn callback_credential_id(cluster_id: &str, member: &str) -> String {
    format!("{cluster_id}/{member}")
}

/// `X-Herd-Signature` of a role-change report: `sha256=<hex HMAC-SHA256(credential,
/// "<unix seconds>.<body>")>`. The credential itself never travels.
pub fn callback_signature(credential: &str, timestamp: i64, body: &[u8]) -> String {
    let msg = [format!("{timestamp}.").as_bytes(), body].concat();
    format!("sha256={}", hex::encode(crate::crypto::hmac_sha256(credential.as_bytes(), &msg)))
}

/// Whether `presented` is [`callback_signature`] of `timestamp` and `body` (constant time).
pub fn verify_callback_signature(credential: &str, timestamp: i64, body: &[u8], presented: &str) -> bool {
    use hmac::Mac;
    let Some(bytes) = presented.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok()) else { return false };
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(credential.as_bytes()).expect("any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

/// One webhook. The body of each call is signed: `X-Herd-Signature: sha256=<hex
/// HMAC-SHA256(secret, body)>`, so the receiver can tell Herd from anyone else.
#[derive(Clone)]
pub struct Hook {
    pub url: String,
    pub secret: SecretString,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("url", &self.url).finish_non_exhaustive()
    }
}

/// Called before Herd changes the primary (switchover, failover action) and after
/// any change of primary, Herd's or Patroni's own.
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub pre_failover: Option<Hook>,
    pub post_failover: Option<Hook>,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.pre_failover.is_none() && self.post_failover.is_none()
    }

    /// The plaintext stored (encrypted) in `clusters.hooks_enc`.
    pub fn to_plaintext(&self) -> SecretString {
        let one = |h: &Option<Hook>| {
            h.as_ref().map(|h| serde_json::json!({"url": h.url, "secret": h.secret.expose_secret()}))
        };
        SecretString::from(
            serde_json::json!({"pre_failover": one(&self.pre_failover), "post_failover": one(&self.post_failover)})
                .to_string(),
        )
    }

    pub fn from_plaintext(s: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        let one = |k: &str| -> Option<Hook> {
            let h = v.get(k)?;
            Some(Hook {
                url: h.get("url")?.as_str()?.to_owned(),
                secret: SecretString::from(h.get("secret")?.as_str()?.to_owned()),
            })
        };
        Some(Self { pre_failover: one("pre_failover"), post_failover: one("post_failover") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_signatures_bind_credential_time_and_body() {
        let sig = callback_signature("cred", 1_800_000_000, b"{\"a\":1}");
        assert!(verify_callback_signature("cred", 1_800_000_000, b"{\"a\":1}", &sig));
        assert!(!verify_callback_signature("other", 1_800_000_000, b"{\"a\":1}", &sig));
        assert!(!verify_callback_signature("cred", 1_800_000_001, b"{\"a\":1}", &sig));
        assert!(!verify_callback_signature("cred", 1_800_000_000, b"{\"a\":2}", &sig));
        assert!(!verify_callback_signature("cred", 1_800_000_000, b"{\"a\":1}", "sha256=zz"));
        assert!(!verify_callback_signature("cred", 1_800_000_000, b"{\"a\":1}", &sig[7..]));
        // What the nodes' Python computes: HMAC-SHA256 over "<ts>." + body.
        let py = std::process::Command::new("python3")
            .args([
                "-I",
                "-c",
                "import hashlib,hmac;print('sha256='+hmac.new(b'cred',b'1800000000.'+b'{\"a\":1}',hashlib.sha256).hexdigest())",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), sig);
        assert_ne!(callback_credential_id("c", "n1"), callback_credential_id("c", "n2"));
    }

    #[test]
    fn plaintext_roundtrip_and_debug_hides_secret() {
        let h = Hooks {
            pre_failover: Some(Hook { url: "http://127.0.0.1:9/pre".into(), secret: "s3cr3t-value".to_owned().into() }),
            post_failover: None,
        };
        let back = Hooks::from_plaintext(h.to_plaintext().expose_secret()).unwrap();
        let pre = back.pre_failover.unwrap();
        assert_eq!(pre.url, "http://127.0.0.1:9/pre");
        assert_eq!(pre.secret.expose_secret(), "s3cr3t-value");
        assert!(back.post_failover.is_none());
        assert!(!format!("{h:?}").contains("s3cr3t"));
    }
}
