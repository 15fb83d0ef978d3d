use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ssh_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub name: String,
    pub algorithm: String,
    pub public_key: String,
    pub fingerprint: String,
    /// AES-256-GCM ciphertext of the OpenSSH private key (see herd_core::crypto).
    pub private_key_enc: String,
    pub generated_for_cluster: Option<Uuid>,
    /// The caller supplied the private key (true) or Herd generated it (false); None:
    /// created before Herd recorded it.
    pub imported: Option<bool>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
