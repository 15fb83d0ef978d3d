//! When a cluster's node certificates are next due for renewal: the end of the window
//! of the certificates last pushed to every member (or, while a renewal waits to be
//! retried, when it is tried again). NULL: never recorded (a cluster from before TLS,
//! or one still being built); an active cluster with NULL is due at once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_000011_cert_renewal"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table("clusters").add_column(timestamp_with_time_zone_null("certs_renew_at")).to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("clusters").drop_column(Alias::new("certs_renew_at")).to_owned()).await
    }
}
