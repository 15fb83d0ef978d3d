use herd_core::crypto::{generate_token, hash_token};
use herd_core::status::TokenRole;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::projects::ADMIN_PROJECT;
use super::{Page, find_in_project, in_project, page_by_id};
use super::{new_id, now};
use crate::Conflict;
use crate::entity::{api_token, project};
use crate::{Store, StoreError};

/// Name of the token row that mirrors `HERD_ADMIN_TOKEN`.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

impl Store {
    /// Creates a token and returns it in clear text: the only time it exists outside
    /// the caller's hands. Only its SHA-256 is stored.
    pub async fn create_token(
        &self,
        project_id: Uuid,
        name: &str,
        role: TokenRole,
    ) -> Result<(api_token::Model, SecretString), StoreError> {
        self.get_project(project_id).await?;
        let token = generate_token();
        let row = self.insert_token(project_id, name, role, &token).await?;
        Ok((row, token))
    }

    async fn insert_token(
        &self,
        project_id: Uuid,
        name: &str,
        role: TokenRole,
        token: &SecretString,
    ) -> Result<api_token::Model, StoreError> {
        Ok(api_token::ActiveModel {
            id: Set(new_id()),
            project_id: Set(project_id),
            name: Set(name.to_owned()),
            role: Set(role),
            token_hash: Set(hash_token(token.expose_secret())),
            created_at: Set(now()),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(&self.db)
        .await?)
    }

    /// Makes `token` the bootstrap admin token of the admin project, replacing a
    /// previous bootstrap token (rotation by changing `HERD_ADMIN_TOKEN`).
    pub async fn ensure_admin_token(&self, token: &SecretString) -> Result<api_token::Model, StoreError> {
        let project = match self.find_project_by_name(ADMIN_PROJECT).await? {
            Some(p) => p,
            None => match self.create_project(ADMIN_PROJECT).await {
                Ok(p) => p,
                // Another process bootstrapped concurrently.
                Err(StoreError::Conflict { .. }) => {
                    self.find_project_by_name(ADMIN_PROJECT).await?.ok_or(StoreError::NotFound)?
                }
                Err(e) => return Err(e),
            },
        };
        let hash = hash_token(token.expose_secret());
        let existing = in_project::<api_token::Entity>(project.id)
            .filter(api_token::Column::Name.eq(BOOTSTRAP_TOKEN_NAME))
            .all(&self.db)
            .await?;
        if let Some(t) = existing.iter().find(|t| t.token_hash == hash && t.revoked_at.is_none()) {
            return Ok(t.clone());
        }
        for old in existing.into_iter().filter(|t| t.revoked_at.is_none()) {
            let mut am = old.into_active_model();
            am.revoked_at = Set(Some(now()));
            am.update(&self.db).await?;
        }
        match self.insert_token(project.id, BOOTSTRAP_TOKEN_NAME, TokenRole::Operator, token).await {
            Err(StoreError::Db(e)) => Err(StoreError::unique(e.0, Conflict::TokenExists, "token already registered")),
            other => other,
        }
    }

    /// Resolves a presented bearer token to its live row and project.
    pub async fn authenticate(
        &self,
        presented: &str,
    ) -> Result<Option<(api_token::Model, project::Model)>, StoreError> {
        let found = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(hash_token(presented)))
            .filter(api_token::Column::RevokedAt.is_null())
            .one(&self.db)
            .await?;
        let Some(token) = found else { return Ok(None) };
        let Some(project) = project::Entity::find_by_id(token.project_id).one(&self.db).await? else {
            return Ok(None);
        };
        // Record use at most once a minute: a write per request would serialise
        // every API call on SQLite.
        let stale = token.last_used_at.is_none_or(|t| now() - t > chrono::Duration::seconds(60));
        if stale {
            let mut am = token.clone().into_active_model();
            am.last_used_at = Set(Some(now()));
            if let Err(e) = am.update(&self.db).await {
                tracing::warn!(error = %e, "could not record token use");
            }
        }
        Ok(Some((token, project)))
    }

    /// The project's tokens (revoked ones too), oldest first, a page at a time.
    pub async fn list_tokens(
        &self,
        project_id: Uuid,
        limit: u64,
        cursor: Option<Uuid>,
    ) -> Result<Page<api_token::Model>, StoreError> {
        self.get_project(project_id).await?;
        let q = in_project::<api_token::Entity>(project_id);
        page_by_id(&self.db, q, api_token::Column::Id, |t| t.id, limit, cursor, false).await
    }

    pub async fn get_token(&self, project_id: Uuid, token_id: Uuid) -> Result<api_token::Model, StoreError> {
        find_in_project::<api_token::Entity, _>(&self.db, project_id, token_id).await
    }

    pub async fn revoke_token(&self, project_id: Uuid, token_id: Uuid) -> Result<(), StoreError> {
        let t = find_in_project::<api_token::Entity, _>(&self.db, project_id, token_id).await?;
        if t.revoked_at.is_none() {
            let mut am = t.into_active_model();
            am.revoked_at = Set(Some(now()));
            am.update(&self.db).await?;
        }
        Ok(())
    }
}
