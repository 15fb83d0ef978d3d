//! Schema migrations. A shipped migration is never edited: changes come as new files.

pub use sea_orm_migration::prelude::*;

mod m20261122_000001_initial;
mod m20261122_000002_ha;
mod m20261122_000003_backups;
mod m20261201_000004_ha_observed;
mod m20261201_000005_snapshots;
mod m20261201_000006_backup_policy;
mod m20261201_000007_cluster_backup_repo;
mod m20261204_000008_task_changes;
mod m20261206_000009_operator_role;
mod m20261206_000010_key_origin;
mod m20261207_000011_cert_renewal;
mod m20261207_000012_project_quotas;
mod m20261207_000013_managed_access;

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_ha::Migration),
            Box::new(m20261122_000003_backups::Migration),
            Box::new(m20261201_000004_ha_observed::Migration),
            Box::new(m20261201_000005_snapshots::Migration),
            Box::new(m20261201_000006_backup_policy::Migration),
            Box::new(m20261201_000007_cluster_backup_repo::Migration),
            Box::new(m20261204_000008_task_changes::Migration),
            Box::new(m20261206_000009_operator_role::Migration),
            Box::new(m20261206_000010_key_origin::Migration),
            Box::new(m20261207_000011_cert_renewal::Migration),
            Box::new(m20261207_000012_project_quotas::Migration),
            Box::new(m20261207_000013_managed_access::Migration),
        ]
    }
}
