//! Cluster CAs on the client side: libpq verifies a cluster's servers (the URIs ask for
//! `sslmode=verify-full`) against a root certificate file, so the CLI keeps each
//! cluster's CA beside its config and points the URI at it.

use anyhow::Context;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Writes cluster `id`'s CA to `<config dir>/ca/<id>.crt` (rewritten each time: it is
/// the same certificate unless Herd's master key changed); returns the path.
pub fn save_ca(id: Uuid, pem: &str) -> anyhow::Result<PathBuf> {
    let dir = super::context::path()?.parent().map(|p| p.join("ca")).context("the CLI config path has no parent")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{id}.crt"));
    let tmp = dir.join(format!(".{id}.crt.tmp"));
    std::fs::write(&tmp, pem).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `uri` with `sslrootcert` naming `ca` (percent-encoded), so psql verifies the
/// servers with no other set-up.
pub fn with_root_cert(uri: &str, ca: &Path) -> String {
    let encoded: String = ca
        .to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}sslrootcert={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_cert_is_appended_encoded() {
        assert_eq!(
            with_root_cert("postgresql://a@h:5432/postgres?sslmode=verify-full", Path::new("/tmp/a b/c&d.crt")),
            "postgresql://a@h:5432/postgres?sslmode=verify-full&sslrootcert=/tmp/a%20b/c%26d.crt"
        );
        assert_eq!(with_root_cert("postgresql://h/db", Path::new("/x.crt")), "postgresql://h/db?sslrootcert=/x.crt");
    }
}
