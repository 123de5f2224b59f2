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

pub use crate::domain::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

/// The claims the service reads (`nbf`, `aud` and `iss` are checked by the validation).
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: Uuid,
    role: Role,
    exp: u64,
}

/// The claims the service signs: those it reads, and the `aud`/`iss` it expects, if any.
#[derive(Debug, Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    tenant_id: Uuid,
    role: Role,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
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
    /// `JWT_SECRET_PREVIOUS`: tokens signed with these still verify during a rotation; none is
    /// ever used to sign.
    previous: Vec<DecodingKey>,
    validation: Validation,
    /// The `aud` and `iss` tokens must carry (and minted ones do), when configured.
    audience: Option<String>,
    issuer: Option<String>,
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
    /// Keys for `secret` that check no `aud` or `iss` (see [`Self::expecting`]).
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        // An expired or not yet valid token is refused at once: the contract has no grace
        // period. `nbf` is honoured when present, and a malformed one refused.
        validation.leeway = 0;
        validation.validate_nbf = true;
        // Identity providers put their own `aud` into tokens: it is checked only when the
        // deployment says which one it expects.
        validation.validate_aud = false;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            previous: Vec::new(),
            validation,
            audience: None,
            issuer: None,
            verified: Mutex::new(HashMap::default()),
        }
    }

    /// Also accepts tokens signed with any of `secrets` (verify only).
    pub fn with_previous(mut self, secrets: &[Vec<u8>]) -> Self {
        self.previous = secrets
            .iter()
            .map(|secret| DecodingKey::from_secret(secret))
            .collect();
        self
    }

    /// Tokens must also carry this `aud` (`JWT_AUDIENCE`) and this `iss` (`JWT_ISSUER`), each
    /// when given.
    pub fn expecting(mut self, audience: Option<&str>, issuer: Option<&str>) -> Self {
        if let Some(audience) = audience {
            self.validation.set_audience(&[audience]);
            self.validation.validate_aud = true;
            self.validation
                .required_spec_claims
                .insert("aud".to_owned());
            self.audience = Some(audience.to_owned());
        }
        if let Some(issuer) = issuer {
            self.validation.set_issuer(&[issuer]);
            self.validation
                .required_spec_claims
                .insert("iss".to_owned());
            self.issuer = Some(issuer.to_owned());
        }
        self
    }

    /// Signs a token for `tenant` valid for `ttl_secs` from now.
    pub fn mint(
        &self,
        tenant: Uuid,
        role: Role,
        sub: &str,
        ttl_secs: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let claims = MintedClaims {
            sub,
            tenant_id: tenant,
            role,
            exp: unix_now().saturating_add(ttl_secs),
            aud: self.audience.as_deref(),
            iss: self.issuer.as_deref(),
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
        let decode = |key| jsonwebtoken::decode::<Claims>(token, key, &self.validation);
        let badly_signed = |decoded: &jsonwebtoken::errors::Result<_>| {
            matches!(decoded, Err(error)
                if *error.kind() == jsonwebtoken::errors::ErrorKind::InvalidSignature)
        };
        // The current secret first; a previous one only for a signature the current refuses.
        let mut decoded = decode(&self.decoding);
        for previous in &self.previous {
            if !badly_signed(&decoded) {
                break;
            }
            decoded = decode(previous);
        }
        let data = decoded.map_err(|error| {
            use jsonwebtoken::errors::ErrorKind;
            match error.kind() {
                ErrorKind::ExpiredSignature => ApiError::Unauthorized("the token has expired"),
                ErrorKind::ImmatureSignature => {
                    ApiError::Unauthorized("the token is not valid yet (nbf)")
                }
                ErrorKind::InvalidAudience => {
                    ApiError::Unauthorized("the token is for another audience")
                }
                ErrorKind::InvalidIssuer => {
                    ApiError::Unauthorized("the token is from another issuer")
                }
                ErrorKind::InvalidSignature => {
                    ApiError::Unauthorized("the token signature is not valid")
                }
                _ => ApiError::Unauthorized("the bearer token is malformed or incomplete"),
            }
        })?;
        // RFC 7515: a critical extension the service does not understand (it understands none)
        // makes the token invalid; `crit` may not be empty either.
        if data.header.crit.is_some() {
            return Err(ApiError::Unauthorized(
                "the token names critical header parameters this service does not understand",
            ));
        }
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

    /// The caller of `req`, from its bearer token: exactly one `Authorization` header, the
    /// scheme `Bearer` in any case (RFC 7235).
    pub fn principal_of(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        let mut values = req.headers().get_all(header::AUTHORIZATION);
        let value = values.next().ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer token",
        ))?;
        if values.next().is_some() {
            return Err(ApiError::Unauthorized("more than one Authorization header"));
        }
        let token = bearer_token(value.as_bytes()).ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer token",
        ))?;
        // The dashboard's case, a token seen before: found without checking the token's text.
        if let Some(principal) = self.remembered(token) {
            return Ok(principal);
        }
        let token = std::str::from_utf8(token)
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header"))?;
        self.verify(token)
    }
}

/// The token of a `Bearer` credential, the scheme matched in any case.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let (scheme, token) = value.split_at_checked(SCHEME.len())?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(SCHEME) && !token.is_empty()).then_some(token)
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

/// An admin caller: extracted before the body, so a member is refused with 403 whatever the
/// body is (or is not).
pub struct Admin(pub Principal);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let admin = Principal::from_request(req, payload)
            .into_inner()
            .and_then(|principal| principal.require_admin().map(|()| Admin(principal)));
        ready(admin)
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
