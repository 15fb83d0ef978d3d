//! Domain states. Each enum is stored as its snake_case string and each state machine
//! keeps its legal transitions in a single `can_become` function: the store refuses an
//! update that this function does not allow.

// The database mapping is compiled only for the store (feature `db`): the SDK types
// and the CLI use these enums without carrying the ORM.
#[cfg(feature = "db")]
use sea_orm::entity::prelude::StringLen;
#[cfg(feature = "db")]
use sea_orm::{DeriveActiveEnum, EnumIter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[cfg_attr(feature = "db", derive(EnumIter, DeriveActiveEnum))]
        #[serde(rename_all = "snake_case")]
        #[cfg_attr(feature = "db", sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))"))]
        pub enum $name {
            $($(#[$vm])* #[cfg_attr(feature = "db", sea_orm(string_value = $s))] $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s,)+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($s => Ok($name::$variant),)+
                    _ => Err(format!("must be one of: {}",
                        [$($s),+].join(", "))),
                }
            }
        }
    };
}

string_enum!(
    /// Lifecycle of a cluster as users see it.
    ClusterStatus {
        /// Servers are being created and configured.
        Building = "building",
        /// Every node is healthy and a primary accepts writes.
        Active = "active",
        /// A primary accepts writes but some node is unhealthy.
        Degraded = "degraded",
        /// A day-2 operation is changing the cluster.
        Updating = "updating",
        /// A task failed; see `fault`.
        Failed = "failed",
        /// Resources are being released.
        Deleting = "deleting",
    }
);

impl ClusterStatus {
    pub fn can_become(self, to: ClusterStatus) -> bool {
        use ClusterStatus::*;
        matches!(
            (self, to),
            (Building, Active | Failed | Deleting)
                | (Active, Degraded | Updating | Deleting | Failed)
                | (Degraded, Active | Updating | Deleting | Failed)
                | (Updating, Active | Degraded | Failed | Deleting)
                // A failed build can be retried or torn down.
                | (Failed, Building | Updating | Active | Degraded | Deleting)
                // A failed delete is reported and may be retried.
                | (Deleting, Failed)
        ) || self == to
    }
}

string_enum!(
    TaskStatus {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }
);

impl TaskStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Succeeded | TaskStatus::Failed | TaskStatus::Cancelled)
    }

    pub fn can_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, to),
            (Queued, Running | Cancelled)
                // Running -> Queued: the sweeper takes back a task whose worker died.
                | (Running, Succeeded | Failed | Cancelled | Queued | Running)
        )
    }
}

string_enum!(
    TaskKind {
        CreateCluster = "create_cluster",
        DeleteCluster = "delete_cluster",
        /// start, stop, restart, reload, switchover, failover, reinitialize.
        ClusterAction = "cluster_action",
        /// Power a node's server on or off through the provider.
        PowerNode = "power_node",
        AddNodes = "add_nodes",
        RemoveNode = "remove_node",
        /// Policy and parameter changes pushed into the running cluster.
        UpdateCluster = "update_cluster",
        /// Replace a node whose server is gone (auto-heal).
        ReplaceNode = "replace_node",
        /// Take a pgBackRest backup from the primary.
        Backup = "backup",
        /// Remove a backup from its repository.
        ExpireBackup = "expire_backup",
        /// Snapshot the primary's volume inside an online backup.
        Snapshot = "snapshot",
        /// Delete a volume snapshot at the provider.
        DeleteSnapshot = "delete_snapshot",
        /// Bring the cluster's managed databases and users to their desired state.
        SyncAccess = "sync_access",
    }
);

impl TaskKind {
    /// Kinds that change a running cluster: at most one runs per cluster at a time.
    pub fn is_day2(self) -> bool {
        !matches!(self, TaskKind::CreateCluster | TaskKind::DeleteCluster)
    }
}

string_enum!(
    /// What `POST /v1/clusters/{id}/actions` can ask for.
    ActionKind {
        /// Start the database on a node (or every node) stopped by `stop`.
        Start = "start",
        /// Stop the database on a node (or every node); it stays down until `start`.
        Stop = "stop",
        /// Restart the database: one node, or all in rolling order (replicas first,
        /// then a switchover, then the old primary).
        Restart = "restart",
        /// Re-read configuration without a restart.
        Reload = "reload",
        /// Planned change of primary, to `candidate_id` or the best replica.
        Switchover = "switchover",
        /// Forced promotion of `candidate_id`.
        Failover = "failover",
        /// Rebuild the replica `node_id` from the primary.
        Reinitialize = "reinitialize",
    }
);

string_enum!(
    PowerState {
        On = "on",
        Off = "off",
    }
);

string_enum!(
    NodeRole {
        Primary = "primary",
        Replica = "replica",
        /// Not yet known (building) or unreachable.
        Unknown = "unknown",
    }
);

string_enum!(
    NodeStatus {
        Building = "building",
        Running = "running",
        Stopped = "stopped",
        Unreachable = "unreachable",
        Failed = "failed",
        Deleting = "deleting",
    }
);

impl NodeStatus {
    pub fn can_become(self, to: NodeStatus) -> bool {
        use NodeStatus::*;
        match (self, to) {
            (a, b) if a == b => true,
            (Deleting, _) => false,
            (_, Deleting) => true,
            (Building, Running | Failed) => true,
            (Running | Stopped | Unreachable, Running | Stopped | Unreachable | Failed) => true,
            (Failed, Building | Running) => true,
            _ => false,
        }
    }
}

string_enum!(
    TokenRole {
        /// Runs Herd: every project and its tokens, datastore versions (whose packages
        /// are installed as root), providers' settings; the bootstrap token is one.
        Operator = "operator",
        /// A project's own administrator: its project's tokens (member and admin),
        /// plus everything a member can do. Nothing of other projects.
        Admin = "admin",
        /// Manages the resources of its own project.
        Member = "member",
    }
);

string_enum!(
    VolumeStatus {
        Creating = "creating",
        Available = "available",
        Attached = "attached",
        Deleting = "deleting",
        Error = "error",
    }
);

impl VolumeStatus {
    pub fn can_become(self, to: VolumeStatus) -> bool {
        use VolumeStatus::*;
        self == to
            || matches!(
                (self, to),
                (Creating, Available | Error)
                    | (Available, Attached | Deleting | Error)
                    | (Attached, Available | Deleting)
                    | (Error, Deleting)
            )
    }
}

string_enum!(
    SnapshotStatus {
        Creating = "creating",
        Available = "available",
        Deleting = "deleting",
        Error = "error",
    }
);

impl SnapshotStatus {
    pub fn can_become(self, to: SnapshotStatus) -> bool {
        use SnapshotStatus::*;
        // A failed deletion leaves the snapshot in error (it may still exist).
        matches!((self, to), (Creating, Available | Error) | (Available | Error, Deleting) | (Deleting, Error))
    }
}

string_enum!(
    BackupType {
        Full = "full",
        Diff = "diff",
        Incr = "incr",
    }
);

string_enum!(
    BackupStatus {
        New = "new",
        Running = "running",
        Completed = "completed",
        Failed = "failed",
        Expired = "expired",
    }
);

impl BackupStatus {
    pub fn can_become(self, to: BackupStatus) -> bool {
        use BackupStatus::*;
        matches!((self, to), (New, Running | Failed) | (Running, Completed | Failed) | (Completed, Expired))
    }
}

string_enum!(
    /// A managed database or user: its desired state against what the primary has.
    AccessStatus {
        /// Recorded (or changed) and not yet applied on the primary.
        Pending = "pending",
        /// The primary has it as desired.
        Ready = "ready",
        /// To be dropped; the row goes once the primary no longer has it.
        Deleting = "deleting",
        /// The last apply failed (`error` says why); the next change or sync tries again.
        Error = "error",
    }
);

impl AccessStatus {
    pub fn can_become(self, to: AccessStatus) -> bool {
        use AccessStatus::*;
        // Pending → Pending: a second change before the first was applied. A refused
        // drop (the database is in use) is an error and stays to be deleted again.
        matches!(
            (self, to),
            (Pending, Pending | Ready | Error | Deleting) | (Ready | Error, Pending | Deleting) | (Deleting, Error)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_roundtrip() {
        for s in ClusterStatus::ALL {
            assert_eq!(s.as_str().parse::<ClusterStatus>().unwrap(), *s);
            assert_eq!(serde_json::to_string(s).unwrap(), format!("\"{}\"", s.as_str()));
        }
        assert!("nope".parse::<TaskStatus>().is_err());
        assert_eq!(TaskKind::CreateCluster.as_str(), "create_cluster");
    }

    #[test]
    fn cluster_transitions() {
        use ClusterStatus::*;
        assert!(Building.can_become(Active));
        assert!(Building.can_become(Deleting));
        assert!(!Deleting.can_become(Active));
        assert!(!Deleting.can_become(Building));
        assert!(!Active.can_become(Building));
    }

    #[test]
    fn terminal_tasks_stay_terminal() {
        for from in TaskStatus::ALL.iter().filter(|s| s.is_terminal()) {
            for to in TaskStatus::ALL {
                assert!(!from.can_become(*to), "{from} -> {to}");
            }
        }
        assert!(TaskStatus::Queued.can_become(TaskStatus::Running));
        assert!(!TaskStatus::Queued.can_become(TaskStatus::Succeeded));
    }

    #[test]
    fn node_transitions() {
        use NodeStatus::*;
        assert!(Building.can_become(Running));
        assert!(Running.can_become(Unreachable) && Unreachable.can_become(Running));
        assert!(Running.can_become(Deleting));
        assert!(!Deleting.can_become(Running), "a node being deleted never comes back");
        assert!(!Building.can_become(Stopped));
    }

    #[test]
    fn backups_only_expire_when_completed() {
        assert!(BackupStatus::Completed.can_become(BackupStatus::Expired));
        assert!(SnapshotStatus::Creating.can_become(SnapshotStatus::Available));
        assert!(SnapshotStatus::Available.can_become(SnapshotStatus::Deleting));
        assert!(!SnapshotStatus::Creating.can_become(SnapshotStatus::Deleting));
        assert!(!SnapshotStatus::Deleting.can_become(SnapshotStatus::Available));
        assert!(!BackupStatus::Running.can_become(BackupStatus::Expired));
        assert!(AccessStatus::Ready.can_become(AccessStatus::Pending));
        assert!(AccessStatus::Deleting.can_become(AccessStatus::Error));
        assert!(!AccessStatus::Deleting.can_become(AccessStatus::Ready));
        assert!(!AccessStatus::Ready.can_become(AccessStatus::Ready));
    }
}
