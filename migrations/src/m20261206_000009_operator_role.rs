//! The admin role was global. It splits in two: `operator` (global: projects, every
//! project's tokens, datastore versions) and `admin` (its own project's tokens only).
//! Every token that was an admin keeps what it could do: it becomes an operator.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000009_operator_role"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let q = Query::update()
            .table("api_tokens")
            .value("role", "operator")
            .and_where(Expr::col("role").eq("admin"))
            .to_owned();
        m.exec_stmt(q).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // A project admin had no place before: it falls back to member, never gains.
        let demote = Query::update()
            .table("api_tokens")
            .value("role", "member")
            .and_where(Expr::col("role").eq("admin"))
            .to_owned();
        m.exec_stmt(demote).await?;
        let q = Query::update()
            .table("api_tokens")
            .value("role", "admin")
            .and_where(Expr::col("role").eq("operator"))
            .to_owned();
        m.exec_stmt(q).await
    }
}
