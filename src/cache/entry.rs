//! A cached answer and its compact binary form in Redis.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::HeaderValue;
use actix_web::web::Bytes;

use super::versions::Dependencies;
use crate::domain::tags::Tag;

/// A cached 200 answer: the exact bytes, content type and ETag of the miss that stored it, and
/// when it was stored, until when it is fresh (`fresh_until`) and until when it may still be
/// served by fail-safe (`stale_until`), all in milliseconds since the Unix epoch.
/// The ETag and content type are kept as header values, so that a hit copies no header text.
/// It is served only while none of its `dependencies` changed (see [`super::versions`]).
#[derive(Debug)]
pub struct Entry {
    pub body: Bytes,
    pub content_type: HeaderValue,
    pub etag: HeaderValue,
    pub stored_ms: u64,
    pub fresh_until_ms: u64,
    pub stale_until_ms: u64,
    pub dependencies: Dependencies,
    /// The revision of the tenant's versions it was last found current at (0: never).
    pub checked: AtomicU64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Strong ETag of a body.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let text = format!("\"{:x}\"", md5::compute(body));
    // Quotes and hex digits only: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

impl Entry {
    pub fn new(
        body: Bytes,
        content_type: HeaderValue,
        dependencies: Dependencies,
        ttl: Duration,
        fail_safe: Duration,
    ) -> Self {
        let now = now_ms();
        let fresh_until_ms = now + ttl.as_millis() as u64;
        Entry {
            etag: etag_of(&body),
            body,
            content_type,
            stored_ms: now,
            fresh_until_ms,
            stale_until_ms: fresh_until_ms + fail_safe.as_millis() as u64,
            dependencies,
            checked: AtomicU64::new(0),
        }
    }

    /// An answer served but not kept: no lifetime at all.
    pub fn uncached(body: Bytes, content_type: HeaderValue) -> Self {
        Entry {
            etag: etag_of(&body),
            body,
            content_type,
            stored_ms: 0,
            fresh_until_ms: 0,
            stale_until_ms: 0,
            dependencies: Dependencies::default(),
            checked: AtomicU64::new(0),
        }
    }

    /// How long ago the entry was stored.
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.stored_ms))
    }

    pub fn is_fresh(&self) -> bool {
        now_ms() < self.fresh_until_ms
    }

    pub fn is_servable_stale(&self) -> bool {
        now_ms() < self.stale_until_ms
    }

    /// How long the entry is worth keeping at all.
    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.stale_until_ms.saturating_sub(now_ms()))
    }

    /// Bytes L1 accounts for this entry.
    pub fn weight(&self) -> u32 {
        const OVERHEAD: usize = 160;
        const PER_TAG: usize = 16;
        u32::try_from(
            self.body.len()
                + self.etag.len()
                + self.content_type.len()
                + self.dependencies.pairs().len() * PER_TAG
                + OVERHEAD,
        )
        .unwrap_or(u32::MAX)
    }

    /// 4: unfiltered answers list `members(M)` among their dependencies; a v3 entry's lack of it
    /// would pass for current after a create.
    const VERSION: u8 = 4;

    /// `version | stored | fresh_until | stale_until | count (tag seq)* | etag_len etag |
    /// ct_len ct | body`
    pub fn encode(&self) -> Vec<u8> {
        let pairs = self.dependencies.pairs();
        let mut out = Vec::with_capacity(
            1 + 24
                + 4
                + pairs.len() * 16
                + 4
                + self.etag.len()
                + self.content_type.len()
                + self.body.len(),
        );
        out.push(Self::VERSION);
        out.extend_from_slice(&self.stored_ms.to_be_bytes());
        out.extend_from_slice(&self.fresh_until_ms.to_be_bytes());
        out.extend_from_slice(&self.stale_until_ms.to_be_bytes());
        out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
        for (tag, seq) in pairs {
            out.extend_from_slice(&tag.0.to_be_bytes());
            out.extend_from_slice(&seq.to_be_bytes());
        }
        for text in [&self.etag, &self.content_type] {
            out.extend_from_slice(&(text.len() as u16).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// `None` for anything not written by [`Self::encode`] of this version. The body shares the
    /// buffer Redis answered into (no copy of a possibly large page).
    pub fn decode(bytes: impl Into<Bytes>) -> Option<Self> {
        let bytes: Bytes = bytes.into();
        let (&version, rest) = bytes.split_first()?;
        if version != Self::VERSION || rest.len() < 24 {
            return None;
        }
        let stored_ms = u64::from_be_bytes(rest[..8].try_into().ok()?);
        let fresh_until_ms = u64::from_be_bytes(rest[8..16].try_into().ok()?);
        let stale_until_ms = u64::from_be_bytes(rest[16..24].try_into().ok()?);
        let mut at = 1 + 24;
        let word = |at: usize| -> Option<u64> {
            Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
        };
        let count = u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        at += 4;
        if bytes.len() < at + count.checked_mul(16)? {
            return None;
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            pairs.push((Tag(word(at)?), word(at + 8)?));
            at += 16;
        }
        // The header values share the buffer too; a value that is not a valid header is garbage.
        let mut text = || -> Option<HeaderValue> {
            let len = u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize;
            let value = bytes.get(at + 2..at + 2 + len)?;
            let value = HeaderValue::from_maybe_shared(bytes.slice_ref(value)).ok()?;
            at += 2 + len;
            Some(value)
        };
        let etag = text()?;
        let content_type = text()?;
        Some(Entry {
            body: bytes.slice(at..),
            content_type,
            etag,
            stored_ms,
            fresh_until_ms,
            stale_until_ms,
            dependencies: Dependencies::new(pairs),
            checked: AtomicU64::new(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_and_rejects_garbage() {
        let dependencies = Dependencies::new(vec![(Tag(7), 3), (Tag(u64::MAX), 9)]);
        let entry = Entry::new(
            Bytes::from_static(b"{\"count\":3}"),
            HeaderValue::from_static("application/json"),
            dependencies.clone(),
            Duration::from_secs(60),
            Duration::from_secs(300),
        );
        let decoded = Entry::decode(entry.encode()).unwrap();
        assert_eq!(decoded.body, entry.body);
        assert_eq!(decoded.etag, entry.etag);
        assert_eq!(decoded.content_type, "application/json");
        assert_eq!(decoded.stale_until_ms, entry.fresh_until_ms + 300_000);
        assert_eq!(decoded.stored_ms, entry.stored_ms);
        assert_eq!(decoded.fresh_until_ms, entry.stored_ms + 60_000);
        assert_eq!(decoded.dependencies, dependencies);
        assert!(Entry::decode(Vec::new()).is_none());
        assert!(Entry::decode(vec![3, 0, 0]).is_none());
        let mut older = entry.encode();
        older[0] = 1;
        assert!(Entry::decode(older).is_none(), "another version is garbage");
        assert!(Entry::decode(entry.encode()[..20].to_vec()).is_none());
    }
}
