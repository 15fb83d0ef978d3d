use std::collections::BTreeMap;

use sea_orm::{ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set};

use super::{Page, new_id, now, page_by_id};
use crate::Conflict;
use crate::entity::{datastore, datastore_version};
use crate::{Store, StoreError};
use uuid::Uuid;

/// A datastore version as the domain sees it (JSON columns decoded).
#[derive(Debug, Clone)]
pub struct VersionSpec {
    pub version: String,
    pub active: bool,
    pub packages: Vec<String>,
    pub images: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct VersionPatch {
    pub active: Option<bool>,
    pub packages: Option<Vec<String>>,
    pub images: Option<BTreeMap<String, String>>,
}

impl VersionSpec {
    /// A row whose lists do not parse is an error, not an empty list: a version that
    /// silently installed no packages would fail every build far from the cause.
    fn from_model(m: &datastore_version::Model) -> Result<Self, StoreError> {
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::from(DbErr::Json(format!("datastore version {}: {what}: {e}", m.version)))
        };
        Ok(Self {
            version: m.version.clone(),
            active: m.active,
            packages: serde_json::from_value(m.packages.clone()).map_err(|e| corrupt("packages", e))?,
            images: serde_json::from_value(m.images.clone()).map_err(|e| corrupt("images", e))?,
        })
    }
}

/// What a fresh install offers: PostgreSQL 15 with Patroni, etcd and pgBackRest.
pub fn default_postgresql_15() -> VersionSpec {
    VersionSpec {
        version: "15".into(),
        active: true,
        packages: ["postgresql-15", "patroni", "etcd-server", "pgbackrest"].map(String::from).to_vec(),
        images: BTreeMap::new(),
    }
}

impl Store {
    /// Seeds the built-in datastore on an empty catalogue; later admin changes stick.
    pub async fn seed_datastores(&self) -> Result<(), StoreError> {
        if datastore::Entity::find().one(&self.db).await?.is_some() {
            return Ok(());
        }
        match self.create_datastore("postgresql", "postgresql").await {
            Ok(_) => {}
            // Two processes starting at once: the other one seeded it.
            Err(StoreError::Conflict { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        match self.add_version("postgresql", &default_postgresql_15()).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The catalogue, oldest datastore first, a page at a time, each with every version.
    pub async fn list_datastores(
        &self,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<(datastore::Model, Vec<VersionSpec>)>, StoreError> {
        let page =
            page_by_id(&self.db, datastore::Entity::find(), datastore::Column::Id, |d| d.id, limit, cursor, false)
                .await?;
        let versions = datastore_version::Entity::find()
            .filter(datastore_version::Column::DatastoreId.is_in(page.items.iter().map(|d| d.id)))
            .order_by_asc(datastore_version::Column::Version)
            .all(&self.db)
            .await?;
        let items = page
            .items
            .into_iter()
            .map(|d| {
                let vs: Result<Vec<_>, _> =
                    versions.iter().filter(|v| v.datastore_id == d.id).map(VersionSpec::from_model).collect();
                vs.map(|vs| (d, vs))
            })
            .collect::<Result<_, _>>()?;
        Ok(Page { items, next_cursor: page.next_cursor })
    }

    pub async fn get_datastore(&self, name: &str) -> Result<datastore::Model, StoreError> {
        datastore::Entity::find()
            .filter(datastore::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn create_datastore(&self, name: &str, manager: &str) -> Result<datastore::Model, StoreError> {
        datastore::ActiveModel {
            id: Set(new_id()),
            name: Set(name.to_owned()),
            manager: Set(manager.to_owned()),
            created_at: Set(now()),
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::unique(e, Conflict::DatastoreExists, format!("datastore '{name}' already exists")))
    }

    pub async fn add_version(&self, datastore: &str, spec: &VersionSpec) -> Result<VersionSpec, StoreError> {
        let ds = self.get_datastore(datastore).await?;
        let m = datastore_version::ActiveModel {
            id: Set(new_id()),
            datastore_id: Set(ds.id),
            version: Set(spec.version.clone()),
            active: Set(spec.active),
            packages: Set(serde_json::json!(spec.packages)),
            images: Set(serde_json::json!(spec.images)),
            created_at: Set(now()),
            updated_at: Set(now()),
        }
        .insert(&self.db)
        .await
        .map_err(|e| {
            StoreError::unique(
                e,
                Conflict::VersionExists,
                format!("{datastore} version '{}' already exists", spec.version),
            )
        })?;
        VersionSpec::from_model(&m)
    }

    async fn version_model(&self, datastore: &str, version: &str) -> Result<datastore_version::Model, StoreError> {
        let ds = self.get_datastore(datastore).await?;
        datastore_version::Entity::find()
            .filter(datastore_version::Column::DatastoreId.eq(ds.id))
            .filter(datastore_version::Column::Version.eq(version))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn get_version(&self, datastore: &str, version: &str) -> Result<VersionSpec, StoreError> {
        VersionSpec::from_model(&self.version_model(datastore, version).await?)
    }

    pub async fn update_version(
        &self,
        datastore: &str,
        version: &str,
        patch: VersionPatch,
    ) -> Result<VersionSpec, StoreError> {
        let mut am = self.version_model(datastore, version).await?.into_active_model();
        if let Some(a) = patch.active {
            am.active = Set(a);
        }
        if let Some(p) = patch.packages {
            am.packages = Set(serde_json::json!(p));
        }
        if let Some(i) = patch.images {
            am.images = Set(serde_json::json!(i));
        }
        am.updated_at = Set(now());
        VersionSpec::from_model(&am.update(&self.db).await?)
    }
}
