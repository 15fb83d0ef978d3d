//! Backup policies: per cluster, cron schedules for full, differential and incremental
//! backups, how many full backups to keep, and when each kind runs next. The next-run
//! times are what the workers' schedulers claim (a conditional UPDATE), so a run is
//! started by exactly one of them. A policy goes with its cluster (foreign key, cascade).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261201_000006_backup_policy"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("backup_policies")
                .col(pk_uuid("cluster_id"))
                .col(uuid("project_id"))
                .col(string_len("full_schedule", 200))
                .col(string_len_null("diff_schedule", 200))
                .col(string_len_null("incr_schedule", 200))
                .col(integer("retention_full"))
                // Null: the schedule never fires again.
                .col(timestamp_with_time_zone_null("next_full_at"))
                .col(timestamp_with_time_zone_null("next_diff_at"))
                .col(timestamp_with_time_zone_null("next_incr_at"))
                // Since when a due run waits for the cluster (busy, not running).
                .col(timestamp_with_time_zone_null("waiting_since"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_backup_policies_cluster_id")
                        .from("backup_policies", "cluster_id")
                        .to("clusters", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("backup_policies").to_owned()).await
    }
}
