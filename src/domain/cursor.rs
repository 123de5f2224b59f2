//! Opaque keyset cursors. A cursor names the last record of a page by `(created_at, id)` and is
//! signed with HMAC-SHA256 over the tenant and module, so a client can neither forge one nor
//! carry one into another tenant's or another entity's list.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use super::{Module, TenantId};

/// Position after which the next page starts (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

const PAYLOAD_LEN: usize = 8 + 16;
const TAG_LEN: usize = 12;

/// Signs cursors with the JWT secret and checks them with it or with a previous one (during a
/// rotation, cursors handed out before it stay valid).
#[derive(Clone)]
pub struct CursorCodec {
    key: Vec<u8>,
    previous: Vec<Vec<u8>>,
}

impl CursorCodec {
    pub fn new(secret: &[u8]) -> Self {
        CursorCodec {
            key: secret.to_vec(),
            previous: Vec::new(),
        }
    }

    /// Also accepts cursors signed with any of `secrets` (`JWT_SECRET_PREVIOUS`).
    pub fn with_previous(mut self, secrets: &[Vec<u8>]) -> Self {
        self.previous = secrets.to_vec();
        self
    }

    fn mac(key: &[u8], tenant: TenantId, module: Module, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(b"aishacrm-cursor-v1\0");
        mac.update(tenant.0.as_bytes());
        mac.update(module.name().as_bytes());
        mac.update(b"\0");
        mac.update(payload);
        mac
    }

    pub fn encode(&self, tenant: TenantId, module: Module, cursor: Cursor) -> String {
        let mut bytes = Vec::with_capacity(PAYLOAD_LEN + TAG_LEN);
        bytes.extend_from_slice(&cursor.created_at.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(cursor.id.as_bytes());
        let tag = Self::mac(&self.key, tenant, module, &bytes)
            .finalize()
            .into_bytes();
        bytes.extend_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// `None` for anything this codec did not sign for this tenant and module.
    pub fn decode(&self, tenant: TenantId, module: Module, text: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text).ok()?;
        if bytes.len() != PAYLOAD_LEN + TAG_LEN {
            return None;
        }
        let (payload, tag) = bytes.split_at(PAYLOAD_LEN);
        std::iter::once(&self.key)
            .chain(&self.previous)
            .find(|key| {
                Self::mac(key, tenant, module, payload)
                    .verify_truncated_left(tag)
                    .is_ok()
            })?;
        let micros = i64::from_be_bytes(payload[..8].try_into().ok()?);
        let id = Uuid::from_slice(&payload[8..]).ok()?;
        Some(Cursor {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (CursorCodec, TenantId, Cursor) {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        (
            CursorCodec::new(b"secret"),
            TenantId(Uuid::new_v4()),
            cursor,
        )
    }

    #[test]
    fn round_trips() {
        let (codec, tenant, cursor) = sample();
        let text = codec.encode(tenant, Module::Leads, cursor);
        assert_eq!(codec.decode(tenant, Module::Leads, &text), Some(cursor));
    }

    #[test]
    fn refuses_other_tenant_module_key_or_tampering() {
        let (codec, tenant, cursor) = sample();
        let text = codec.encode(tenant, Module::Leads, cursor);
        assert_eq!(
            codec.decode(TenantId(Uuid::new_v4()), Module::Leads, &text),
            None
        );
        assert_eq!(codec.decode(tenant, Module::Accounts, &text), None);
        assert_eq!(
            CursorCodec::new(b"other").decode(tenant, Module::Leads, &text),
            None
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
        bytes[3] ^= 1;
        assert_eq!(
            codec.decode(tenant, Module::Leads, &URL_SAFE_NO_PAD.encode(bytes)),
            None
        );
        assert_eq!(codec.decode(tenant, Module::Leads, "not a cursor"), None);
    }
}
