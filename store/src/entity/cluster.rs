use herd_core::status::ClusterStatus;
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "clusters")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub datastore: String,
    pub version: String,
    pub flavor: String,
    pub provider: String,
    pub node_count: i32,
    pub volume_gb: i32,
    pub key_id: Uuid,
    pub synchronous: bool,
    pub parameters: Json,
    pub status: ClusterStatus,
    pub admin_user: String,
    /// AES-256-GCM ciphertext bound to this row's id.
    pub admin_password_enc: String,
    /// AES-256-GCM ciphertext of `{"superuser": .., "replication": ..}`.
    pub secrets_enc: String,
    pub synchronous_strict: bool,
    pub maximum_lag_on_failover: i64,
    /// Patroni timing (seconds); checked by `HaTiming::validate` before it is written.
    pub ha_ttl: i32,
    pub ha_loop_wait: i32,
    pub ha_retry_timeout: i32,
    /// Replace a node whose server is gone.
    pub auto_heal: bool,
    /// AES-256-GCM ciphertext of the failover hooks (URLs and their secrets).
    pub hooks_enc: Option<String>,
    /// The primary as Herd last recorded it; a different observed leader is a failover.
    pub primary_node_id: Option<Uuid>,
    /// The newest PostgreSQL timeline Herd has seen in this cluster (0: none yet).
    pub newest_timeline: i64,
    /// The backup repository it was created with (`posix`, `s3`, `none`; `+aes` when its
    /// stanza is encrypted, see `herd_datastores::repo`); None:
    /// created before Herd recorded it (today's `[backups]` choice applies).
    pub backup_repo: Option<String>,
    /// When the node certificates are next due for renewal (see `repo::certificates`);
    /// None: never recorded, due as soon as the cluster is active.
    pub certs_renew_at: Option<DateTimeUtc>,
    pub fault_code: Option<String>,
    pub fault_message: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
