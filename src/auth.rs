//! Bearer JWTs (HS256): minting for the CLI and tests, and the `Principal` extractor that every
//! `/api/v2` handler takes. The tenant comes from the token and from nowhere else.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::errors::ApiError;

/// The tenant a request acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TenantId(pub Uuid);

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: Uuid,
    role: Role,
    exp: u64,
}

/// Who is calling: resolved once per request from the bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    pub sub: String,
}

impl Principal {
    /// Fails with `403 forbidden` unless the caller is an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Admin => Ok(()),
            Role::Member => Err(ApiError::Forbidden),
        }
    }
}

/// The HS256 keys, built once at start and shared by every worker.
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// Tokens whose signature and claims were already checked, with their expiry: a dashboard
    /// sends the same token with every request, and checking it again is most of the cost of
    /// a cache hit.
    verified: Mutex<HashMap<Box<str>, (Principal, u64)>>,
}

/// Most tokens remembered as verified; past it the memory starts over.
const VERIFIED_MAX: usize = 10_000;

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        // An expired token is refused at once: the contract has no grace period.
        validation.leeway = 0;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Signs a token for `tenant` valid for `ttl_secs` from now.
    pub fn mint(
        &self,
        tenant: Uuid,
        role: Role,
        sub: &str,
        ttl_secs: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: sub.to_owned(),
            tenant_id: tenant,
            role,
            exp: unix_now().saturating_add(ttl_secs),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let now = unix_now();
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((principal, exp)) = verified.get(token) {
            if now < *exp {
                return Ok(principal.clone());
            }
            verified.remove(token);
        }
        drop(verified);
        let (principal, exp) = self.verify_signature(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(token.into(), (principal.clone(), exp));
        Ok(principal)
    }

    fn verify_signature(&self, token: &str) -> Result<(Principal, u64), ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::ExpiredSignature => ApiError::Unauthorized("the token has expired"),
                    ErrorKind::InvalidSignature => {
                        ApiError::Unauthorized("the token signature is not valid")
                    }
                    _ => ApiError::Unauthorized("the bearer token is malformed or incomplete"),
                }
            })?;
        // RFC 7519: the token is valid only *before* `exp` (jsonwebtoken accepts `exp == now`).
        if data.claims.exp <= unix_now() {
            return Err(ApiError::Unauthorized("the token has expired"));
        }
        let principal = Principal {
            tenant: TenantId(data.claims.tenant_id),
            role: data.claims.role,
            sub: data.claims.sub,
        };
        Ok((principal, data.claims.exp))
    }

    /// The caller of `req`, from its bearer token.
    pub fn principal_of(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer token",
            ))?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized(
                "missing Authorization: Bearer token",
            ))?;
        self.verify(token)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        // The cache middleware may have resolved the caller already.
        if let Some(principal) = req.extensions().get::<Principal>() {
            return ready(Ok(principal.clone()));
        }
        let result = match req.app_data::<web::Data<JwtKeys>>() {
            Some(keys) => keys.principal_of(req),
            None => Err(ApiError::internal("JwtKeys missing from app data")),
        };
        ready(result)
    }
}
