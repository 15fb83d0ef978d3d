//! SSH key files that probe the API's input limits.

/// An ed25519 key from `ssh-keygen`, encrypted with passphrase `pw`, whose bcrypt
/// rounds (after the 16-byte salt in the key's KDF options) are set to `rounds`.
pub fn costly_openssh_key(rounds: u32) -> String {
    use base64::Engine;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "pw", "-a", "16", "-f"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&path).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let engine = base64::engine::general_purpose::STANDARD;
    let mut raw = engine.decode(b64).unwrap();
    let at = raw.windows(6).position(|w| w == b"bcrypt").unwrap() + 6 + 4 + 4 + 16;
    assert_eq!(raw[at..at + 4], 16u32.to_be_bytes(), "the rounds field");
    raw[at..at + 4].copy_from_slice(&rounds.to_be_bytes());
    let body = engine.encode(raw);
    let lines: Vec<&str> = body.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----\n", lines.join("\n"))
}
