//! Encryption at rest and API token handling.
//!
//! Ciphertexts are `v2:` + base64(nonce ‖ AES-256-GCM(ciphertext+tag)). The caller passes
//! associated data naming the row and column, so a ciphertext copied to another row or
//! column fails to decrypt instead of silently yielding someone else's secret.
//!
//! The master key is never used directly: HKDF-SHA256 derives one key per purpose
//! (encryption at rest, derived tokens, backup passphrases), so no two algorithms ever
//! share a key. `v1:` ciphertexts (AES-GCM under the master key itself, written before)
//! still decrypt, and the store rewrites them as `v2:` at start-up.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

const PREFIX: &str = "v2:";
const LEGACY_PREFIX: &str = "v1:";
/// HKDF `info` of each derived key; changing one changes every value under it.
const INFO_AT_REST: &[u8] = b"herd v2 aes-256-gcm at rest";
const INFO_TOKENS: &[u8] = b"herd v2 hmac-sha256 derived tokens";
const INFO_SEEDS: &[u8] = b"herd v2 hmac-sha256 private key seeds";

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("master key must be base64 of exactly 32 bytes")]
    BadMasterKey,
    #[error("ciphertext is malformed or was encrypted under another key")]
    Decrypt,
    #[error("master key file {path}: {source}")]
    KeyFile { path: String, source: std::io::Error },
}

pub struct MasterKey {
    /// Kept only for `v1:` ciphertexts written before the keys were separated.
    legacy: SecretBox<[u8; 32]>,
    at_rest: SecretBox<[u8; 32]>,
    tokens: SecretBox<[u8; 32]>,
    /// Seeds of private keys Herd derives instead of storing (cluster CAs, nodes).
    seeds: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    pub fn from_base64(s: &SecretString) -> Result<Self, CryptoError> {
        let bytes = STANDARD.decode(s.expose_secret().trim()).map_err(|_| CryptoError::BadMasterKey)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(Self::from_bytes(arr))
    }

    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self::from_bytes(k)
    }

    fn from_bytes(master: [u8; 32]) -> Self {
        let hk = hkdf::Hkdf::<Sha256>::new(None, &master);
        let derive = |info: &[u8]| {
            let mut k = [0u8; 32];
            hk.expand(info, &mut k).expect("32 bytes is a valid HKDF-SHA256 output length");
            SecretBox::new(Box::new(k))
        };
        Self {
            at_rest: derive(INFO_AT_REST),
            tokens: derive(INFO_TOKENS),
            seeds: derive(INFO_SEEDS),
            legacy: SecretBox::new(Box::new(master)),
        }
    }

    /// A secret derived from the master key for `purpose` and `id` (hex of
    /// HMAC-SHA256): nothing to store, and it changes with the master key.
    pub fn derive_token(&self, purpose: &str, id: &str) -> SecretString {
        SecretString::from(hex::encode(self.derive(purpose, id)))
    }

    /// Whether `presented` is [`MasterKey::derive_token`] for `purpose` and `id`
    /// (constant time).
    pub fn verify_token(&self, purpose: &str, id: &str, presented: &str) -> bool {
        let Ok(bytes) = hex::decode(presented) else { return false };
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.tokens.expose_secret()).expect("any key length");
        mac.update(format!("{purpose}:{id}").as_bytes());
        mac.verify_slice(&bytes).is_ok()
    }

    /// 32 secret bytes for `purpose` and `id`, the seed of a private key that is
    /// derived again whenever it is needed instead of being stored.
    pub fn derive_seed(&self, purpose: &str, id: &str) -> SecretBox<[u8; 32]> {
        SecretBox::new(Box::new(hmac_sha256(self.seeds.expose_secret(), format!("{purpose}:{id}").as_bytes())))
    }

    fn derive(&self, purpose: &str, id: &str) -> [u8; 32] {
        hmac_sha256(self.tokens.expose_secret(), format!("{purpose}:{id}").as_bytes())
    }

    fn to_base64(&self) -> String {
        STANDARD.encode(self.legacy.expose_secret())
    }

    /// Reads `path`, or creates it (mode 0600) with a fresh key. Dev mode only:
    /// production passes `HERD_MASTER_KEY`.
    pub fn load_or_create(path: &Path) -> Result<Self, CryptoError> {
        let err = |source| CryptoError::KeyFile { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(s) => Self::from_base64(&SecretString::from(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                write_private_file(path, key.to_base64().as_bytes()).map_err(err)?;
                Ok(key)
            }
            Err(e) => Err(err(e)),
        }
    }

    pub fn encrypt(&self, plaintext: &[u8], aad: &str) -> String {
        let cipher = Aes256Gcm::new(self.at_rest.expose_secret().into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
            .expect("AES-GCM encryption cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", STANDARD.encode(out))
    }

    /// Whether `stored` was written under the master key itself (before HKDF).
    pub fn is_legacy(stored: &str) -> bool {
        stored.starts_with(LEGACY_PREFIX)
    }

    pub fn decrypt(&self, stored: &str, aad: &str) -> Result<SecretBox<Vec<u8>>, CryptoError> {
        let (key, body) = match stored.strip_prefix(PREFIX) {
            Some(b) => (&self.at_rest, b),
            None => (&self.legacy, stored.strip_prefix(LEGACY_PREFIX).ok_or(CryptoError::Decrypt)?),
        };
        let raw = STANDARD.decode(body).ok().filter(|r| r.len() > NONCE_LEN).ok_or(CryptoError::Decrypt)?;
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let cipher = Aes256Gcm::new(key.expose_secret().into());
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: aad.as_bytes() })
            .map(|p| SecretBox::new(Box::new(p)))
            .map_err(|_| CryptoError::Decrypt)
    }

    pub fn encrypt_str(&self, s: &SecretString, aad: &str) -> String {
        self.encrypt(s.expose_secret().as_bytes(), aad)
    }

    pub fn decrypt_str(&self, stored: &str, aad: &str) -> Result<SecretString, CryptoError> {
        let b = self.decrypt(stored, aad)?;
        let s = String::from_utf8(b.expose_secret().clone()).map_err(|_| CryptoError::Decrypt)?;
        Ok(SecretString::from(s))
    }
}

/// Writes a file only its owner can read; the mode is set at creation, so there is
/// no window where the secret is world-readable.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// API tokens: `herd_` + 32 random bytes (base64url). Stored only as SHA-256: the
/// token has full entropy, so a slow password hash would add latency and no safety.
pub fn generate_token() -> SecretString {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    SecretString::from(format!("herd_{}", URL_SAFE_NO_PAD.encode(b)))
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A password for generated admin credentials: 24 url-safe characters (~143 bits).
pub fn generate_password() -> SecretString {
    let mut b = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut b);
    SecretString::from(URL_SAFE_NO_PAD.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_binding_to_associated_data() {
        let k = MasterKey::generate();
        let ct = k.encrypt(b"hunter2-hunter2", "clusters.admin_password:1");
        assert!(!ct.contains("hunter2"));
        let pt = k.decrypt(&ct, "clusters.admin_password:1").unwrap();
        assert_eq!(pt.expose_secret().as_slice(), b"hunter2-hunter2");
        assert!(k.decrypt(&ct, "clusters.admin_password:2").is_err());
        assert!(MasterKey::generate().decrypt(&ct, "clusters.admin_password:1").is_err());
        assert!(k.decrypt("v1:AAAA", "x").is_err());
    }

    /// What a `v1:` ciphertext was: AES-GCM under the master key itself.
    fn legacy_encrypt(k: &MasterKey, plaintext: &[u8], aad: &str) -> String {
        let cipher = Aes256Gcm::new(k.legacy.expose_secret().into());
        let nonce = [7u8; NONCE_LEN];
        let ct = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() }).unwrap();
        format!("{LEGACY_PREFIX}{}", STANDARD.encode([nonce.as_slice(), &ct].concat()))
    }

    #[test]
    fn each_purpose_has_its_own_key_and_old_ciphertexts_still_open() {
        let k = MasterKey::generate();
        let (m, r, t) = (k.legacy.expose_secret(), k.at_rest.expose_secret(), k.tokens.expose_secret());
        assert!(m != r && m != t && r != t);
        let ct = k.encrypt(b"secret", "a");
        assert!(ct.starts_with("v2:") && !MasterKey::is_legacy(&ct));
        // Not decryptable with the master key itself: the derived key encrypted it.
        let raw = STANDARD.decode(&ct[3..]).unwrap();
        let master = Aes256Gcm::new(m.into());
        let (nonce, body) = raw.split_at(NONCE_LEN);
        assert!(master.decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: b"a" }).is_err());
        let old = legacy_encrypt(&k, b"older secret", "a");
        assert!(MasterKey::is_legacy(&old));
        assert_eq!(k.decrypt(&old, "a").unwrap().expose_secret().as_slice(), b"older secret");
        assert!(k.decrypt(&old, "b").is_err());
        // The derivation is fixed: the same master key derives the same keys.
        let again = MasterKey::from_bytes(*m);
        assert_eq!(again.decrypt(&ct, "a").unwrap().expose_secret().as_slice(), b"secret");
        assert_eq!(again.derive_token("p", "1").expose_secret(), k.derive_token("p", "1").expose_secret());
        // A token is not the HMAC under the master key.
        assert_ne!(k.derive_token("p", "1").expose_secret(), &hex::encode(hmac_sha256(m, b"p:1")));
    }

    #[test]
    fn derived_tokens_are_bound_to_purpose_id_and_key() {
        let k = MasterKey::generate();
        let t = k.derive_token("patroni-callback", "c1");
        assert_eq!(t.expose_secret().len(), 64);
        assert!(k.verify_token("patroni-callback", "c1", t.expose_secret()));
        assert!(!k.verify_token("patroni-callback", "c2", t.expose_secret()));
        assert!(!k.verify_token("other", "c1", t.expose_secret()));
        assert!(!MasterKey::generate().verify_token("patroni-callback", "c1", t.expose_secret()));
        assert!(!k.verify_token("patroni-callback", "c1", "not hex"));
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn master_key_validation() {
        assert!(MasterKey::from_base64(&SecretString::from("c2hvcnQ=")).is_err());
        let good = STANDARD.encode([7u8; 32]);
        assert!(MasterKey::from_base64(&SecretString::from(good)).is_ok());
    }

    #[test]
    fn key_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("herd-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("master.key");
        let a = MasterKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = MasterKey::load_or_create(&path).unwrap();
        let ct = a.encrypt(b"x", "y");
        assert!(b.decrypt(&ct, "y").is_ok());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn tokens_are_unique_and_hash_stably() {
        let (a, b) = (generate_token(), generate_token());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert!(a.expose_secret().starts_with("herd_"));
        assert_eq!(hash_token("abc"), hash_token("abc"));
        assert_ne!(hash_token("abc"), hash_token("abd"));
    }
}
