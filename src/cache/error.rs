//! The cache's own error: what building it, relaying through it or flushing it can fail with.
//! Reads and stores never fail: a tier that does not answer is a miss.

/// Why the cache could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The settings name no usable Redis (a cluster without nodes, a URL that does not parse).
    #[error("invalid Redis settings: {0}")]
    Settings(String),
    /// Redis refused, failed or did not answer in time.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A message for the bus could not be encoded.
    #[error("bus message: {0}")]
    Encoding(#[from] serde_json::Error),
}
