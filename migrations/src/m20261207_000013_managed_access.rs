//! Managed databases and users: each cluster's desired roles and databases, applied on
//! its primary by `sync_access` tasks. A user's password is encrypted like the admin's;
//! its predefined roles and per-database grants are JSON. Rows go with their cluster.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000013_managed_access"
    }
}

fn cluster_fk(table: &'static str) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(format!("fk_{table}_cluster_id"))
        .from(table, "cluster_id")
        .to("clusters", "id")
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

fn unique_name(table: &'static str) -> IndexCreateStatement {
    Index::create()
        .name(format!("ix_{table}_cluster_id_name"))
        .table(table)
        .col("cluster_id")
        .col("name")
        .unique()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("cluster_databases")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid("cluster_id"))
                .col(string_len("name", 63))
                // Null: the cluster's admin role owns it.
                .col(string_len_null("owner", 63))
                .col(string_len("encoding", 32))
                .col(string_len_null("locale", 64))
                .col(string_len("status", 32))
                .col(boolean("force_drop").default(false))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut cluster_fk("cluster_databases"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_name("cluster_databases")).await?;
        m.create_table(
            Table::create()
                .table("cluster_users")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid("cluster_id"))
                .col(string_len("name", 63))
                .col(text("password_enc"))
                .col(integer_null("connection_limit"))
                .col(json("roles"))
                .col(json("grants"))
                .col(string_len("status", 32))
                .col(text_null("error"))
                .col(timestamp_with_time_zone("password_set_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .foreign_key(&mut cluster_fk("cluster_users"))
                .to_owned(),
        )
        .await?;
        m.create_index(unique_name("cluster_users")).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table("cluster_users").to_owned()).await?;
        m.drop_table(Table::drop().table("cluster_databases").to_owned()).await
    }
}
