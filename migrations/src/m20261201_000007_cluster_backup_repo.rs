//! The backup repository a cluster was created with (`posix`, `s3` or `none`): its
//! archive_command points there, so its backups, policies and snapshots must too, even
//! after `[backups]` changes. NULL: created before Herd recorded it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000007_cluster_backup_repo"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("clusters").add_column(string_len_null("backup_repo", 16)).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("clusters").drop_column(Alias::new("backup_repo")).to_owned()).await
    }
}
