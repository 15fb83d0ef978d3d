//! A project's quota overrides, one nullable column per limit: NULL means the
//! settings' default applies (so changing a default reaches every project that has
//! not been given its own).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000012_project_quotas"
    }
}

const COLUMNS: [&str; 6] =
    ["quota_clusters", "quota_nodes", "quota_volume_gb", "quota_snapshots", "quota_backups", "quota_keys"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        for c in COLUMNS {
            m.alter_table(Table::alter().table("projects").add_column(big_integer_null(c)).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for c in COLUMNS {
            m.alter_table(Table::alter().table("projects").drop_column(Alias::new(c)).to_owned()).await?;
        }
        Ok(())
    }
}
