//! Per-cluster failover webhooks: where they go and the secret that signs them.

use secrecy::{ExposeSecret, SecretString};

/// Purpose of the per-cluster token a cluster's nodes present when they report a role
/// change (`MasterKey::derive_token(CALLBACK_PURPOSE, cluster id)`).
pub const CALLBACK_PURPOSE: &str = "patroni-callback";

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
