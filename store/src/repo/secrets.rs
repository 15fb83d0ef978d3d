//! The secrets a cluster runs with, decrypted on demand: passwords, the SSH key, hooks.
//! Each ciphertext is bound to its row (the AAD names the table, column and id), so a
//! value copied into another row does not decrypt.

use herd_core::hooks::Hooks;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::entity::{cluster, ssh_key};
use crate::{Store, StoreError};
use herd_core::crypto::MasterKey;
use sea_orm::{ActiveModelTrait, ColumnTrait, Condition, EntityTrait, IntoActiveModel, QueryFilter, Set};

pub(crate) fn admin_password_aad(id: Uuid) -> String {
    format!("clusters.admin_password:{id}")
}

pub(crate) fn secrets_aad(id: Uuid) -> String {
    format!("clusters.secrets:{id}")
}

pub(crate) fn hooks_aad(id: Uuid) -> String {
    format!("clusters.hooks:{id}")
}

/// The passwords a cluster runs with, decrypted for the worker.
pub struct ClusterPasswords {
    pub admin: SecretString,
    pub superuser: SecretString,
    pub replication: SecretString,
}

impl Store {
    pub async fn cluster_passwords(&self, c: &cluster::Model) -> Result<ClusterPasswords, StoreError> {
        let admin = self.key().decrypt_str(&c.admin_password_enc, &admin_password_aad(c.id))?;
        let raw = self.key().decrypt(&c.secrets_enc, &secrets_aad(c.id))?;
        let v: serde_json::Value =
            serde_json::from_slice(raw.expose_secret()).map_err(|_| herd_core::crypto::CryptoError::Decrypt)?;
        let get = |k: &str| -> Result<SecretString, StoreError> {
            v[k].as_str()
                .map(|s| SecretString::from(s.to_owned()))
                .ok_or(StoreError::Crypto(herd_core::crypto::CryptoError::Decrypt))
        };
        Ok(ClusterPasswords { admin, superuser: get("superuser")?, replication: get("replication")? })
    }

    /// The cluster's SSH private key, decrypted.
    pub async fn cluster_private_key(&self, c: &cluster::Model) -> Result<(ssh_key::Model, SecretString), StoreError> {
        let k = ssh_key::Entity::find_by_id(c.key_id).one(&self.db).await?.ok_or(StoreError::NotFound)?;
        let pk = self.key_private(&k).await?;
        Ok((k, pk))
    }

    /// Re-encrypts every secret still written under the master key itself (`v1:`)
    /// with the at-rest key derived from it; returns how many values it rewrote. Run
    /// at start-up, so the master key serves as a cipher key only for the duration
    /// of this pass. Idempotent; a value that does not decrypt is an error (the wrong
    /// master key), and nothing after it is touched.
    pub async fn rewrap_legacy_secrets(&self) -> Result<u64, StoreError> {
        let key = self.key();
        let rewrap = |stored: &str, aad: &str| -> Result<Option<String>, StoreError> {
            if !MasterKey::is_legacy(stored) {
                return Ok(None);
            }
            Ok(Some(key.encrypt(key.decrypt(stored, aad)?.expose_secret(), aad)))
        };
        let mut n = 0;
        let legacy = |c: cluster::Column| c.starts_with("v1:");
        let clusters = cluster::Entity::find()
            .filter(
                Condition::any()
                    .add(legacy(cluster::Column::AdminPasswordEnc))
                    .add(legacy(cluster::Column::SecretsEnc))
                    .add(legacy(cluster::Column::HooksEnc)),
            )
            .all(&self.db)
            .await?;
        for c in clusters {
            let id = c.id;
            let mut am = c.clone().into_active_model();
            if let Some(v) = rewrap(&c.admin_password_enc, &admin_password_aad(id))? {
                am.admin_password_enc = Set(v);
                n += 1;
            }
            if let Some(v) = rewrap(&c.secrets_enc, &secrets_aad(id))? {
                am.secrets_enc = Set(v);
                n += 1;
            }
            if let Some(h) = &c.hooks_enc
                && let Some(v) = rewrap(h, &hooks_aad(id))?
            {
                am.hooks_enc = Set(Some(v));
                n += 1;
            }
            am.update(&self.db).await?;
        }
        let keys =
            ssh_key::Entity::find().filter(ssh_key::Column::PrivateKeyEnc.starts_with("v1:")).all(&self.db).await?;
        for k in keys {
            let id = k.id;
            let mut am = k.clone().into_active_model();
            if let Some(v) = rewrap(&k.private_key_enc, &super::keys::private_key_aad(id))? {
                am.private_key_enc = Set(v);
                am.update(&self.db).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// The cluster's hooks, decrypted (empty when none are set).
    pub fn cluster_hooks(&self, c: &cluster::Model) -> Result<Hooks, StoreError> {
        let Some(enc) = &c.hooks_enc else { return Ok(Hooks::default()) };
        let plain = self.key().decrypt_str(enc, &hooks_aad(c.id))?;
        Hooks::from_plaintext(plain.expose_secret()).ok_or(StoreError::Crypto(herd_core::crypto::CryptoError::Decrypt))
    }
}
