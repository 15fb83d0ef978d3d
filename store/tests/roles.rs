//! The admin role split in two (m20261206_000009): every token that was an admin keeps
//! its global powers as an operator.

use herd_core::crypto::{MasterKey, hash_token};
use herd_core::status::TokenRole;
use herd_migrations::{Migrator, MigratorTrait};
use herd_store::Store;
use sea_orm::{ConnectionTrait, Database, Statement};
use std::sync::Arc;
use uuid::Uuid;

#[tokio::test]
async fn admin_tokens_from_before_become_operators() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("herd.db").display());
    let db = Database::connect(&url).await.unwrap();
    // The schema as the previous release left it.
    Migrator::up(&db, Some(8)).await.unwrap();
    let (project, now) = (Uuid::new_v4(), chrono::Utc::now());
    let backend = db.get_database_backend();
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        "INSERT INTO projects (id, name, created_at) VALUES (?, ?, ?)",
        [project.into(), "old".into(), now.into()],
    ))
    .await
    .unwrap();
    for (name, role) in [("was-admin", "admin"), ("was-member", "member")] {
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            "INSERT INTO api_tokens (id, project_id, name, role, token_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [Uuid::new_v4().into(), project.into(), name.into(), role.into(), hash_token(name).into(), now.into()],
        ))
        .await
        .unwrap();
    }
    let store = Store::open(&url, Arc::new(MasterKey::generate())).await.unwrap();
    store.migrate().await.unwrap();
    let role = |t: &'static str| {
        let store = store.clone();
        async move { store.authenticate(t).await.unwrap().unwrap().0.role }
    };
    assert_eq!(role("was-admin").await, TokenRole::Operator);
    assert_eq!(role("was-member").await, TokenRole::Member);
}
