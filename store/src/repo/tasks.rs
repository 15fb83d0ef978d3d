use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::entity::task;
use crate::{Store, StoreError};

impl Store {
    pub async fn get_task(&self, project_id: Uuid, id: Uuid) -> Result<task::Model, StoreError> {
        task::Entity::find_by_id(id)
            .filter(task::Column::ProjectId.eq(project_id))
            .one(&self.db)
            .await?
            .ok_or(StoreError::NotFound)
    }
}
