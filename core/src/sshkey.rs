//! SSH key pairs for clusters: generated ed25519 or imported (OpenSSH, possibly
//! passphrase-protected, or PEM PKCS#1/PKCS#8). Whatever comes in is normalised to an
//! unencrypted OpenSSH private key, which the caller encrypts at rest.

use secrecy::{ExposeSecret, SecretString};
use ssh_key::private::{Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::{HashAlg, LineEnding, PrivateKey};

const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("is not an OpenSSH or PEM private key")]
    Unparsable,
    #[error("is encrypted: a passphrase is required")]
    PassphraseRequired,
    #[error("could not be decrypted with the given passphrase")]
    WrongPassphrase,
    #[error("uses an unsupported algorithm ({0}); use ed25519, RSA (2048+ bits) or ECDSA")]
    Unsupported(String),
    #[error("RSA keys must have at least {MIN_RSA_BITS} bits")]
    RsaTooSmall,
}

/// A validated key pair. The private half stays secret until it is encrypted.
pub struct KeyMaterial {
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
    pub private_openssh: SecretString,
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("algorithm", &self.algorithm)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

pub fn generate_ed25519() -> KeyMaterial {
    let kp = Ed25519Keypair::random(&mut rand::rngs::OsRng);
    let key = PrivateKey::new(KeypairData::Ed25519(kp), "").expect("ed25519 key");
    material(key).expect("fresh ed25519 key is supported")
}

pub fn import(pem: &SecretString, passphrase: Option<&SecretString>) -> Result<KeyMaterial, KeyError> {
    let text = pem.expose_secret().trim();
    let key = if text.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = PrivateKey::from_openssh(text).map_err(|_| KeyError::Unparsable)?;
        if key.is_encrypted() {
            let pass = passphrase.ok_or(KeyError::PassphraseRequired)?;
            key.decrypt(pass.expose_secret().as_bytes()).map_err(|_| KeyError::WrongPassphrase)?
        } else {
            key
        }
    } else {
        from_pem(text, passphrase)?
    };
    material(key)
}

fn from_pem(text: &str, passphrase: Option<&SecretString>) -> Result<PrivateKey, KeyError> {
    use pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;

    if text.contains("Proc-Type: 4,ENCRYPTED") {
        // Legacy OpenSSL encryption (MD5-based KDF): too weak to be worth supporting.
        return Err(KeyError::Unsupported("legacy encrypted PEM; re-encrypt with `ssh-keygen -p -f KEY`".into()));
    }
    let keypair = if text.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
        let k = rsa::RsaPrivateKey::from_pkcs1_pem(text).map_err(|_| KeyError::Unparsable)?;
        rsa_keypair(k)?
    } else if text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let pass = passphrase.ok_or(KeyError::PassphraseRequired)?.expose_secret().as_bytes();
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_encrypted_pem(text, pass) {
            rsa_keypair(k)?
        } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_encrypted_pem(text, pass) {
            KeypairData::Ed25519(Ed25519Keypair::from(k))
        } else {
            return Err(KeyError::WrongPassphrase);
        }
    } else if text.starts_with("-----BEGIN PRIVATE KEY-----") {
        if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(text) {
            rsa_keypair(k)?
        } else if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(text) {
            KeypairData::Ed25519(Ed25519Keypair::from(k))
        } else {
            return Err(KeyError::Unsupported("PKCS#8 key that is neither RSA nor ed25519".into()));
        }
    } else {
        return Err(KeyError::Unparsable);
    };
    PrivateKey::new(keypair, "").map_err(|_| KeyError::Unparsable)
}

fn rsa_keypair(k: rsa::RsaPrivateKey) -> Result<KeypairData, KeyError> {
    use rsa::traits::PublicKeyParts;
    if k.size() * 8 < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall);
    }
    RsaKeypair::try_from(k).map(KeypairData::Rsa).map_err(|_| KeyError::Unparsable)
}

fn material(key: PrivateKey) -> Result<KeyMaterial, KeyError> {
    let algorithm = key.algorithm();
    match key.key_data() {
        KeypairData::Ed25519(_) | KeypairData::Ecdsa(_) => {}
        KeypairData::Rsa(r) => {
            let bits = r.public.n.as_positive_bytes().map_or(0, |b| b.len() * 8);
            if bits < MIN_RSA_BITS {
                return Err(KeyError::RsaTooSmall);
            }
        }
        _ => return Err(KeyError::Unsupported(algorithm.to_string())),
    }
    // A stable public line: no comment (the name lives in Herd, not in the key).
    let mut key = key;
    key.set_comment("");
    let public = key.public_key();
    let private = key.to_openssh(LineEnding::LF).map_err(|_| KeyError::Unparsable)?;
    Ok(KeyMaterial {
        algorithm: algorithm.to_string(),
        public_key: public.to_openssh().map_err(|_| KeyError::Unparsable)?,
        fingerprint: public.fingerprint(HashAlg::Sha256).to_string(),
        private_openssh: SecretString::from(private.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_key_roundtrips_through_import() {
        let k = generate_ed25519();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert!(k.public_key.starts_with("ssh-ed25519 "));
        assert!(k.fingerprint.starts_with("SHA256:"));
        let again = import(&k.private_openssh, None).unwrap();
        assert_eq!(again.fingerprint, k.fingerprint);
        assert_eq!(again.public_key, k.public_key);
    }

    #[test]
    fn encrypted_openssh_needs_the_right_passphrase() {
        let k = generate_ed25519();
        let key = PrivateKey::from_openssh(k.private_openssh.expose_secret()).unwrap();
        let enc = key.encrypt(&mut rand::rngs::OsRng, "correct horse").unwrap();
        let pem = SecretString::from(enc.to_openssh(LineEnding::LF).unwrap().to_string());
        assert_eq!(import(&pem, None).unwrap_err(), KeyError::PassphraseRequired);
        assert_eq!(import(&pem, Some(&SecretString::from("wrong"))).unwrap_err(), KeyError::WrongPassphrase);
        let ok = import(&pem, Some(&SecretString::from("correct horse"))).unwrap();
        assert_eq!(ok.fingerprint, k.fingerprint);
        assert!(!ok.private_openssh.expose_secret().contains("aes256"));
    }

    #[test]
    fn pkcs8_ed25519_pem_imports() {
        use pkcs8::EncodePrivateKey;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
        let k = import(&SecretString::from(pem.to_string()), None).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(import(&SecretString::from("hello"), None).unwrap_err(), KeyError::Unparsable);
        let broken = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(import(&SecretString::from(broken), None).unwrap_err(), KeyError::Unparsable);
    }
}
