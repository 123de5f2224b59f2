//! Bearer JWTs (HS256): minting for the CLI and tests, and the `Principal` extractor that every
//! `/api/v2` handler takes. The tenant comes from the token and from nowhere else.

use std::collections::HashMap;
use std::future::{ready, Ready};
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::{Arc, Mutex};
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

/// Who is calling: resolved once per request from the bearer token (cheap to clone).
#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant: TenantId,
    pub role: Role,
    pub sub: Arc<str>,
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
    verified: Mutex<Verified>,
}

/// Verified tokens with their caller and expiry.
type Verified = HashMap<Box<[u8]>, (Principal, u64), TailHash>;

/// The memo's hasher: it reads only the last bytes of a token (its signature, which differs
/// between any two tokens), so that a lookup does not hash some 200 bytes; equality still
/// compares whole tokens. Only tokens whose signature checked out are stored, so a client cannot
/// crowd a bucket on purpose.
#[derive(Default)]
struct TailHash(RandomState);

struct TailHasher(DefaultHasher);

/// How many trailing bytes of a token the memo's hash reads.
const HASHED_TAIL: usize = 16;

impl BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0
            .write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
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
            verified: Mutex::new(HashMap::default()),
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

    /// The caller of a token verified before and not expired since.
    fn remembered(&self, token: &[u8]) -> Option<Principal> {
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let (principal, exp) = verified.get(token)?;
        if unix_now() < *exp {
            return Some(principal.clone());
        }
        verified.remove(token);
        None
    }

    /// Checks a token not remembered, and remembers it if valid.
    fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let (principal, exp) = self.verify_signature(token)?;
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(token.as_bytes().into(), (principal.clone(), exp));
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
            sub: data.claims.sub.into(),
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
        // The dashboard's case, a token seen before: found without checking the header's text.
        let bytes = value.as_bytes();
        let remembered = bytes
            .strip_prefix(b"Bearer ")
            .or_else(|| bytes.strip_prefix(b"bearer "))
            .and_then(|token| self.remembered(token.trim_ascii()));
        if let Some(principal) = remembered {
            return Ok(principal);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str) -> HttpRequest {
        actix_web::test::TestRequest::default()
            .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
            .to_http_request()
    }

    #[test]
    fn a_token_sharing_a_remembered_signature_is_still_checked() {
        let keys = JwtKeys::new(b"memo-secret");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let token_a = keys.mint(a, Role::Member, "a", 60).unwrap();
        let token_b = keys.mint(b, Role::Admin, "b", 60).unwrap();
        for _ in 0..2 {
            assert_eq!(keys.principal_of(&request(&token_a)).unwrap().tenant.0, a);
            let principal = keys.principal_of(&request(&token_b)).unwrap();
            assert_eq!((principal.tenant.0, principal.role), (b, Role::Admin));
        }
        // B's claims under A's signature: the same memo hash as A's token, never A's caller.
        let (_, signature_a) = token_a.rsplit_once('.').unwrap();
        let (claims_b, _) = token_b.rsplit_once('.').unwrap();
        let forged = format!("{claims_b}.{signature_a}");
        assert!(matches!(
            keys.principal_of(&request(&forged)),
            Err(ApiError::Unauthorized(_))
        ));
        // A remembered token is refused once expired, memo or not.
        let short = keys.mint(a, Role::Member, "a", 1).unwrap();
        assert!(keys.principal_of(&request(&short)).is_ok());
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert!(keys.principal_of(&request(&short)).is_err());
    }
}
