use herd_core::quota::Quota;
use herd_core::sshkey::KeyMaterial;
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use secrecy::SecretString;
use uuid::Uuid;

use super::{Page, find_in_project, in_project, page_by_id};
use super::{new_id, now};
use crate::Conflict;
use crate::entity::{cluster, ssh_key};
use crate::{Store, StoreError};

pub(crate) fn private_key_aad(id: Uuid) -> String {
    format!("ssh_keys.private_key:{id}")
}

impl Store {
    pub async fn create_key(
        &self,
        project_id: Uuid,
        name: &str,
        material: &KeyMaterial,
        generated_for: Option<Uuid>,
    ) -> Result<ssh_key::Model, StoreError> {
        let tx = self.write_tx().await?;
        if generated_for.is_none() {
            self.check_quotas(&tx, project_id, &[(Quota::Keys, 1)]).await?;
        }
        let k = self.insert_key(&tx, project_id, name, material, generated_for).await?;
        tx.commit().await?;
        Ok(k)
    }

    pub(crate) async fn insert_key<C: ConnectionTrait>(
        &self,
        conn: &C,
        project_id: Uuid,
        name: &str,
        material: &KeyMaterial,
        generated_for: Option<Uuid>,
    ) -> Result<ssh_key::Model, StoreError> {
        let id = new_id();
        ssh_key::ActiveModel {
            id: Set(id),
            project_id: Set(project_id),
            name: Set(name.to_owned()),
            algorithm: Set(material.algorithm.clone()),
            public_key: Set(material.public_key.clone()),
            fingerprint: Set(material.fingerprint.clone()),
            private_key_enc: Set(self.key().encrypt_str(&material.private_openssh, &private_key_aad(id))),
            generated_for_cluster: Set(generated_for),
            imported: Set(Some(material.imported)),
            created_at: Set(now()),
        }
        .insert(conn)
        .await
        .map_err(|e| {
            StoreError::unique(e, Conflict::KeyExists, format!("a key named '{name}' already exists in this project"))
        })
    }

    /// The project's keys, oldest first, a page at a time.
    pub async fn list_keys(
        &self,
        project_id: Uuid,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<ssh_key::Model>, StoreError> {
        let q = in_project::<ssh_key::Entity>(project_id);
        page_by_id(&self.db, q, ssh_key::Column::Id, |k| k.id, limit, cursor, false).await
    }

    pub async fn get_key(&self, project_id: Uuid, id: Uuid) -> Result<ssh_key::Model, StoreError> {
        find_in_project::<ssh_key::Entity, _>(&self.db, project_id, id).await
    }

    /// The decrypted private key, for the worker's SSH sessions only.
    pub async fn key_private(&self, key: &ssh_key::Model) -> Result<SecretString, StoreError> {
        Ok(self.key().decrypt_str(&key.private_key_enc, &private_key_aad(key.id))?)
    }

    pub async fn delete_key(&self, project_id: Uuid, id: Uuid) -> Result<(), StoreError> {
        let tx = self.write_tx().await?;
        let key = find_in_project::<ssh_key::Entity, _>(&tx, project_id, id).await?;
        let users = cluster::Entity::find().filter(cluster::Column::KeyId.eq(key.id)).count(&tx).await?;
        if users > 0 {
            return Err(StoreError::conflict(
                Conflict::KeyInUse,
                format!("key '{}' is used by {users} cluster(s); delete them first", key.name),
            ));
        }
        ssh_key::Entity::delete_by_id(key.id).exec(&tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
