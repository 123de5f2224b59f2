//! The JSON request body: `Content-Type: application/json`, at most 256 KiB, a JSON object.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde_json::{Map, Value};

use crate::errors::ApiError;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long reading a body may take when the app state does not say.
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A request body that is a JSON object.
pub struct JsonObject(pub Map<String, Value>);

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

fn declared_length(req: &HttpRequest) -> Option<usize> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

impl FromRequest for JsonObject {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !is_json(req) {
            return Box::pin(async { Err(ApiError::UnsupportedMediaType) });
        }
        if declared_length(req).is_some_and(|length| length > MAX_BODY_BYTES) {
            return Box::pin(async { Err(ApiError::PayloadTooLarge) });
        }
        let mut payload = payload.take();
        // A client that stops sending its body must not hold the connection forever.
        let timeout = req
            .app_data::<web::Data<crate::state::AppState>>()
            .map(|state| state.body_timeout)
            .unwrap_or(DEFAULT_BODY_TIMEOUT);
        Box::pin(async move {
            let mut bytes = web::BytesMut::new();
            let read = async {
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk
                        .map_err(|_| ApiError::InvalidJson("the body could not be read".into()))?;
                    if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(ApiError::PayloadTooLarge);
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(())
            };
            tokio::time::timeout(timeout, read)
                .await
                .map_err(|_| ApiError::InvalidJson("the body did not arrive in time".into()))??;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(map)) => Ok(JsonObject(map)),
                Ok(_) => Err(ApiError::InvalidJson(
                    "the body must be a JSON object".into(),
                )),
                Err(error) => Err(ApiError::InvalidJson(format!(
                    "the body is not valid JSON: {error}"
                ))),
            }
        })
    }
}
