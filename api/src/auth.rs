//! Bearer-token authentication. A middleware on `/v1` authenticates before any
//! extractor runs, so an unauthenticated request gets 401 whatever else is wrong
//! with it; handlers then take `Auth` (any role), `ProjectAdmin` or `Operator`.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use herd_core::status::TokenRole;
use std::future::{Ready, ready};
use uuid::Uuid;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

/// The authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth {
    pub project_id: Uuid,
    pub token_id: Uuid,
    pub role: TokenRole,
}

/// A caller who runs Herd (the operator role): every project, datastore versions.
#[derive(Debug, Clone, Copy)]
pub struct Operator(pub Auth);

/// A caller who administers a project: its own (the admin role), or any (an operator).
#[derive(Debug, Clone, Copy)]
pub struct ProjectAdmin(pub Auth);

impl ProjectAdmin {
    /// Whether this caller administers `project`. Another project answers as absent
    /// (404), like every resource of another project.
    pub fn check(&self, project: Uuid) -> Result<(), ApiError> {
        match self.0.role {
            TokenRole::Operator => Ok(()),
            _ if self.0.project_id == project => Ok(()),
            _ => Err(ApiError::not_found("project")),
        }
    }

    pub fn is_operator(&self) -> bool {
        self.0.role == TokenRole::Operator
    }
}

pub async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
        })
        .filter(|t| !t.is_empty());
    let Some(presented) = presented else {
        return Err(ApiError::new(ErrorCode::Unauthorized, "send Authorization: Bearer <token>").into());
    };
    let state = req.app_data::<web::Data<AppState>>().cloned().expect("AppState registered");
    match state.store.authenticate(&presented).await {
        Ok(Some((token, project))) => {
            req.extensions_mut().insert(Auth { project_id: project.id, token_id: token.id, role: token.role });
            next.call(req).await
        }
        Ok(None) => Err(ApiError::new(ErrorCode::Unauthorized, "the token is unknown or revoked").into()),
        Err(e) => Err(ApiError::from(e).into()),
    }
}

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            req.extensions()
                .get::<Auth>()
                .copied()
                .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "send Authorization: Bearer <token>")),
        )
    }
}

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, p: &mut Payload) -> Self::Future {
        ready(Auth::from_request(req, p).into_inner().and_then(|a| match a.role {
            TokenRole::Operator => Ok(Operator(a)),
            TokenRole::Admin | TokenRole::Member => {
                Err(ApiError::new(ErrorCode::Forbidden, "this route needs an operator token"))
            }
        }))
    }
}

impl FromRequest for ProjectAdmin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, p: &mut Payload) -> Self::Future {
        ready(Auth::from_request(req, p).into_inner().and_then(|a| match a.role {
            TokenRole::Operator | TokenRole::Admin => Ok(ProjectAdmin(a)),
            TokenRole::Member => Err(ApiError::new(ErrorCode::Forbidden, "this route needs an admin token")),
        }))
    }
}
