//! The live streams ask for tasks changed since a moment (`tasks.updated_at`) and for a
//! task's own history events (`task_events.task_id`) several times a second.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000008_task_changes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(Index::create().name("ix_tasks_updated_at").table("tasks").col("updated_at").to_owned()).await?;
        m.create_index(
            Index::create().name("ix_task_events_task_id_id").table("task_events").col("task_id").col("id").to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("ix_task_events_task_id_id").table("task_events").to_owned()).await?;
        m.drop_index(Index::drop().name("ix_tasks_updated_at").table("tasks").to_owned()).await
    }
}
