//! The datastore catalogue: a version row whose JSON lists do not parse is reported,
//! never read as an empty package list (which would make every build of that version
//! install nothing and fail far from the cause).

use std::sync::Arc;

use herd_core::crypto::MasterKey;
use herd_store::{Store, StoreError};
use sea_orm::{ConnectionTrait, Database};

#[tokio::test]
async fn a_corrupt_version_row_is_an_error_not_an_empty_list() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("herd.db").display());
    let store = Store::open(&url, Arc::new(MasterKey::generate())).await.unwrap();
    store.migrate().await.unwrap();
    store.seed_datastores().await.unwrap();
    let good = store.get_version("postgresql", "15").await.unwrap();
    assert!(good.packages.iter().any(|p| p == "postgresql-15"), "seeded: {:?}", good.packages);

    // What a hand edit or a bad migration could leave behind.
    let raw = Database::connect(&url).await.unwrap();
    raw.execute_unprepared(r#"UPDATE datastore_versions SET packages = '{"not": "a list"}' WHERE version = '15'"#)
        .await
        .unwrap();

    for (what, result) in [
        ("get_version", store.get_version("postgresql", "15").await.map(drop)),
        ("list_datastores", store.list_datastores(50, None).await.map(drop)),
    ] {
        match result {
            Err(StoreError::Db(e)) => {
                let msg = e.to_string();
                assert!(msg.contains("datastore version 15: packages"), "{what}: {msg}");
            }
            other => panic!("{what}: expected a database error, got {other:?}"),
        }
    }
}
