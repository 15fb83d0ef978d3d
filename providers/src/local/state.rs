//! The local provider's records: one JSON file per server, volume and snapshot under
//! `<root>/state`, written atomically (temp file + fsync + rename) so a crash leaves
//! either the old or the new record, never a torn one.

use crate::ProviderError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Desired {
    Running,
    Stopped,
}

/// No `Debug`: it holds the server's private host key.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct ServerRecord {
    pub id: String,
    pub token: String,
    pub name: String,
    pub flavor: String,
    pub image: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub address: Ipv4Addr,
    pub authorized_key: String,
    pub host_key_public: String,
    /// OpenSSH private key; lives here (mode 0600) so the record alone can rebuild
    /// the server's files and the recorded host key never changes.
    pub host_key_private: String,
    pub desired: Desired,
    /// Set once the first start finished; before that the server is `building`.
    pub ready: bool,
    pub created_at: DateTime<Utc>,
    /// The OS user its datastore daemons run as (`users`); None for servers created
    /// before there were service users, or by a provider that is not root: their
    /// daemons keep the packages' own users.
    #[serde(default)]
    pub service_user: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct VolumeRecord {
    pub id: String,
    pub token: String,
    pub name: String,
    pub size_gb: u32,
    pub tags: BTreeMap<String, String>,
    pub attached_to: Option<String>,
    pub snapshot_id: Option<String>,
    /// False while its contents are still being copied from a snapshot.
    pub ready: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    pub id: String,
    pub token: String,
    pub name: String,
    pub volume_id: String,
    pub size_gb: u32,
    pub tags: BTreeMap<String, String>,
    /// False while the copy runs.
    pub ready: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Server,
    Volume,
    Snapshot,
}

impl Kind {
    pub fn dir(self) -> &'static str {
        match self {
            Kind::Server => "servers",
            Kind::Volume => "volumes",
            Kind::Snapshot => "snapshots",
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Volume => "volume",
            Kind::Snapshot => "snapshot",
        }
    }
}

/// The provider root's layout.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn state_dir(&self, kind: Kind) -> PathBuf {
        self.root.join("state").join(kind.dir())
    }

    pub fn record_path(&self, kind: Kind, id: &str) -> PathBuf {
        self.state_dir(kind).join(format!("{id}.json"))
    }

    pub fn lock_path(&self, kind: Kind, id: &str) -> PathBuf {
        self.state_dir(kind).join(format!("{id}.lock"))
    }

    pub fn global_lock_path(&self) -> PathBuf {
        self.root.join("state").join("lock")
    }

    /// Server roots, volume contents and snapshot contents.
    pub fn data_path(&self, kind: Kind, id: &str) -> PathBuf {
        self.root.join(kind.dir()).join(id)
    }

    /// Staging area for copies; renamed into place when complete.
    pub fn staging_path(&self, kind: Kind, id: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{}-{id}", kind.noun()))
    }

    pub fn create_dirs(&self) -> Result<(), ProviderError> {
        for kind in [Kind::Server, Kind::Volume, Kind::Snapshot] {
            for dir in [self.state_dir(kind), self.root.join(kind.dir())] {
                fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
            }
        }
        let tmp = self.root.join("tmp");
        fs::create_dir_all(&tmp).map_err(|e| io_error("create", &tmp, e))?;
        // Servers' users must pass through to their own root and volumes, never list
        // the others.
        for kind in [Kind::Server, Kind::Volume, Kind::Snapshot] {
            set_mode(&self.root.join(kind.dir()), 0o711)?;
        }
        set_mode(&tmp, 0o700)?;
        // Records hold private host keys.
        set_mode(&self.root.join("state"), 0o700)
    }

    pub fn load<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<T, ProviderError> {
        if !valid_id(id) {
            return Err(ProviderError::NotFound(format!("{} {id}", kind.noun())));
        }
        let path = self.record_path(kind, id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ProviderError::Permanent(format!("corrupt record {}: {e}", path.display()))),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ProviderError::NotFound(format!("{} {id}", kind.noun()))),
            Err(e) => Err(io_error("read", &path, e)),
        }
    }

    /// The record, or None when it does not exist.
    pub fn try_load<T: DeserializeOwned>(&self, kind: Kind, id: &str) -> Result<Option<T>, ProviderError> {
        match self.load(kind, id) {
            Ok(r) => Ok(Some(r)),
            Err(ProviderError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn list<T: DeserializeOwned>(&self, kind: Kind) -> Result<Vec<T>, ProviderError> {
        let dir = self.state_dir(kind);
        let entries = fs::read_dir(&dir).map_err(|e| io_error("list", &dir, e))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("list", &dir, e))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // A record deleted between listing and reading is simply gone.
            if let Some(r) = self.try_load(kind, &id)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub fn save<T: Serialize>(&self, kind: Kind, id: &str, record: &T) -> Result<(), ProviderError> {
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| ProviderError::Permanent(format!("encode record: {e}")))?;
        write_atomic(&self.record_path(kind, id), &bytes, 0o600)
    }

    pub fn remove(&self, kind: Kind, id: &str) -> Result<(), ProviderError> {
        remove_file_if_exists(&self.record_path(kind, id))
    }
}

/// Ids are generated by the provider; anything else (path tricks included) is unknown.
pub(crate) fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// 48 random bits: unique enough for one machine's servers, and short, because every
/// server path embeds the id and PostgreSQL's Unix socket path must stay under 107
/// bytes (`<root>/servers/<id>/var/run/postgresql/.s.PGSQL.5432`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), ProviderError> {
    let dir = path.parent().ok_or_else(|| ProviderError::Permanent(format!("no parent: {}", path.display())))?;
    let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{file_name}.tmp-{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error("write", path, e)
    })
}

pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, e)),
    }
}

/// Removes a directory tree without following symlinks (attached volumes are
/// symlinks inside server roots and must survive).
pub(crate) fn remove_dir_if_exists(path: &Path) -> Result<(), ProviderError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("remove", path, e)),
    }
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), ProviderError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| io_error("chmod", path, e))
}

pub(crate) fn io_error(what: &str, path: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::Permanent(format!("{what} {}: {e}", path.display()))
}

/// An exclusive `flock` held until dropped. flock locks belong to the open file, so
/// they order threads of this process and other Herd processes alike.
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    pub fn acquire(path: &Path) -> Result<Self, ProviderError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| io_error("open lock", path, e))?;
        file.lock().map_err(|e| io_error("lock", path, e))?;
        Ok(Self { _file: file })
    }
}
