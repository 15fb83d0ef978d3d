//! Why a task failed or a cluster is faulted: one table of stable codes, like the HTTP
//! error codes. Tasks record `error.code`, clusters `fault.code`; the OpenAPI spec lists
//! them as an enum so clients can match on them. Codes are never renamed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! fault_codes {
    ($($(#[$m:meta])* $v:ident = $s:literal,)+) => {
        /// A task's failure or a cluster's fault.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum FaultCode {
            $($(#[$m])* $v,)+
        }

        impl FaultCode {
            pub const ALL: &'static [FaultCode] = &[$(FaultCode::$v),+];

            pub fn as_str(self) -> &'static str {
                match self { $(FaultCode::$v => $s,)+ }
            }
        }

        impl std::str::FromStr for FaultCode {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok(FaultCode::$v),)+
                    _ => Err(format!("unknown fault code '{s}'")),
                }
            }
        }
    };
}

impl std::fmt::Display for FaultCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with a code's wire name (what clients and the database see).
impl PartialEq<&str> for FaultCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

fault_codes! {
    /// The provider has no such server, volume or snapshot.
    ProviderNotFound = "provider_not_found",
    /// The provider is out of capacity or quota.
    ProviderCapacity = "provider_capacity",
    /// The provider failed in a way that may pass; retries ran out.
    ProviderTransient = "provider_transient",
    /// The provider refused the change in the resource's current state.
    ProviderConflict = "provider_conflict",
    /// The provider cannot do this (a capability it lacks).
    ProviderUnsupported = "provider_unsupported",
    /// The provider refused the request.
    ProviderError = "provider_error",
    /// The cluster's provider is not configured in this process.
    ProviderUnavailable = "provider_unavailable",
    /// The datastore failed in a way that may pass; retries ran out.
    DatastoreTransient = "datastore_transient",
    /// No datastore manager of that name is built in.
    UnknownManager = "unknown_manager",
    /// Installing the datastore's packages failed.
    PackageInstallFailed = "package_install_failed",
    /// A configuration file could not be rendered.
    TemplateError = "template_error",
    /// The server refused Herd's SSH key.
    SshAuthFailed = "ssh_auth_failed",
    /// The server's SSH host key is not the recorded one.
    HostKeyMismatch = "host_key_mismatch",
    /// The server's SSH host key could not be read.
    HostKeyInvalid = "host_key_invalid",
    /// Patroni's REST API refused Herd's credentials.
    PatroniAuthFailed = "patroni_auth_failed",
    /// The DCS already has a different member of that name.
    MemberConflict = "member_conflict",
    /// The HA agent does not know that member.
    UnknownMember = "unknown_member",
    /// No replica can take over as primary.
    NoCandidate = "no_candidate",
    /// The named replica cannot become primary (tagged nofailover, stopped, or lagging).
    CandidateNotEligible = "candidate_not_eligible",
    /// A synchronous cluster promotes only its synchronous standby.
    CandidateNotSynchronous = "candidate_not_synchronous",
    /// The operation applies to replicas and the node is the primary.
    IsPrimary = "is_primary",
    /// A PostgreSQL parameter is unknown or malformed.
    InvalidParameter = "invalid_parameter",
    /// A PostgreSQL parameter is managed by Herd or not allowed.
    ParameterNotAllowed = "parameter_not_allowed",
    /// A parameter value is malformed.
    InvalidValue = "invalid_value",
    /// The datastore version is not one this manager supports.
    InvalidVersion = "invalid_version",
    /// The HA timing settings are inconsistent.
    InvalidHaTiming = "invalid_ha_timing",
    /// The admin user name is not allowed.
    InvalidAdminUser = "invalid_admin_user",
    /// The cluster name cannot be used on the server.
    InvalidClusterName = "invalid_cluster_name",
    /// A node name cannot be used on the server.
    InvalidNodeName = "invalid_node_name",
    /// The node is not a member the operation can use.
    InvalidNode = "invalid_node",
    /// The callback address or token is malformed.
    InvalidCallback = "invalid_callback",
    /// The cluster's stored secrets could not be used.
    InvalidSecrets = "invalid_secrets",
    /// A path on the server is not absolute or not allowed.
    InvalidPath = "invalid_path",
    /// The node's volume attachment is malformed.
    InvalidVolume = "invalid_volume",
    /// The node has no data volume.
    NoVolume = "no_volume",
    /// The data volume could not be mounted.
    VolumeMountFailed = "volume_mount_failed",
    /// A loopback host's root prefix is too long for PostgreSQL's socket path.
    RootPrefixTooLong = "root_prefix_too_long",
    /// The server's directories are not writable by the service users.
    ServerRootInaccessible = "server_root_inaccessible",
    /// A service user (postgres, etcd) is missing on the server.
    MissingServiceUser = "missing_service_user",
    /// The node was not configured before this step.
    NotConfigured = "not_configured",
    /// No backup repository is configured for the cluster.
    BackupsNotConfigured = "backups_not_configured",
    /// The backup repository's settings are invalid.
    InvalidBackupConfig = "invalid_backup_config",
    /// The backup repository cannot be reached or created.
    BackupRepoUnavailable = "backup_repo_unavailable",
    /// pgBackRest is not installed on the server.
    BackupToolMissing = "backup_tool_missing",
    /// A backup label is malformed.
    InvalidBackupLabel = "invalid_backup_label",
    /// The restore source cannot be used.
    InvalidRestore = "invalid_restore",
    /// A snapshot's backup label is malformed.
    InvalidSnapshotLabel = "invalid_snapshot_label",
    /// The provider cannot snapshot this cluster's volumes.
    SnapshotsUnsupported = "snapshots_unsupported",
    /// The node is not a running member (gone, or without a server).
    NodeUnavailable = "node_unavailable",
    /// A database to be dropped has sessions and the drop was not forced.
    DatabaseInUse = "database_in_use",
    /// PostgreSQL refused a managed database or user change.
    AccessRefused = "access_refused",
    /// The resource is in a state that does not allow the step.
    InvalidState = "invalid_state",
    /// The task's input does not fit what the step needs.
    InvalidTaskInput = "invalid_task_input",
    /// The task's stored payload could not be read; it was not resumed.
    CorruptCheckpoint = "corrupt_checkpoint",
    /// A step kept failing transiently for its whole retry budget.
    StepTimeout = "step_timeout",
    /// The task was taken over too many times (its workers kept dying).
    TooManyAttempts = "too_many_attempts",
    /// The task ended on a transient failure.
    Transient = "transient",
    /// A bug or an unexpected state; the message says where.
    InternalError = "internal_error",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_roundtrip_as_their_serde_names() {
        for c in FaultCode::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
            assert_eq!(c.as_str().parse::<FaultCode>().unwrap(), *c);
        }
        assert!("no_such_code".parse::<FaultCode>().is_err());
    }
}
