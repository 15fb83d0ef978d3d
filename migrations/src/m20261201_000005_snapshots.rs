//! Volume snapshots taken inside an online backup: what a restore needs besides the
//! provider's snapshot (the source's datastore, version and data directory name, the
//! backup label, and the repository holding the WAL to reach consistency), and the
//! task that took or deletes it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000005_snapshots"
    }
}

fn columns() -> Vec<ColumnDef> {
    vec![
        string_len_null("datastore", 64),
        string_len_null("version", 32),
        string_len_null("source_name", 63),
        string_len_null("repo", 16),
        string_len_null("stanza", 100),
        string_len_null("start_lsn", 32),
        string_len_null("stop_lsn", 32),
        text_null("tablespace_map"),
        uuid_null("task_id"),
        text_null("error"),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        for mut col in columns() {
            m.alter_table(Table::alter().table("snapshots").add_column(&mut col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in columns().into_iter().rev() {
            let name = col.get_column_name();
            m.alter_table(Table::alter().table("snapshots").drop_column(Alias::new(name)).to_owned()).await?;
        }
        Ok(())
    }
}
