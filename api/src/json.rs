//! A JSON body extractor with the API's error contract: size limit → 413, wrong
//! content type → 415, broken JSON → 400, wrong shape → 422 naming the field.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;

use crate::error::{ApiError, ErrorCode};
use crate::state::AppState;

pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let bytes = JsonBytes::from_request(req, payload);
        Box::pin(async move { parse(&bytes.await?.0).map(JsonBody) })
    }
}

/// A JSON request's body unparsed, under the same limit and content-type rule as
/// [`JsonBody`]: for a handler that checks a signature over the exact bytes before
/// it parses anything.
pub struct JsonBytes(pub web::Bytes);

impl FromRequest for JsonBytes {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req.app_data::<web::Data<AppState>>().map_or(1024 * 1024, |s| s.max_body_bytes);
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase());
        let declared_len = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let too_large =
                || ApiError::new(ErrorCode::PayloadTooLarge, format!("the body must not exceed {limit} bytes"));
            if declared_len.is_some_and(|n| n > limit) {
                return Err(too_large());
            }
            match content_type.as_deref() {
                Some("application/json") => {}
                Some(ct) if ct.ends_with("+json") => {}
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        "send the body with Content-Type: application/json",
                    ));
                }
            }
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk =
                    chunk.map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("could not read body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(JsonBytes(body.freeze()))
        })
    }
}

pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::field(field, strip_position(&inner.to_string()))
            }
            _ => ApiError::new(ErrorCode::MalformedJson, inner.to_string()),
        }
    })?;
    de.end().map_err(|e| ApiError::new(ErrorCode::MalformedJson, e.to_string()))?;
    Ok(value)
}

/// serde_json appends "at line 1 column 9" to data errors; the field path says more.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        name: String,
        nodes: Option<i64>,
    }

    #[test]
    fn classifies_errors() {
        assert_eq!(parse::<Req>(b"{\"name\":").unwrap_err().code, ErrorCode::MalformedJson);
        assert_eq!(parse::<Req>(b"{\"name\":\"a\"} x").unwrap_err().code, ErrorCode::MalformedJson);
        let e = parse::<Req>(b"{\"name\":\"a\",\"nodes\":\"three\"}").unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationFailed);
        assert_eq!(e.errors[0].field, "nodes");
        let e = parse::<Req>(b"{\"name\":\"a\",\"nodez\":1}").unwrap_err();
        assert_eq!(e.code, ErrorCode::ValidationFailed);
        assert!(e.errors[0].message.contains("nodez"), "{:?}", e.errors);
        assert!(parse::<Req>(b"{\"name\":\"a\"}").is_ok());
    }
}
