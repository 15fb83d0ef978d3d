//! SSH key pairs for clusters: generated ed25519 or imported (OpenSSH, possibly
//! passphrase-protected, or PEM PKCS#1/PKCS#8). Whatever comes in is normalised to an
//! unencrypted OpenSSH private key, which the caller encrypts at rest.

use secrecy::{ExposeSecret, SecretString};
use ssh_key::private::{Ed25519Keypair, KeypairData, RsaKeypair};
use ssh_key::{HashAlg, LineEnding, PrivateKey};

const MIN_RSA_BITS: usize = 2048;

/// Bounds on what decrypting an imported key may cost, checked before the key
/// derivation runs: a key file chooses its own KDF cost, and 1,600 bcrypt rounds
/// kept an API thread busy for seconds. `ssh-keygen` uses 16 rounds (`-a 100` is the
/// usual hardening), OpenSSL 2,048 PBKDF2 iterations (OWASP: 600,000) and scrypt
/// N = 2^14, r = 8, p = 1; each cap leaves room above those.
pub const MAX_BCRYPT_ROUNDS: u32 = 256;
pub const MAX_PBKDF2_ITERATIONS: u32 = 1_000_000;
/// scrypt's memory, 128·r·N·p bytes, at most 64 MiB.
pub const MAX_SCRYPT_BYTES: u64 = 64 << 20;

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
    #[error("is encrypted with a key derivation too costly to run ({0}); re-encrypt it with default settings")]
    KdfTooCostly(String),
}

/// A validated key pair. The private half stays secret until it is encrypted.
pub struct KeyMaterial {
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
    pub private_openssh: SecretString,
    /// Supplied by the caller, who holds the private key; false when Herd generated it
    /// (nobody else ever sees a generated one).
    pub imported: bool,
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
            if let ssh_key::Kdf::Bcrypt { rounds, .. } = key.kdf()
                && *rounds > MAX_BCRYPT_ROUNDS
            {
                return Err(KeyError::KdfTooCostly(format!("{rounds} bcrypt rounds, at most {MAX_BCRYPT_ROUNDS}")));
            }
            let pass = passphrase.ok_or(KeyError::PassphraseRequired)?;
            key.decrypt(pass.expose_secret().as_bytes()).map_err(|_| KeyError::WrongPassphrase)?
        } else {
            key
        }
    } else {
        from_pem(text, passphrase)?
    };
    material(key).map(|m| KeyMaterial { imported: true, ..m })
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
        check_pkcs8_kdf(text)?;
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

/// Refuses an encrypted PKCS#8 key whose PBKDF2 or scrypt parameters exceed the caps.
fn check_pkcs8_kdf(text: &str) -> Result<(), KeyError> {
    use pkcs8::der::Decode;
    use pkcs8::pkcs5::{EncryptionScheme, pbes2::Kdf};
    let (_, der) = pkcs8::der::pem::decode_vec(text.as_bytes()).map_err(|_| KeyError::Unparsable)?;
    let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der).map_err(|_| KeyError::Unparsable)?;
    match info.encryption_algorithm {
        EncryptionScheme::Pbes2(p) => match p.kdf {
            Kdf::Pbkdf2(k) if k.iteration_count > MAX_PBKDF2_ITERATIONS => Err(KeyError::KdfTooCostly(format!(
                "{} PBKDF2 iterations, at most {MAX_PBKDF2_ITERATIONS}",
                k.iteration_count
            ))),
            Kdf::Scrypt(k) => {
                let bytes = 128u64
                    .saturating_mul(u64::from(k.block_size))
                    .saturating_mul(k.cost_parameter)
                    .saturating_mul(u64::from(k.parallelization));
                if bytes > MAX_SCRYPT_BYTES {
                    Err(KeyError::KdfTooCostly(format!("scrypt needing {} MiB, at most 64", bytes >> 20)))
                } else {
                    Ok(())
                }
            }
            Kdf::Pbkdf2(_) => Ok(()),
            // Both enums are non-exhaustive: a KDF unknown here is not run.
            _ => Err(KeyError::Unsupported("an unknown PBES2 key derivation".into())),
        },
        // PBES1 (DES/RC2 with MD5/SHA-1): what the decrypters here do not support.
        _ => Err(KeyError::Unsupported("PKCS#5 v1.5 (PBES1) encryption".into())),
    }
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
        imported: false,
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

    /// `bytes` with the first occurrence of `from` replaced by `to` (same length).
    fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let i = bytes.windows(from.len()).position(|w| w == from).expect("pattern present");
        let mut out = bytes.to_vec();
        out[i..i + to.len()].copy_from_slice(to);
        out
    }

    #[test]
    fn a_costly_kdf_is_refused_before_it_runs() {
        use std::time::{Duration, Instant};
        // OpenSSH: the key's own bcrypt rounds (after the 16-byte salt) raised to 1,600.
        let k = generate_ed25519();
        let key = PrivateKey::from_openssh(k.private_openssh.expose_secret()).unwrap();
        let enc = key.encrypt(&mut rand::rngs::OsRng, "pw").unwrap();
        let ssh_key::Kdf::Bcrypt { salt, rounds } = enc.kdf() else { panic!("bcrypt") };
        let mut from = salt.clone();
        from.extend(rounds.to_be_bytes());
        let mut to = salt.clone();
        to.extend(1600u32.to_be_bytes());
        let costly = PrivateKey::from_bytes(&patched(&enc.to_bytes().unwrap(), &from, &to)).unwrap();
        let pem = SecretString::from(costly.to_openssh(LineEnding::LF).unwrap().to_string());
        let t = Instant::now();
        let e = import(&pem, Some(&SecretString::from("pw"))).unwrap_err();
        assert!(matches!(&e, KeyError::KdfTooCostly(m) if m.contains("1600 bcrypt rounds")), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(1), "refused without deriving: {:?}", t.elapsed());

        // PKCS#8: PBKDF2 with 65,536 iterations (DER 02 03 01 00 00), raised to 8,323,072.
        use pkcs8::EncodePrivateKey;
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let info_der = sk.to_pkcs8_der().unwrap();
        let info = pkcs8::PrivateKeyInfo::try_from(info_der.as_bytes()).unwrap();
        let params = pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(65_536, &[1u8; 16], &[2u8; 16]).unwrap();
        let enc = info.encrypt_with_params(params, "pw").unwrap();
        let ok_pem =
            pkcs8::der::pem::encode_string("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF, enc.as_bytes()).unwrap();
        assert!(import(&SecretString::from(ok_pem), Some(&SecretString::from("pw"))).is_ok(), "within the cap");
        let der = patched(enc.as_bytes(), &[2, 3, 1, 0, 0], &[2, 3, 0x7f, 0, 0]);
        let pem = pkcs8::der::pem::encode_string("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF, &der).unwrap();
        let e = import(&SecretString::from(pem), Some(&SecretString::from("pw"))).unwrap_err();
        assert!(matches!(&e, KeyError::KdfTooCostly(m) if m.contains("8323072 PBKDF2 iterations")), "{e:?}");

        // scrypt with N = 2^14 (DER 02 02 40 00) and r = 1, raised to r = 127: 254 MiB.
        let scrypt = pkcs8::pkcs5::scrypt::Params::new(14, 1, 1, 32).unwrap();
        let params = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &[1u8; 16], &[2u8; 16]).unwrap();
        let enc = info.encrypt_with_params(params, "pw").unwrap();
        let der = patched(enc.as_bytes(), &[2, 2, 0x40, 0, 2, 1, 1], &[2, 2, 0x40, 0, 2, 1, 0x7f]);
        let pem = pkcs8::der::pem::encode_string("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF, &der).unwrap();
        let e = import(&SecretString::from(pem), Some(&SecretString::from("pw"))).unwrap_err();
        assert!(matches!(&e, KeyError::KdfTooCostly(m) if m.contains("scrypt needing 254 MiB")), "{e:?}");
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
