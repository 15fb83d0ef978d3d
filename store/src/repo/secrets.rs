//! The secrets a cluster runs with, decrypted on demand: passwords, the SSH key, hooks.
//! Each ciphertext is bound to its row (the AAD names the table, column and id), so a
//! value copied into another row does not decrypt.

use herd_core::hooks::Hooks;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::entity::{cluster, ssh_key};
use crate::{Store, StoreError};
use sea_orm::EntityTrait;

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

    /// The cluster's hooks, decrypted (empty when none are set).
    pub fn cluster_hooks(&self, c: &cluster::Model) -> Result<Hooks, StoreError> {
        let Some(enc) = &c.hooks_enc else { return Ok(Hooks::default()) };
        let plain = self.key().decrypt_str(enc, &hooks_aad(c.id))?;
        Hooks::from_plaintext(plain.expose_secret()).ok_or(StoreError::Crypto(herd_core::crypto::CryptoError::Decrypt))
    }
}
