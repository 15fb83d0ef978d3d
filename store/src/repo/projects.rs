use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::{Page, new_id, now, page_by_id};
use crate::Conflict;
use crate::entity::project;
use crate::{Store, StoreError};

/// The project the bootstrap admin token belongs to.
pub const ADMIN_PROJECT: &str = "admin";

impl Store {
    pub async fn create_project(&self, name: &str) -> Result<project::Model, StoreError> {
        project::ActiveModel {
            id: Set(new_id()),
            name: Set(name.to_owned()),
            created_at: Set(now()),
            ..Default::default()
        }
        .insert(&self.db)
        .await
        .map_err(|e| StoreError::unique(e, Conflict::ProjectExists, format!("a project named '{name}' already exists")))
    }

    /// Every project, oldest first, a page at a time (operators).
    pub async fn list_projects(&self, limit: u64, cursor: Option<Uuid>) -> Result<Page<project::Model>, StoreError> {
        page_by_id(&self.db, project::Entity::find(), project::Column::Id, |p| p.id, limit, cursor, false).await
    }

    pub async fn get_project(&self, id: Uuid) -> Result<project::Model, StoreError> {
        project::Entity::find_by_id(id).one(&self.db).await?.ok_or(StoreError::NotFound)
    }

    pub async fn find_project_by_name(&self, name: &str) -> Result<Option<project::Model>, StoreError> {
        Ok(project::Entity::find().filter(project::Column::Name.eq(name)).one(&self.db).await?)
    }
}
