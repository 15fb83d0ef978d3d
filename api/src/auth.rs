//! Bearer-token authentication. A middleware on `/v1` authenticates before any
//! extractor runs, so an unauthenticated request gets 401 whatever else is wrong
//! with it; handlers then take `Auth` (any role) or `Admin`.

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

/// A caller with the admin role.
#[derive(Debug, Clone, Copy)]
pub struct Admin(pub Auth);

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

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, p: &mut Payload) -> Self::Future {
        ready(Auth::from_request(req, p).into_inner().and_then(|a| match a.role {
            TokenRole::Admin => Ok(Admin(a)),
            TokenRole::Member => Err(ApiError::new(ErrorCode::Forbidden, "this route needs an admin token")),
        }))
    }
}
