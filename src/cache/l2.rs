//! L2 and the tenants' tag versions in the shared Redis (one server, or a Redis Cluster), through
//! reconnecting connections: one per thread that sends commands (each HTTP worker), plus a shared
//! one the bus opens and the reconnect path uses. Every command is bounded by a timeout; the
//! caller treats any failure as "Redis is down".
//!
//! In a cluster, every key of a tenant carries the tenant as its hash tag (`{<tenant>}`), so an
//! answer, its tenant's versions and every command one operation sends live on one slot. The bus uses
//! classic pub/sub, which a cluster forwards to every node: a replica may subscribe on any node
//! and still hear every message (sharded pub/sub would need the channel's slot owner instead).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::sync::RwLock;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncCommands, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Script, Value,
};
use uuid::Uuid;

use super::builder::Target;
use super::entry::Entry;
use super::key::{push_hex, Key};
use super::versions::{Fetched, MAX_TAGS};
use crate::domain::tags::Tag;
use crate::domain::TenantId;

/// Which connection a command goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The calling thread's own (only while Redis counts as up).
    Worker,
    /// The shared one, also while Redis counts as down: the outbox relay, which decides when it
    /// may count as up again.
    Shared,
}

/// The shared command connection.
#[derive(Clone)]
enum Shared {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Shared {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Shared::Single(connection) => connection.req_packed_command(cmd),
            Shared::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Shared::Single(connection) => connection.req_packed_commands(cmd, offset, count),
            Shared::Cluster(connection) => connection.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Shared::Single(connection) => connection.get_db(),
            Shared::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Reads a tenant's versions or, with tags named, numbers a write that changed them; starts the
/// tenant's namespace over with the epoch `ARGV[1]` when there is none, when `ARGV[2]` names the
/// current epoch, or when the namespace was started on another server run. The last catches what
/// no counter can show: a restart that loaded an older snapshot, or a failover to a replica that
/// missed the last writes, brings back versions and entries of an earlier state together, but
/// not the run id of the server that started the namespace. Scripts replicate their effects, so a
/// replica stores the run id of its master.
///
/// One hash per tenant: `epoch`, `run`, `seq` (the last write's number), `floor` and a field
/// `t:<tag>` per changed tag holding the number of the write that last changed it. One key, so
/// that an eviction takes all of it or nothing. Past `ARGV[3]` tags, the older half is forgotten
/// and `floor` raised past them. `ARGV[3]` says what to do: `read` answers the whole hash;
/// `number` numbers a write that changed the tags (hex) `ARGV[5..]`, keeping at most `ARGV[4]`
/// tags, and answers `epoch`, `seq` and `floor`.
static NAMESPACE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)')
local state = redis.call('HMGET', KEYS[1], 'epoch', 'run')
if not state[1] or state[2] ~= run or state[1] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'run', run, 'seq', 0, 'floor', 0)
end
if ARGV[3] == 'read' then
  return redis.call('HGETALL', KEYS[1])
end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
for i = 5, #ARGV do
  redis.call('HSET', KEYS[1], 't:' .. ARGV[i], seq)
end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[4]) + 4 then
  local all = redis.call('HGETALL', KEYS[1])
  local seqs = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 't:' then seqs[#seqs + 1] = tonumber(all[i + 1]) end
  end
  table.sort(seqs)
  local cut = seqs[math.floor(#seqs / 2)]
  local forget = {}
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 't:' and tonumber(all[i + 1]) <= cut then
      forget[#forget + 1] = all[i]
    end
  end
  for i = 1, #forget, 500 do
    redis.call('HDEL', KEYS[1], unpack(forget, i, math.min(i + 499, #forget)))
  end
  if cut > tonumber(redis.call('HGET', KEYS[1], 'floor')) then
    redis.call('HSET', KEYS[1], 'floor', cut)
  end
end
return redis.call('HMGET', KEYS[1], 'epoch', 'seq', 'floor')
",
    )
});

fn malformed() -> RedisError {
    RedisError::from((ErrorKind::Parse, "malformed versions hash"))
}

fn number(text: Option<&String>) -> RedisResult<u64> {
    text.and_then(|text| text.parse().ok())
        .ok_or_else(malformed)
}

/// The fields of a versions hash as [`Fetched`].
fn parse_versions(fields: &HashMap<String, String>) -> RedisResult<Fetched> {
    let mut changed = Vec::new();
    for (name, value) in fields {
        if let Some(tag) = name.strip_prefix("t:") {
            let tag = u64::from_str_radix(tag, 16).map_err(|_| malformed())?;
            changed.push((Tag(tag), number(Some(value))?));
        }
    }
    Ok(Fetched {
        epoch: number(fields.get("epoch"))?,
        seq: number(fields.get("seq"))?,
        floor: number(fields.get("floor"))?,
        changed,
    })
}

/// What numbering a write answered: its namespace, its number and the floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Numbered {
    pub epoch: u64,
    pub seq: u64,
    pub floor: u64,
}

/// The CA a `rediss://` server's certificate must chain to, instead of the system's roots.
fn certificates(ca: &[u8]) -> redis::TlsCertificates {
    redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// A client of `url`; a `rediss://` one checks the server against `ca` when given.
fn client(url: &str, ca: Option<&[u8]>) -> RedisResult<redis::Client> {
    match ca {
        Some(ca) if url.starts_with("rediss://") => {
            redis::Client::build_with_tls(url, certificates(ca))
        }
        _ => redis::Client::open(url),
    }
}

/// Tells the [`Redis`] instances of one process apart (tests run several).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's own command connection of each [`Redis`] instance (by id). A connection's
    /// driver task runs on the runtime that opened it: opened on an HTTP worker, a command's
    /// request and answer stay on that worker's thread instead of waking another thread twice
    /// per command (which cost an L2 hit more than the command itself).
    /// Each with the [`Redis::epoch`] it was opened in: a reconnect of the bus starts a new epoch,
    /// and connections of an older one (perhaps to a server that has since restarted) are
    /// replaced on their next use.
    static LOCAL: RefCell<Vec<Local>> = const { RefCell::new(Vec::new()) };
}

struct Local {
    id: u64,
    epoch: u64,
    connection: Shared,
}

pub struct Redis {
    id: u64,
    /// Counts (re)connections of the bus; see [`LOCAL`].
    epoch: AtomicU64,
    target: Target,
    /// One client per node (one for a single server), for pub/sub and administration.
    nodes: Vec<redis::Client>,
    /// Which node the next pub/sub subscription uses (rotates across reconnects).
    next_node: AtomicUsize,
    connection: RwLock<Option<Shared>>,
    up: AtomicBool,
    prefix: String,
    timeout: Duration,
    /// The CA `rediss://` servers are checked against, when not the system's roots.
    ca: Option<Vec<u8>>,
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "redis command timed out",
    ))
}

impl Redis {
    pub fn new(
        target: Target,
        prefix: &str,
        timeout: Duration,
        ca: Option<&[u8]>,
    ) -> RedisResult<Self> {
        // redis-rs builds rustls without a crypto provider; the process's default is ring. A
        // second call finds it installed, which is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let urls = match &target {
            Target::Single(url) => vec![url.clone()],
            Target::Cluster(urls) => urls.clone(),
        };
        let ca = ca.map(<[u8]>::to_vec);
        let nodes = urls
            .iter()
            .map(|url| client(url, ca.as_deref()))
            .collect::<RedisResult<Vec<_>>>()?;
        if nodes.is_empty() {
            return Err(RedisError::from(std::io::Error::other(
                "REDIS_CLUSTER_NODES names no node",
            )));
        }
        Ok(Redis {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            epoch: AtomicU64::new(0),
            target,
            nodes,
            next_node: AtomicUsize::new(0),
            connection: RwLock::new(None),
            up: AtomicBool::new(false),
            prefix: prefix.to_owned(),
            timeout,
            ca,
        })
    }

    /// A client of another node of this Redis (a cluster's masters), with the same TLS settings.
    pub fn client_of(&self, url: &str) -> RedisResult<redis::Client> {
        client(url, self.ca.as_deref())
    }

    /// `rediss` when the configured nodes speak TLS, else `redis`.
    pub fn scheme(&self) -> &'static str {
        let tls = match &self.target {
            Target::Single(url) => url.starts_with("rediss://"),
            Target::Cluster(urls) => urls.iter().any(|url| url.starts_with("rediss://")),
        };
        if tls {
            "rediss"
        } else {
            "redis"
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// A client for a pub/sub subscription: the next node in turn, so that a reconnect after a
    /// node failure tries another one.
    pub fn pubsub_client(&self) -> &redis::Client {
        let index = self.next_node.fetch_add(1, Ordering::Relaxed) % self.nodes.len();
        &self.nodes[index]
    }

    /// Clients of the configured nodes (administration, e.g. `cache flush`).
    pub fn nodes(&self) -> &[redis::Client] {
        &self.nodes
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Sets the up flag; returns whether it changed.
    pub fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::AcqRel) != up
    }

    /// The pub/sub channel; the version in the name keeps replicas with another wire format apart.
    pub fn channel(&self) -> String {
        format!("{}:inv:v{}", self.prefix, super::bus::VERSION)
    }

    /// Cache entries of a tenant share a hash tag, so a cluster keeps them on one slot.
    /// `<prefix>:{<tenant>}:c:<hex key>`, built without the formatting machinery: it is named on
    /// every L2 read.
    fn entry_key(&self, tenant: TenantId, key: &Key) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 2 + 36 + 4 + 32);
        name.push_str(&self.prefix);
        name.push_str(":{");
        name.push_str(
            tenant
                .0
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer()),
        );
        name.push_str("}:c:");
        push_hex(&mut name, key);
        name
    }

    fn versions_key(&self, tenant: TenantId) -> String {
        format!("{}:{{{}}}:v", self.prefix, tenant)
    }

    /// The pattern matching every cache entry (not the versions) of this service.
    pub fn entries_pattern(&self) -> String {
        format!("{}:*:c:*", self.prefix)
    }

    /// The pattern matching every tenant's versions hash.
    pub fn versions_pattern(&self) -> String {
        format!("{}:*:v", self.prefix)
    }

    /// Opens a new shared connection and checks it answers; every thread's own connection is
    /// opened again on its next use. Never the old one again: it may sit on a flow that went
    /// silent, where it would wait for answers that never come.
    pub async fn connect(&self) -> RedisResult<()> {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut connection = tokio::time::timeout(self.timeout * 4, self.open())
            .await
            .map_err(|_| timed_out())??;
        self.bounded(redis::cmd("PING").query_async::<String>(&mut connection))
            .await?;
        if let Ok(mut slot) = self.connection.write() {
            *slot = Some(connection);
        }
        Ok(())
    }

    async fn open(&self) -> RedisResult<Shared> {
        match &self.target {
            Target::Single(_) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let connection = self.nodes[0]
                    .get_connection_manager_with_config(config)
                    .await?;
                Ok(Shared::Single(connection))
            }
            Target::Cluster(urls) => {
                let mut builder = ClusterClient::builder(urls.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .retries(1);
                if let Some(ca) = &self.ca {
                    builder = builder.certs(certificates(ca));
                }
                let client = builder.build()?;
                Ok(Shared::Cluster(client.get_async_connection().await?))
            }
        }
    }

    fn read_connection(&self) -> Option<Shared> {
        self.connection.read().ok().and_then(|slot| slot.clone())
    }

    /// A command connection, only while Redis is considered up: this thread's own (opened on
    /// first use), or the shared one if this thread cannot open its own.
    async fn connection(&self) -> RedisResult<Shared> {
        if !self.is_up() {
            return Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                "redis is down",
            )));
        }
        let epoch = self.epoch.load(Ordering::Acquire);
        if let Some(local) = self.local_connection(epoch) {
            return Ok(local);
        }
        match tokio::time::timeout(self.timeout * 4, self.open()).await {
            Ok(Ok(opened)) => Ok(LOCAL.with(|local| {
                let mut local = local.borrow_mut();
                local.retain(|entry| entry.id != self.id || entry.epoch >= epoch);
                // Another request of this thread may have opened one meanwhile: keep the first.
                match local.iter().find(|entry| entry.id == self.id) {
                    Some(first) => first.connection.clone(),
                    None => {
                        local.push(Local {
                            id: self.id,
                            epoch,
                            connection: opened.clone(),
                        });
                        opened
                    }
                }
            })),
            _ => self.any_connection(),
        }
    }

    /// This thread's connection of the current epoch, if it has one.
    fn local_connection(&self, epoch: u64) -> Option<Shared> {
        LOCAL.with(|local| {
            local
                .borrow()
                .iter()
                .find(|entry| entry.id == self.id && entry.epoch == epoch)
                .map(|entry| entry.connection.clone())
        })
    }

    async fn bounded<T>(
        &self,
        command: impl std::future::Future<Output = RedisResult<T>>,
    ) -> RedisResult<T> {
        tokio::time::timeout(self.timeout, command)
            .await
            .map_err(|_| timed_out())?
    }

    pub async fn get(&self, tenant: TenantId, key: &Key) -> RedisResult<Option<Entry>> {
        let mut connection = self.connection().await?;
        let bytes: Option<Vec<u8>> = self
            .bounded(connection.get(self.entry_key(tenant, key)))
            .await?;
        Ok(bytes.and_then(Entry::decode))
    }

    pub async fn set(&self, tenant: TenantId, key: &Key, entry: &Entry) -> RedisResult<()> {
        let millis = entry.remaining().as_millis() as u64;
        if millis == 0 {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        self.bounded(connection.pset_ex::<_, _, ()>(
            self.entry_key(tenant, key),
            entry.encode(),
            millis,
        ))
        .await
    }

    /// The tenant's versions, its namespace started (with a new epoch) if Redis lost it.
    pub async fn versions(&self, tenant: TenantId) -> RedisResult<Fetched> {
        let fields: HashMap<String, String> = self
            .namespace_on(self.connection().await?, tenant, None, None)
            .await?;
        parse_versions(&fields)
    }

    /// Numbers a write of `tenant` that changed `tags`, in one round trip (in a new epoch when
    /// Redis had lost the tenant's versions). `via` says which connection carries it.
    pub async fn increment(
        &self,
        via: Via,
        tenant: TenantId,
        tags: &[Tag],
    ) -> RedisResult<Numbered> {
        self.number(self.connection_for(via).await?, tenant, None, tags)
            .await
    }

    /// Starts the tenant's namespace over unless it already left `epoch`, and numbers the write
    /// there: its numbers went back (a server that lost writes), so entries of that epoch may be
    /// older than they say.
    pub async fn leave_epoch(
        &self,
        via: Via,
        tenant: TenantId,
        epoch: u64,
        tags: &[Tag],
    ) -> RedisResult<Numbered> {
        self.number(self.connection_for(via).await?, tenant, Some(epoch), tags)
            .await
    }

    async fn number(
        &self,
        connection: Shared,
        tenant: TenantId,
        leave: Option<u64>,
        tags: &[Tag],
    ) -> RedisResult<Numbered> {
        let fields: Vec<Option<String>> = self
            .namespace_on(connection, tenant, leave, Some(tags))
            .await?;
        let field = |at: usize| number(fields.get(at).and_then(Option::as_ref));
        Ok(Numbered {
            epoch: field(0)?,
            seq: field(1)?,
            floor: field(2)?,
        })
    }

    /// The shared connection even while Redis counts as down (the relay uses it on reconnect).
    fn any_connection(&self) -> RedisResult<Shared> {
        self.read_connection()
            .ok_or_else(|| RedisError::from(std::io::Error::other("redis not connected")))
    }

    async fn connection_for(&self, via: Via) -> RedisResult<Shared> {
        match via {
            Via::Worker => self.connection().await,
            Via::Shared => self.any_connection(),
        }
    }

    async fn namespace_on<T: redis::FromRedisValue>(
        &self,
        mut connection: Shared,
        tenant: TenantId,
        leave: Option<u64>,
        write: Option<&[Tag]>,
    ) -> RedisResult<T> {
        let mut invocation = NAMESPACE.key(self.versions_key(tenant));
        invocation
            .arg(rand::random::<u64>())
            .arg(leave.map(|epoch| epoch.to_string()).unwrap_or_default());
        match write {
            None => {
                invocation.arg("read");
            }
            Some(tags) => {
                invocation.arg("number").arg(MAX_TAGS);
                for tag in tags {
                    invocation.arg(format!("{:016x}", tag.0));
                }
            }
        }
        self.bounded(invocation.invoke_async(&mut connection)).await
    }

    pub async fn publish(&self, via: Via, message: &str) -> RedisResult<()> {
        self.publish_on(self.connection_for(via).await?, message)
            .await
    }

    async fn publish_on(&self, mut connection: Shared, message: &str) -> RedisResult<()> {
        self.bounded(connection.publish::<_, _, ()>(self.channel(), message))
            .await
    }
}
