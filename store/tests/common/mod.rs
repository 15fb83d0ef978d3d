//! What the store tests share.

use herd_core::names::DnsLabel;
use herd_core::values::AdminPassword;
use herd_store::{HaPolicy, KeyChoice, NewCluster};
use secrecy::SecretString;
use uuid::Uuid;

/// A cluster request with fast HA timing, a generated key and no backups; tests set
/// what they are about with `NewCluster { .., ..new_cluster(..) }`.
pub fn new_cluster(project_id: Uuid, name: &str, node_count: u8) -> NewCluster {
    NewCluster {
        project_id,
        name: DnsLabel::parse(name).unwrap(),
        datastore: "postgresql".into(),
        version: "15".into(),
        flavor: "small".into(),
        provider: "local".into(),
        node_count,
        volume_gb: 1,
        key: KeyChoice::Generate(herd_core::sshkey::generate_ed25519()),
        policy: HaPolicy {
            synchronous: false,
            synchronous_strict: false,
            maximum_lag_on_failover: 1 << 20,
            ttl: 10,
            loop_wait: 1,
            retry_timeout: 4,
        },
        auto_heal: false,
        hooks: Default::default(),
        node_prefs: vec![],
        restore: None,
        parameters: Default::default(),
        admin_password: AdminPassword::parse(SecretString::from("unused-in-this-test")).unwrap(),
        backup_repo: "none".into(),
    }
}
