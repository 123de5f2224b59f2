//! Cache keys: MD5 over tenant, module, operation, canonical parameters and the epoch of the
//! tenant's namespace. Whether the answer under a key is still current is its tags' business
//! ([`super::versions`]), not the key's.

use std::borrow::Cow;

use crate::domain::TenantId;

/// A cache key: MD5 over every part, each written with its length first (and lists with their
/// count), so that no two different inputs share their bytes (`"ab" + "c"` is not `"a" + "bc"`).
pub type Key = [u8; 16];

/// Version of the key layout; changing the layout changes every key.
const KEY_VERSION: u64 = 4;

pub fn cache_key(
    tenant: TenantId,
    module: &str,
    operation: &str,
    params: &[(&str, Cow<'_, str>)],
    epoch: u64,
) -> Key {
    fn part(context: &mut md5::Context, bytes: &[u8]) {
        context.consume((bytes.len() as u64).to_be_bytes());
        context.consume(bytes);
    }
    let mut context = md5::Context::new();
    context.consume(KEY_VERSION.to_be_bytes());
    part(&mut context, tenant.0.as_bytes());
    part(&mut context, module.as_bytes());
    part(&mut context, operation.as_bytes());
    context.consume((params.len() as u64).to_be_bytes());
    for (name, value) in params {
        part(&mut context, name.as_bytes());
        part(&mut context, value.as_bytes());
    }
    context.consume(epoch.to_be_bytes());
    context.finalize().0
}

/// Lowercase hex of a key, appended to `out` (every L2 read names its key this way).
pub fn push_hex(out: &mut String, key: &Key) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in key {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn tenant() -> TenantId {
        TenantId(Uuid::new_v4())
    }

    #[test]
    fn parts_cannot_be_shifted_between_fields() {
        let t = tenant();
        assert_ne!(
            cache_key(t, "ab", "c", &[], 7),
            cache_key(t, "a", "bc", &[], 7)
        );
        let p1 = vec![("a", Cow::Borrowed("b&c=d"))];
        let p2 = vec![("a", Cow::Borrowed("b")), ("c", Cow::Borrowed("d"))];
        assert_ne!(
            cache_key(t, "m", "o", &p1, 7),
            cache_key(t, "m", "o", &p2, 7)
        );
    }

    #[test]
    fn keys_read_as_lowercase_hex() {
        let key: Key = [
            0x00, 0x01, 0x0f, 0x10, 0x7f, 0x80, 0xab, 0xcd, 0xef, 0xff, 0x12, 0x34, 0x56, 0x78,
            0x9a, 0xbc,
        ];
        let mut text = String::from("x:");
        push_hex(&mut text, &key);
        let expected: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        assert_eq!(text, format!("x:{expected}"));
    }
}
