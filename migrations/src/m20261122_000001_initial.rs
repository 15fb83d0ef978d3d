//! The whole data model of the design (§5) in one first migration.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_initial"
    }
}

fn ts(c: &'static str) -> ColumnDef {
    timestamp_with_time_zone(c)
}
fn ts_null(c: &'static str) -> ColumnDef {
    timestamp_with_time_zone_null(c)
}
fn status(c: &'static str) -> ColumnDef {
    string_len(c, 32)
}
fn fk(
    table: &'static str,
    col: &'static str,
    to: &'static str,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create().name(format!("fk_{table}_{col}")).from(table, col).to(to, "id").on_delete(on_delete).to_owned()
}
fn index(table: &'static str, cols: &[&'static str], unique: bool) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(format!("ix_{table}_{}", cols.join("_"))).table(table);
    for c in cols {
        i.col(*c);
    }
    if unique {
        i.unique();
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use ForeignKeyAction::{Cascade, Restrict};

        m.create_table(
            Table::create()
                .table("projects")
                .col(pk_uuid("id"))
                .col(string_len_uniq("name", 100))
                .col(ts("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("api_tokens")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(string_len("name", 100))
                .col(status("role"))
                .col(string_len_uniq("token_hash", 64))
                .col(ts("created_at"))
                .col(ts_null("last_used_at"))
                .col(ts_null("revoked_at"))
                .foreign_key(&mut fk("api_tokens", "project_id", "projects", Cascade))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("datastores")
                .col(pk_uuid("id"))
                .col(string_len_uniq("name", 32))
                .col(string_len("manager", 32))
                .col(ts("created_at"))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table("datastore_versions")
                .col(pk_uuid("id"))
                .col(uuid("datastore_id"))
                .col(string_len("version", 32))
                .col(boolean("active"))
                .col(json("packages"))
                .col(json("images"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("datastore_versions", "datastore_id", "datastores", Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("datastore_versions", &["datastore_id", "version"], true)).await?;

        m.create_table(
            Table::create()
                .table("ssh_keys")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(string_len("name", 100))
                .col(string_len("algorithm", 64))
                .col(text("public_key"))
                .col(string_len("fingerprint", 100))
                .col(text("private_key_enc"))
                .col(uuid_null("generated_for_cluster"))
                .col(ts("created_at"))
                .foreign_key(&mut fk("ssh_keys", "project_id", "projects", Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("ssh_keys", &["project_id", "name"], true)).await?;

        m.create_table(
            Table::create()
                .table("clusters")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(string_len("name", 63))
                .col(string_len("datastore", 32))
                .col(string_len("version", 32))
                .col(string_len("flavor", 64))
                .col(string_len("provider", 32))
                .col(integer("node_count"))
                .col(integer("volume_gb"))
                .col(uuid("key_id"))
                .col(boolean("synchronous"))
                .col(json("parameters"))
                .col(status("status"))
                .col(string_len("admin_user", 63))
                .col(text("admin_password_enc"))
                // Internal passwords (superuser, replication) as encrypted JSON.
                .col(text("secrets_enc"))
                .col(string_len_null("fault_code", 64))
                .col(text_null("fault_message"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("clusters", "project_id", "projects", Cascade))
                .foreign_key(&mut fk("clusters", "key_id", "ssh_keys", Restrict))
                .to_owned(),
        )
        .await?;
        m.create_index(index("clusters", &["project_id", "name"], true)).await?;
        m.create_index(index("clusters", &["status"], false)).await?;

        m.create_table(
            Table::create()
                .table("nodes")
                .col(pk_uuid("id"))
                .col(uuid("cluster_id"))
                .col(string_len("name", 100))
                .col(integer("ordinal"))
                .col(status("role"))
                .col(status("status"))
                .col(string_len_null("server_ref", 255))
                .col(uuid_null("volume_id"))
                .col(string_len_null("address", 64))
                .col(text_null("host_key"))
                .col(big_integer_null("lag_bytes"))
                .col(big_integer_null("timeline"))
                .col(ts_null("last_seen_at"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .foreign_key(&mut fk("nodes", "cluster_id", "clusters", Cascade))
                .to_owned(),
        )
        .await?;
        m.create_index(index("nodes", &["cluster_id", "ordinal"], true)).await?;

        // Volumes, snapshots and backups carry no foreign key to clusters: they can
        // outlive the cluster they came from (restore after delete).
        m.create_table(
            Table::create()
                .table("volumes")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid_null("cluster_id"))
                .col(uuid_null("node_id"))
                .col(string_len("provider", 32))
                .col(string_len_null("provider_ref", 255))
                .col(integer("size_gb"))
                .col(status("status"))
                .col(string_len_null("attachment", 255))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("volumes", &["cluster_id"], false)).await?;

        m.create_table(
            Table::create()
                .table("snapshots")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid_null("cluster_id"))
                .col(uuid_null("volume_id"))
                .col(string_len("provider", 32))
                .col(string_len_null("provider_ref", 255))
                .col(integer("size_gb"))
                .col(status("status"))
                .col(text_null("backup_label"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("snapshots", &["cluster_id"], false)).await?;

        m.create_table(
            Table::create()
                .table("backups")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid("cluster_id"))
                .col(string_len("backup_type", 16))
                .col(status("status"))
                .col(string_len_null("label", 100))
                .col(big_integer_null("size_bytes"))
                .col(big_integer_null("repo_size_bytes"))
                .col(string_len_null("wal_start", 64))
                .col(string_len_null("wal_stop", 64))
                .col(ts_null("started_at"))
                .col(ts_null("finished_at"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("backups", &["cluster_id"], false)).await?;

        // Tasks outlive their cluster too: a finished delete task stays queryable.
        m.create_table(
            Table::create()
                .table("tasks")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid_null("cluster_id"))
                .col(string_len("kind", 32))
                .col(status("status"))
                .col(string_len_null("step", 64))
                .col(integer("progress"))
                .col(string_len_null("error_code", 64))
                .col(text_null("error_message"))
                .col(integer("attempts"))
                .col(string_len_null("worker", 255))
                .col(ts_null("heartbeat_at"))
                .col(json("payload"))
                .col(ts("created_at"))
                .col(ts("updated_at"))
                .col(ts_null("started_at"))
                .col(ts_null("finished_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("tasks", &["cluster_id", "status"], false)).await?;
        m.create_index(index("tasks", &["status"], false)).await?;

        m.create_table(
            Table::create()
                .table("task_events")
                .col(pk_uuid("id"))
                .col(uuid("project_id"))
                .col(uuid("cluster_id"))
                .col(uuid_null("task_id"))
                .col(string_len("level", 16))
                .col(string_len_null("step", 64))
                .col(text("message"))
                .col(ts("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(index("task_events", &["cluster_id", "id"], false)).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "task_events",
            "tasks",
            "backups",
            "snapshots",
            "volumes",
            "nodes",
            "clusters",
            "ssh_keys",
            "datastore_versions",
            "datastores",
            "api_tokens",
            "projects",
        ] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
