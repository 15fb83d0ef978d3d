//! Domain values parsed once, at the edge. A value of one of these types has passed its
//! rule, so the code behind the API neither checks it again nor unwraps an `Option`
//! that validation "must have" filled.

use secrecy::{ExposeSecret, SecretString};

/// A node's failover priority as Patroni reads it (`failover_priority`): among
/// eligible replicas the highest wins; 0 is picked only when nothing else qualifies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority(u8);

impl Priority {
    pub const MAX: u8 = 100;

    pub fn parse(v: i64) -> Result<Self, String> {
        u8::try_from(v)
            .ok()
            .filter(|v| *v <= Self::MAX)
            .map(Self)
            .ok_or_else(|| format!("must be from 0 to {}", Self::MAX))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// What an operator asked of one node at creation (or later through PATCH).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodePreference {
    /// Never promote this node (Patroni's `nofailover`).
    pub no_failover: bool,
    pub priority: Priority,
}

/// The password of a cluster's admin role, chosen by the user or generated.
pub struct AdminPassword(SecretString);

impl AdminPassword {
    pub const MIN_CHARS: usize = 12;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: SecretString) -> Result<Self, String> {
        let p = s.expose_secret();
        let n = p.chars().count();
        if !(Self::MIN_CHARS..=Self::MAX_CHARS).contains(&n) {
            return Err(format!("must be {} to {} characters", Self::MIN_CHARS, Self::MAX_CHARS));
        }
        // It travels through SQL and YAML; a control character would only ever be a mistake.
        if p.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Ok(Self(s))
    }

    pub fn generate() -> Self {
        Self(crate::crypto::generate_password())
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }

    pub fn into_secret(self) -> SecretString {
        self.0
    }
}

/// Where a webhook is delivered: an http(s) URL with nothing a header or a log line
/// could be split on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookUrl(String);

impl HookUrl {
    pub const MAX_LEN: usize = 2048;

    /// Surrounding whitespace is dropped; anything else out of rule is refused.
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = s.trim();
        let scheme = url.starts_with("http://") || url.starts_with("https://");
        if !scheme || url.len() > Self::MAX_LEN || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!("must be an http:// or https:// URL of at most {} characters", Self::MAX_LEN));
        }
        Ok(Self(url.to_owned()))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(Priority::parse(0).unwrap().get(), 0);
        assert_eq!(Priority::parse(100).unwrap().get(), 100);
        for bad in [-1, 101, 256, i64::MAX, i64::MIN] {
            assert!(Priority::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn admin_passwords() {
        let ok = |s: &str| AdminPassword::parse(SecretString::from(s)).is_ok();
        assert!(ok("twelve-chars"));
        assert!(ok(&"é".repeat(128)), "counted in characters, not bytes");
        assert!(!ok("eleven-char"));
        assert!(!ok(&"x".repeat(129)));
        assert!(!ok("twelve-chars\n"));
        let g = AdminPassword::generate().into_secret();
        assert!(AdminPassword::parse(g).is_ok(), "a generated password passes the rule");
    }

    #[test]
    fn hook_urls() {
        assert_eq!(HookUrl::parse("  https://h.example/x  ").unwrap().into_string(), "https://h.example/x");
        assert!(HookUrl::parse("http://127.0.0.1:9/hook").is_ok());
        for bad in ["ftp://x", "https://a b", "https://a\r\nX-Evil: 1", "", &format!("https://{}", "a".repeat(2048))] {
            assert!(HookUrl::parse(bad).is_err(), "{bad:?}");
        }
    }
}
