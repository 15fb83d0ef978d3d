//! Projects, API tokens and SSH keys.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::TokenRole;

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// 1–100 characters, unique in the project.
    pub name: String,
    /// An OpenSSH or PEM private key to import; omit to generate an ed25519 key.
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "crate::secret::expose_opt", skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretString>,
    /// Passphrase of an encrypted private key; used once, never stored.
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "crate::secret::expose_opt", skip_serializing_if = "Option::is_none")]
    pub passphrase: Option<SecretString>,
}

/// An SSH key. The private half is never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyDto {
    pub id: Uuid,
    pub name: String,
    /// SSH algorithm name, e.g. `ssh-ed25519`.
    pub algorithm: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// `SHA256:...`
    pub fingerprint: String,
    /// The private key was supplied when the key was created (false: Herd generated
    /// it and never shows it); null for keys from before Herd recorded it.
    #[serde(default)]
    pub imported: Option<bool>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProjectDto {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for; default `token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Default `member`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<TokenRole>,
}

/// A token's metadata. The secret itself is only in `CreatedToken`, once.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenDto {
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub role: TokenRole,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new token with its secret, shown once.
// No `Debug`: it holds the secret.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub meta: TokenDto,
    /// The bearer token. Shown only in this response; Herd keeps only its hash.
    pub token: String,
}

pub use herd_core::quota::{Exceeded as QuotaExceeded, Quota};

/// One quota of a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaLine {
    /// The limit in force: the project's own, or the default.
    pub limit: u64,
    /// What the project holds now.
    pub used: u64,
    /// Whether an operator set this project's limit (`false`: the settings' default).
    pub overridden: bool,
}

/// A project's quotas (`GET /v1/projects/{id}/quotas`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuotasDto {
    pub project_id: Uuid,
    pub clusters: QuotaLine,
    pub nodes: QuotaLine,
    pub volume_gb: QuotaLine,
    pub snapshots: QuotaLine,
    pub backups: QuotaLine,
    pub keys: QuotaLine,
}

impl QuotasDto {
    pub fn get(&self, q: herd_core::quota::Quota) -> QuotaLine {
        use herd_core::quota::Quota;
        match q {
            Quota::Clusters => self.clusters,
            Quota::Nodes => self.nodes,
            Quota::VolumeGb => self.volume_gb,
            Quota::Snapshots => self.snapshots,
            Quota::Backups => self.backups,
            Quota::Keys => self.keys,
        }
    }
}

/// A project's own limits (`PUT /v1/projects/{id}/quotas`, operators): each one given
/// replaces the default for this project; each absent or `null` goes back to it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuotas {
    pub clusters: Option<u64>,
    pub nodes: Option<u64>,
    pub volume_gb: Option<u64>,
    pub snapshots: Option<u64>,
    pub backups: Option<u64>,
    pub keys: Option<u64>,
}
