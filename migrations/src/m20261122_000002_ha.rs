//! High availability and day-2 operations: failover policy, hooks, per-node failover
//! preferences and observed state.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_ha"
    }
}

/// (table, column) pairs, added one per statement: SQLite alters one column at a time.
fn columns() -> Vec<(&'static str, ColumnDef)> {
    vec![
        ("clusters", boolean("synchronous_strict").default(false).to_owned()),
        ("clusters", big_integer("maximum_lag_on_failover").default(1_048_576).to_owned()),
        // Clusters built before this migration run Patroni with ttl 10, loop_wait 2,
        // retry_timeout 4: record what they actually run.
        ("clusters", integer("ha_ttl").default(10).to_owned()),
        ("clusters", integer("ha_loop_wait").default(2).to_owned()),
        ("clusters", integer("ha_retry_timeout").default(4).to_owned()),
        ("clusters", boolean("auto_heal").default(false).to_owned()),
        ("clusters", text_null("hooks_enc")),
        ("clusters", uuid_null("primary_node_id")),
        ("nodes", boolean("no_failover").default(false).to_owned()),
        ("nodes", integer("priority").default(0).to_owned()),
        ("nodes", string_len_null("state", 32)),
        ("nodes", boolean("pending_restart").default(false).to_owned()),
        ("nodes", boolean("desired_running").default(true).to_owned()),
        ("nodes", boolean("joins_existing").default(false).to_owned()),
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
