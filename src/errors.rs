//! The one error type of the API, mapped onto the contract's error table.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use diesel::result::Error as DieselError;
use serde_json::json;

/// Every way a request can fail, one variant per row of the contract's error table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this route needs the admin role")]
    Forbidden,
    #[error("no such record")]
    NotFound,
    /// Carries the methods the route takes, for the `Allow` header.
    #[error("method not allowed on this route")]
    MethodNotAllowed(&'static str),
    #[error("request body is larger than 256 KiB")]
    PayloadTooLarge,
    #[error("request body must be sent with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("{0} names no record of this tenant")]
    InvalidReference(&'static str),
    /// Carries the seconds to send in `Retry-After`.
    #[error("this tenant already uses its share of the service; retry shortly")]
    TooManyRequests(u64),
    #[error("the database is unavailable, try again shortly")]
    DatabaseUnavailable(String),
    /// Details go to the log, never to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Validation(_) => "validation_failed",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::InvalidReference(_) => "invalid_reference",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::DatabaseUnavailable(_) => "database_unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn internal(context: impl std::fmt::Display) -> Self {
        ApiError::Internal(context.to_string())
    }
}

/// The database cannot answer (503), or not for this tenant now (429, its share in use): an
/// answer fail-safe kept beats an error.
impl crate::cache::LoadError for ApiError {
    fn unavailable(&self) -> bool {
        matches!(
            self,
            ApiError::DatabaseUnavailable(_) | ApiError::TooManyRequests(_)
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::InvalidJson(_) | ApiError::Validation(_) | ApiError::InvalidQuery(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidReference(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::DatabaseUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Internal(detail) => {
                log::error!("internal error: {detail}");
                self.to_string()
            }
            ApiError::DatabaseUnavailable(detail) => {
                log::warn!("database unavailable: {detail}");
                self.to_string()
            }
            _ => self.to_string(),
        };
        let body = json!({"error": {"code": self.code(), "message": message}});
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized(_) => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed(methods) => {
                response.insert_header((actix_web::http::header::ALLOW, *methods));
            }
            ApiError::TooManyRequests(seconds) => {
                response.insert_header((actix_web::http::header::RETRY_AFTER, *seconds));
            }
            _ => {}
        }
        response.json(body)
    }
}

impl From<crate::db::Error> for ApiError {
    fn from(error: crate::db::Error) -> Self {
        use crate::db::Error;
        match error {
            Error::NotFound => ApiError::NotFound,
            Error::InvalidReference(field) => ApiError::InvalidReference(field),
            Error::Busy(seconds) => ApiError::TooManyRequests(seconds),
            Error::Unavailable(detail) => ApiError::DatabaseUnavailable(detail),
            Error::Other(detail) => ApiError::Internal(format!("database: {detail}")),
        }
    }
}

impl From<crate::domain::Invalid> for ApiError {
    fn from(invalid: crate::domain::Invalid) -> Self {
        match invalid {
            crate::domain::Invalid::Query(message) => ApiError::InvalidQuery(message),
            crate::domain::Invalid::Body(message) => ApiError::Validation(message),
        }
    }
}

/// Queries run inside a transaction closure (the bundle's snapshot) fail with diesel's error.
impl From<DieselError> for ApiError {
    fn from(error: DieselError) -> Self {
        crate::db::Error::from(error).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;
    use diesel::result::DatabaseErrorKind;

    async fn body_of(error: ApiError) -> (u16, serde_json::Value) {
        let response = error.error_response();
        let status = response.status().as_u16();
        let bytes = to_bytes(response.into_body()).await.unwrap_or_default();
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    #[actix_rt::test]
    async fn every_variant_has_its_status_and_code() {
        let cases = [
            (ApiError::InvalidJson("x".into()), 400, "invalid_json"),
            (ApiError::Validation("x".into()), 400, "validation_failed"),
            (ApiError::InvalidQuery("x".into()), 400, "invalid_query"),
            (ApiError::Unauthorized("x"), 401, "unauthorized"),
            (ApiError::Forbidden, 403, "forbidden"),
            (ApiError::NotFound, 404, "not_found"),
            (ApiError::MethodNotAllowed("GET"), 405, "method_not_allowed"),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::InvalidReference("account_id"),
                422,
                "invalid_reference",
            ),
            (ApiError::TooManyRequests(1), 429, "too_many_requests"),
            (
                ApiError::DatabaseUnavailable("x".into()),
                503,
                "database_unavailable",
            ),
            (ApiError::Internal("x".into()), 500, "internal"),
        ];
        for (error, status, code) in cases {
            let (actual, body) = body_of(error).await;
            assert_eq!(actual, status);
            assert_eq!(body["error"]["code"], code);
            assert_eq!(body.as_object().map(|o| o.len()), Some(1));
        }
    }

    #[actix_rt::test]
    async fn internal_details_never_reach_the_client() {
        let secret = "relation \"accounts\" does not exist at SELECT";
        let (status, body) = body_of(ApiError::Internal(secret.into())).await;
        assert_eq!(status, 500);
        assert_eq!(body["error"]["message"], "internal error");
        let (_, body) = body_of(ApiError::DatabaseUnavailable(secret.into())).await;
        assert!(!body.to_string().contains("relation"));
    }

    #[test]
    fn diesel_errors_map_to_the_table() {
        assert!(matches!(
            ApiError::from(DieselError::NotFound),
            ApiError::NotFound
        ));
        let closed = DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection,
            Box::new("connection closed".to_owned()),
        );
        assert!(matches!(
            ApiError::from(closed),
            ApiError::DatabaseUnavailable(_)
        ));
        let odd = DieselError::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("something else".to_owned()),
        );
        assert!(matches!(ApiError::from(odd), ApiError::Internal(_)));
    }
}
