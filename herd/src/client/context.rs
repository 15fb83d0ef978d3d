//! Named contexts: API URL + token pairs in `~/.config/herd/config.toml` (or
//! `$XDG_CONFIG_HOME/herd/config.toml`, or `$HERD_CLI_CONFIG`), written with mode 0600
//! in a 0700 directory because it holds tokens.

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// No `Debug`: it holds tokens.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// The context used when none is named.
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, ContextEntry>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextEntry {
    pub url: String,
    pub token: String,
}

pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HERD_CLI_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    Ok(base.join("herd").join("config.toml"))
}

impl CliConfig {
    pub fn load() -> anyhow::Result<Self> {
        let p = path()?;
        match std::fs::read_to_string(&p) {
            Ok(text) => toml::from_str(&text).with_context(|| format!("reading {}", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let p = path()?;
        let dir = p.parent().context("config path has no directory")?;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        let tmp = p.with_extension("toml.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(toml::to_string(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)?;
        // An existing file keeps 0600 too.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
        Ok(p)
    }

    pub fn get(&self, name: &str) -> anyhow::Result<&ContextEntry> {
        match self.contexts.get(name) {
            Some(c) => Ok(c),
            None => bail!(
                "no context {name:?} in {} (known: {})",
                path().map(|p| p.display().to_string()).unwrap_or_default(),
                if self.contexts.is_empty() { "none".into() } else { self.names().join(", ") }
            ),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.contexts.keys().cloned().collect()
    }
}
