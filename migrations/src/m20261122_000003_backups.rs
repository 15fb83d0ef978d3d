//! Backups outlive their cluster: each row records which repository and stanza hold it,
//! so it can be listed, restored and expired after the cluster is gone.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000003_backups"
    }
}

fn columns() -> Vec<ColumnDef> {
    vec![
        string_len("repo", 16).default("posix").to_owned(),
        string_len_null("stanza", 100),
        uuid_null("task_id"),
        text_null("error"),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for mut col in columns() {
            m.alter_table(Table::alter().table("backups").add_column(&mut col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in columns().into_iter().rev() {
            let name = col.get_column_name();
            m.alter_table(Table::alter().table("backups").drop_column(Alias::new(name)).to_owned()).await?;
        }
        Ok(())
    }
}
