//! Whether a key's private half was supplied by the caller (who holds it) or generated
//! by Herd (nobody else ever sees it): the local provider's servers log in as root on
//! the Herd machine, so it takes only generated keys from members. NULL: created before
//! Herd recorded it, and treated as supplied.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000010_key_origin"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("ssh_keys").add_column(boolean_null("imported")).to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("ssh_keys").drop_column(Alias::new("imported")).to_owned()).await
    }
}
