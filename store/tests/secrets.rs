//! Secrets written before the master key was split per purpose (`v1:`, AES-GCM under
//! the master key itself) are re-encrypted under the derived at-rest key at start-up,
//! and still open afterwards.

mod common;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use herd_core::crypto::MasterKey;
use herd_core::hooks::{Hook, Hooks};
use herd_core::values::AdminPassword;
use herd_store::{NewCluster, Store};
use sea_orm::{ConnectionTrait, Database, Statement};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// A `v1:` value as the previous release wrote it.
fn v1(master: &[u8; 32], plaintext: &[u8], aad: &str) -> String {
    let nonce: [u8; 12] = rand::random();
    let ct = Aes256Gcm::new(master.into())
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: aad.as_bytes() })
        .unwrap();
    format!("v1:{}", STANDARD.encode([nonce.as_slice(), &ct].concat()))
}

#[tokio::test]
async fn legacy_ciphertexts_are_rewrapped_under_the_derived_key() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("herd.db").display());
    let master: [u8; 32] = rand::random();
    let key = || Arc::new(MasterKey::from_base64(&SecretString::from(STANDARD.encode(master))).unwrap());
    let store = Store::open(&url, key()).await.unwrap();
    store.migrate().await.unwrap();
    store.seed_datastores().await.unwrap();
    let project = store.create_project("p").await.unwrap();
    let hooks = Hooks {
        pre_failover: None,
        post_failover: Some(Hook { url: "https://h.example/x".into(), secret: "hook-secret-long".to_owned().into() }),
    };
    let (view, _) = store
        .create_cluster(NewCluster {
            hooks,
            admin_password: AdminPassword::parse(SecretString::from("the-old-admin-password")).unwrap(),
            ..common::new_cluster(project.id, "old", 1)
        })
        .await
        .unwrap();
    let c = &view.cluster;
    let before = store.cluster_passwords(c).await.unwrap();
    let (_, private_before) = store.cluster_private_key(c).await.unwrap();

    // Rewrite every secret as the previous release stored it.
    let raw = Database::connect(&url).await.unwrap();
    let k = store.key();
    let cols = [
        ("clusters", "admin_password_enc", format!("clusters.admin_password:{}", c.id), c.id),
        ("clusters", "secrets_enc", format!("clusters.secrets:{}", c.id), c.id),
        ("clusters", "hooks_enc", format!("clusters.hooks:{}", c.id), c.id),
        ("ssh_keys", "private_key_enc", format!("ssh_keys.private_key:{}", c.key_id), c.key_id),
    ];
    let read = |table: &'static str, col: &'static str, id: uuid::Uuid| {
        let raw = &raw;
        async move {
            let sql = format!("SELECT {col} AS v FROM {table} WHERE id = ?");
            let row = raw
                .query_one_raw(Statement::from_sql_and_values(raw.get_database_backend(), sql, [id.into()]))
                .await
                .unwrap()
                .unwrap();
            row.try_get::<String>("", "v").unwrap()
        }
    };
    for (table, col, aad, id) in &cols {
        let now = read(table, col, *id).await;
        assert!(now.starts_with("v2:"), "{col}: {now}");
        let plain = k.decrypt(&now, aad).unwrap();
        let old = v1(&master, plain.expose_secret(), aad);
        let sql = format!("UPDATE {table} SET {col} = ? WHERE id = ?");
        raw.execute_raw(Statement::from_sql_and_values(raw.get_database_backend(), sql, [old.into(), (*id).into()]))
            .await
            .unwrap();
    }

    // A restart: the next start rewrites them, once.
    let store = Store::open(&url, key()).await.unwrap();
    assert_eq!(store.rewrap_legacy_secrets().await.unwrap(), 4);
    assert_eq!(store.rewrap_legacy_secrets().await.unwrap(), 0);
    for (table, col, _, id) in &cols {
        let now = read(table, col, *id).await;
        assert!(now.starts_with("v2:"), "{col} still {now}");
    }
    let c = store.cluster_by_id(c.id).await.unwrap();
    let after = store.cluster_passwords(&c).await.unwrap();
    assert_eq!(after.admin.expose_secret(), "the-old-admin-password");
    assert_eq!(after.superuser.expose_secret(), before.superuser.expose_secret());
    assert_eq!(after.replication.expose_secret(), before.replication.expose_secret());
    let h = store.cluster_hooks(&c).unwrap().post_failover.unwrap();
    assert_eq!((h.url.as_str(), h.secret.expose_secret()), ("https://h.example/x", "hook-secret-long"));
    let (_, private_after) = store.cluster_private_key(&c).await.unwrap();
    assert_eq!(private_after.expose_secret(), private_before.expose_secret());

    // A `v1:` value under another master key is an error, not a silent skip.
    let sql = "UPDATE clusters SET admin_password_enc = ? WHERE id = ?";
    let alien = v1(&rand::random(), b"x", &format!("clusters.admin_password:{}", c.id));
    raw.execute_raw(Statement::from_sql_and_values(raw.get_database_backend(), sql, [alien.into(), c.id.into()]))
        .await
        .unwrap();
    assert!(store.rewrap_legacy_secrets().await.is_err());
}
