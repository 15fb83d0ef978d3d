//! A cluster's managed databases and users (`/v1/clusters/{id}/databases`, `…/users`):
//! desired state that a `sync_access` task applies on the primary.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use uuid::Uuid;

pub use herd_core::access::DbPrivilege;
pub use herd_core::status::AccessStatus;

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDatabase {
    /// `[a-z_][a-z0-9_]{0,62}`, not `postgres`, `template0`, `template1` or `pg_*`.
    pub name: String,
    /// A managed user of the cluster; default the cluster's admin role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Default `UTF8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// LC_COLLATE and LC_CTYPE, e.g. `C.UTF-8` (the default) or `en_US.UTF-8`; it must
    /// be installed on the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseDto {
    pub name: String,
    /// The managed user that owns it; null: the cluster's admin role.
    pub owner: Option<String>,
    pub encoding: String,
    pub locale: Option<String>,
    pub status: AccessStatus,
    /// Why the last apply failed.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change accepted: the row as recorded and the task that applies it (null when
/// another task holds the cluster; the change is applied after it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DatabaseAccepted {
    pub database: DatabaseDto,
    pub task_id: Option<Uuid>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// `[a-z_][a-z0-9_]{0,62}`; not the admin role, `postgres`, `replicator`, `herd`
    /// or `pg_*`.
    pub name: String,
    /// 12–128 characters; omit to have one generated. Shown once, in the response.
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "crate::secret::expose_opt", skip_serializing_if = "Option::is_none", default)]
    pub password: Option<SecretString>,
    /// At most this many sessions at once (0–10000); omit or -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
    /// Predefined roles to be a member of (`pg_read_all_data`, `pg_monitor`, …;
    /// none that reaches the server's files or programs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Per managed database: `connect`, `read_only`, `read_write`, `create` or `owner`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub grants: BTreeMap<String, DbPrivilege>,
}

/// Fields left out stay as they are.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// A new password (12–128 characters); the old one stops working once applied.
    #[schema(value_type = Option<String>)]
    #[serde(serialize_with = "crate::secret::expose_opt", skip_serializing_if = "Option::is_none", default)]
    pub password: Option<SecretString>,
    /// Generate a new password (shown once, in the response).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rotate_password: bool,
    /// At most this many sessions at once; -1 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<i32>,
    /// Replaces the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Replaces the map; a database left out gets no privilege.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<BTreeMap<String, DbPrivilege>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserDto {
    pub name: String,
    pub connection_limit: Option<i32>,
    pub roles: Vec<String>,
    /// Its privilege per database, `owner` for the databases it owns.
    pub grants: BTreeMap<String, DbPrivilege>,
    pub status: AccessStatus,
    pub error: Option<String>,
    pub password_set_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user change accepted. `password` is present when it was generated (create or
/// rotation): this is the only time it is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserAccepted {
    pub user: UserDto,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub task_id: Option<Uuid>,
}
