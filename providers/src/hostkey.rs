//! SSH host key checks for ssh2 sessions: the provider records a server's host key
//! at create time and every later connection must present exactly that key.

use ssh_key::PublicKey;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostKeyError {
    /// The session has no host key: the handshake has not run.
    #[error("no host key: the SSH handshake has not completed")]
    NoHandshake,
    #[error("recorded host key is not a valid OpenSSH public key: {0}")]
    InvalidExpected(String),
    #[error("server presented an unreadable host key: {0}")]
    InvalidPresented(String),
    /// Possibly a man in the middle, or the server was replaced: never continue.
    #[error("host key mismatch: expected {expected}, server presented {presented}")]
    Mismatch { expected: String, presented: String },
}

/// Checks, after `session.handshake()` and before authenticating, that the server
/// presented the host key recorded as `expected` (an OpenSSH public key line; its
/// comment is ignored).
pub fn verify_host_key(session: &ssh2::Session, expected: &str) -> Result<(), HostKeyError> {
    let expected_key =
        PublicKey::from_openssh(expected.trim()).map_err(|e| HostKeyError::InvalidExpected(e.to_string()))?;
    let expected_blob = expected_key.to_bytes().map_err(|e| HostKeyError::InvalidExpected(e.to_string()))?;
    let (presented, _) = session.host_key().ok_or(HostKeyError::NoHandshake)?;
    if presented == expected_blob.as_slice() {
        return Ok(());
    }
    Err(HostKeyError::Mismatch {
        expected: fingerprint(&expected_key),
        presented: PublicKey::from_bytes(presented)
            .map(|k| fingerprint(&k))
            .unwrap_or_else(|_| "an unreadable key".to_owned()),
    })
}

/// The host key the server presented, as an OpenSSH public key line: for providers
/// that cannot report host keys (EC2), record it on first connect.
pub fn presented_host_key(session: &ssh2::Session) -> Result<String, HostKeyError> {
    let (presented, _) = session.host_key().ok_or(HostKeyError::NoHandshake)?;
    PublicKey::from_bytes(presented)
        .and_then(|k| k.to_openssh())
        .map_err(|e| HostKeyError::InvalidPresented(e.to_string()))
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
}
