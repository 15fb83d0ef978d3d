//! What the HA agent reports that Herd must keep: which replica is the synchronous
//! standby (in synchronous mode a cluster is only covered against the primary's loss
//! while one is), and the newest timeline ever seen in a cluster (a forced promotion
//! must never reuse a timeline number).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000004_ha_observed"
    }
}

/// (table, column) pairs, added one per statement: SQLite alters one column at a time.
fn columns() -> Vec<(&'static str, ColumnDef)> {
    vec![
        ("nodes", boolean("sync_standby").default(false).to_owned()),
        ("clusters", big_integer("newest_timeline").default(0).to_owned()),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, mut col) in columns() {
            m.alter_table(Table::alter().table(table).add_column(&mut col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, col) in columns().into_iter().rev() {
            let name = col.get_column_name();
            m.alter_table(Table::alter().table(table).drop_column(Alias::new(name)).to_owned()).await?;
        }
        Ok(())
    }
}
