//! Redis, for limits that hold across replicas. Every update is one atomic
//! Lua script on a key per rule, key and window, with an expiry; time comes
//! from Redis `TIME` so every replica agrees on window boundaries. Every call
//! is bounded by the configured timeout.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;
use tokio::sync::Mutex;

use super::connection::Connection;
use super::redis_client::RedisClient;

/// A window's counter is a hash with one field per replica: what that
/// replica took. After Redis failed, each replica raises its field to its
/// claim (what it knows it took) when Redis holds less: a Redis that lost
/// writes learns them again (see `claims.rs`).
const PRELUDE: &str = r#"
local function raise_to_claim(key, me, claim)
  local mine = tonumber(redis.call('HGET', key, me) or '0')
  if tonumber(claim) > mine then redis.call('HSET', key, me, claim) end
end
local function total(key)
  local used = 0
  for _, v in ipairs(redis.call('HVALS', key)) do used = used + tonumber(v) end
  return used
end
-- A replica that claims part of a window always has its field (fields are
-- never deleted while the window lasts): a missing one means Redis lost
-- the counter, restarted empty. The field is restored from the claim and
-- nothing is granted: the replica falls back to its share until every
-- replica restated what it took.
local function lost(key, me, claim, ttl)
  if tonumber(claim) > 0 and redis.call('HEXISTS', key, me) == 0 then
    redis.call('HSET', key, me, claim)
    redis.call('EXPIRE', key, ttl)
    return true
  end
  return false
end
"#;

/// Take up to `want` of what is left of `limit`; returns {granted, used
/// after}, or {-1, used} when Redis had lost the replica's part.
/// ARGV: limit, want, ttl, replica, claim.
const LEASE: &str = r#"
if lost(KEYS[1], ARGV[4], ARGV[5], ARGV[3]) then return {-1, total(KEYS[1])} end
local used = total(KEYS[1])
local left = tonumber(ARGV[1]) - used
local grant = 0
if left > 0 then
  grant = math.min(left, tonumber(ARGV[2]))
  redis.call('HINCRBY', KEYS[1], ARGV[4], grant)
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {grant, used + grant}
"#;

/// Charge `n` if it fits under `limit`; returns {admitted 0/1, used after},
/// or {-1, used} when Redis had lost the replica's part.
/// ARGV: limit, n, ttl, replica, claim.
const CHARGE: &str = r#"
if lost(KEYS[1], ARGV[4], ARGV[5], ARGV[3]) then return {-1, total(KEYS[1])} end
local used = total(KEYS[1])
local n = tonumber(ARGV[2])
if used + n > tonumber(ARGV[1]) then return {0, used} end
redis.call('HINCRBY', KEYS[1], ARGV[4], n)
-- After the write that may have created the key: an EXPIRE on a missing
-- key does nothing, and the counter would never go.
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, used + n}
"#;

/// Add `delta` (negative to give back) to the replica's part without a
/// limit check, never below zero; returns the window's total.
/// ARGV: delta, ttl, replica.
const ADJUST: &str = r#"
local mine = redis.call('HINCRBY', KEYS[1], ARGV[3], ARGV[1])
if mine < 0 then redis.call('HSET', KEYS[1], ARGV[3], 0) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return total(KEYS[1])
"#;

/// Raise the replica's part to its claim; returns the window's total.
/// ARGV: claim, ttl, replica.
const CLAIM: &str = r#"
raise_to_claim(KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return total(KEYS[1])
"#;

/// The marker of Redis' data: a token set at first use, gone when Redis
/// restarts empty. ARGV: the token to set when there is none.
const MARKER: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  v = ARGV[1]
  redis.call('SET', KEYS[1], v)
end
return v
"#;

/// Where the marker lives.
pub const MARKER_KEY: &str = "aigw:marker";

/// Concurrency slots: a hash of `held@expiry_ms` per replica. Fields whose
/// expiry passed are removed; the caller's field is set to what it holds
/// plus what it is granted. ARGV: limit, want, replica, held, now_ms, ttl_ms.
/// Returns {granted, held by all after}.
const SLOTS_TAKE: &str = r#"
local others = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local n, expiry = string.match(fields[i + 1], '^(%d+)@(%d+)$')
  if n == nil or tonumber(expiry) < tonumber(ARGV[5]) then
    redis.call('HDEL', KEYS[1], fields[i])
  elseif fields[i] ~= ARGV[3] then
    others = others + tonumber(n)
  end
end
local held = tonumber(ARGV[4])
local grant = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) - others - held))
local expiry = tonumber(ARGV[5]) + tonumber(ARGV[6])
redis.call('HSET', KEYS[1], ARGV[3], string.format('%d@%d', held + grant, expiry))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return {grant, others + held + grant}
"#;

/// The heartbeat: sets the caller's field to what it holds, with a new
/// expiry (removed when it holds none). ARGV: replica, held, now_ms, ttl_ms.
const SLOTS_HOLD: &str = r#"
if tonumber(ARGV[2]) == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  local expiry = tonumber(ARGV[3]) + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], ARGV[1], string.format('%d@%d', tonumber(ARGV[2]), expiry))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}{body}"))
}

/// This machine's clock, in milliseconds since the epoch.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub struct RedisStore {
    client: RedisClient,
    conn: Mutex<Option<Connection>>,
    timeout: Duration,
    lease: Script,
    charge: Script,
    adjust: Script,
    claim: Script,
    slots_take: Script,
    slots_hold: Script,
    marker: Script,
    /// This replica's field in every counter.
    replica: String,
    /// Redis time minus local time, in milliseconds.
    clock_offset_ms: AtomicI64,
    /// Local time (ms) of the last successful Redis call.
    last_ok_ms: AtomicU64,
    /// While Redis is failing, requests do not wait on it: they go straight
    /// to the failure policy until this time (cluster clock, ms); the sync
    /// task keeps probing.
    retry_at_ms: AtomicU64,
}

#[derive(Debug)]
pub struct StoreError(pub String);

/// Redis had lost this replica's part of a window (it restarted empty);
/// the part is restored from the claim and nothing was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost;

/// The Redis keys of a budget counter's window (see `limits/spend.rs`).
pub struct SpendKeys {
    /// Settled spend (micro-USD).
    pub spent: String,
    /// Reservations in flight: one field per replica, `amount@time_ms`.
    pub reserved: String,
}

impl RedisStore {
    pub fn new(client: RedisClient, timeout: Duration, replica: &str) -> Self {
        Self {
            client,
            conn: Mutex::new(None),
            timeout,
            lease: script(LEASE),
            charge: script(CHARGE),
            adjust: script(ADJUST),
            claim: script(CLAIM),
            slots_take: Script::new(SLOTS_TAKE),
            slots_hold: Script::new(SLOTS_HOLD),
            marker: Script::new(MARKER),
            replica: replica.to_string(),
            clock_offset_ms: AtomicI64::new(0),
            last_ok_ms: AtomicU64::new(0),
            retry_at_ms: AtomicU64::new(0),
        }
    }

    /// Whether requests should skip Redis for now (it failed recently).
    pub fn backing_off(&self, now_ms: u64) -> bool {
        now_ms < self.retry_at_ms.load(Ordering::Relaxed)
    }

    /// Redis failed: skip it until `until_ms`.
    pub fn back_off(&self, until_ms: u64) {
        self.retry_at_ms.store(until_ms, Ordering::Relaxed);
    }

    /// Redis answered: ask it again.
    pub fn clear_backoff(&self) {
        self.retry_at_ms.store(0, Ordering::Relaxed);
    }

    /// Now on the cluster's clock (local time corrected by Redis `TIME`).
    pub fn now_ms(&self) -> u64 {
        (epoch_ms() as i64 + self.clock_offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// Seconds since the last successful Redis call (for the sync-age gauge).
    pub fn last_ok_age_secs(&self) -> f64 {
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        if last == 0 {
            return f64::INFINITY;
        }
        epoch_ms().saturating_sub(last) as f64 / 1000.0
    }

    async fn connection(&self) -> Result<Connection, StoreError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let conn = Connection::open(&self.client, self.timeout)
            .await
            .map_err(StoreError)?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// After a failure on a connection that does not recover by itself
    /// (Sentinel's master), the next call finds the master again.
    async fn forget(&self, conn: &Connection) {
        if conn.rediscover_after_errors() {
            *self.conn.lock().await = None;
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.query(|mut conn| async move { invocation.invoke_async::<T>(&mut conn).await })
            .await
    }

    /// Leases up to `want` of the window's budget, this replica having
    /// `claim` of it already: (granted, used after), or [`Lost`].
    pub async fn lease(
        &self,
        key: &str,
        limit: u64,
        want: u64,
        ttl_secs: u64,
        claim: u64,
    ) -> Result<Result<(u64, u64), Lost>, StoreError> {
        let mut inv = self.lease.prepare_invoke();
        inv.key(key)
            .arg(limit)
            .arg(want)
            .arg(ttl_secs)
            .arg(&self.replica)
            .arg(claim);
        let (granted, used): (i64, u64) = self.run(inv).await?;
        Ok(u64::try_from(granted).map(|g| (g, used)).map_err(|_| Lost))
    }

    /// Charges `n` when it fits, this replica having `claim` of the window
    /// already: (admitted, used after), or [`Lost`].
    pub async fn charge(
        &self,
        key: &str,
        limit: u64,
        n: u64,
        ttl_secs: u64,
        claim: u64,
    ) -> Result<Result<(bool, u64), Lost>, StoreError> {
        let mut inv = self.charge.prepare_invoke();
        inv.key(key)
            .arg(limit)
            .arg(n)
            .arg(ttl_secs)
            .arg(&self.replica)
            .arg(claim);
        let (admitted, used): (i64, u64) = self.run(inv).await?;
        Ok(if admitted < 0 {
            Err(Lost)
        } else {
            Ok((admitted == 1, used))
        })
    }

    /// The marker of Redis' data, set to `candidate` if Redis has none: a
    /// marker other than the last one read means Redis lost its data.
    pub async fn marker(&self, candidate: &str) -> Result<String, StoreError> {
        let mut inv = self.marker.prepare_invoke();
        inv.key(MARKER_KEY).arg(candidate);
        self.run(inv).await
    }

    /// Whether Redis writes an append-only file (`INFO persistence`);
    /// `None` when it does not say.
    pub async fn appends_to_disk(&self) -> Result<Option<bool>, StoreError> {
        let info: String = self
            .query(|mut conn| async move {
                redis::cmd("INFO")
                    .arg("persistence")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(info
            .lines()
            .find_map(|l| l.trim().strip_prefix("aof_enabled:"))
            .map(|v| v == "1"))
    }

    /// Adds `delta` to this replica's part (negative gives budget back).
    pub async fn adjust(&self, key: &str, delta: i64, ttl_secs: u64) -> Result<u64, StoreError> {
        let mut inv = self.adjust.prepare_invoke();
        inv.key(key).arg(delta).arg(ttl_secs).arg(&self.replica);
        self.run(inv).await
    }

    /// Raises this replica's part to `claim`; the window's total.
    pub async fn claim(&self, key: &str, claim: u64, ttl_secs: u64) -> Result<u64, StoreError> {
        let mut inv = self.claim.prepare_invoke();
        inv.key(key).arg(claim).arg(ttl_secs).arg(&self.replica);
        self.run(inv).await
    }

    /// Asks for `want` more concurrency slots on top of the `held` this
    /// replica holds: (granted, held by all replicas after).
    pub async fn take_slots(
        &self,
        key: &str,
        limit: u64,
        want: u64,
        held: u64,
        ttl_ms: u64,
    ) -> Result<(u64, u64), StoreError> {
        let mut inv = self.slots_take.prepare_invoke();
        inv.key(key)
            .arg(limit)
            .arg(want)
            .arg(&self.replica)
            .arg(held)
            .arg(self.now_ms())
            .arg(ttl_ms);
        self.run(inv).await
    }

    /// Tells Redis this replica holds `held` slots of the counter, for
    /// another `ttl_ms`.
    pub async fn hold_slots(&self, key: &str, held: u64, ttl_ms: u64) -> Result<(), StoreError> {
        let mut inv = self.slots_hold.prepare_invoke();
        inv.key(key)
            .arg(&self.replica)
            .arg(held)
            .arg(self.now_ms())
            .arg(ttl_ms);
        let _: u64 = self.run(inv).await?;
        Ok(())
    }

    /// One script, command or pipeline on a connection, bounded by the
    /// timeout.
    async fn query<T, Run, Answer>(&self, run: Run) -> Result<T, StoreError>
    where
        Run: FnOnce(Connection) -> Answer,
        Answer: std::future::Future<Output = redis::RedisResult<T>>,
    {
        // One deadline for connecting and the call together: a request
        // never waits on Redis longer than the timeout.
        let mut used = None;
        let call = async {
            let conn = self.connection().await?;
            used = Some(conn.clone());
            run(conn).await.map_err(|e| StoreError(e.to_string()))
        };
        let result = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| StoreError("timed out".into()))
            .and_then(|r| r);
        match (&result, used) {
            (Ok(_), _) => self.last_ok_ms.store(epoch_ms(), Ordering::Relaxed),
            (Err(_), Some(conn)) => self.forget(&conn).await,
            (Err(_), None) => {}
        }
        result
    }

    /// Whether the store is a Redis Cluster (no multi-key transactions).
    fn is_cluster(&self) -> bool {
        matches!(self.client, RedisClient::Cluster { .. })
    }

    /// Adds settled spend to a window's spend key and publishes this
    /// replica's reservation (`amount@time_ms`) in the window's hash.
    pub async fn send_spend(
        &self,
        keys: &SpendKeys,
        spent: u64,
        reserved: Option<(&str, u64, u64)>,
        ttl_secs: u64,
    ) -> Result<(), StoreError> {
        let mut spent_cmds = redis::pipe();
        if spent > 0 {
            spent_cmds
                .cmd("INCRBY")
                .arg(&keys.spent)
                .arg(spent)
                .ignore();
            spent_cmds
                .cmd("EXPIRE")
                .arg(&keys.spent)
                .arg(ttl_secs)
                .ignore();
        }
        let mut reserved_cmds = redis::pipe();
        if let Some((replica, amount, now_ms)) = reserved {
            reserved_cmds
                .cmd("HSET")
                .arg(&keys.reserved)
                .arg(replica)
                .arg(format!("{amount}@{now_ms}"))
                .ignore();
            reserved_cmds
                .cmd("EXPIRE")
                .arg(&keys.reserved)
                .arg(ttl_secs)
                .ignore();
        }
        for pipe in self.per_slot([spent_cmds, reserved_cmds]) {
            if pipe.cmd_iter().next().is_some() {
                self.query(|mut conn| async move { pipe.query_async::<()>(&mut conn).await })
                    .await?;
            }
        }
        Ok(())
    }

    /// A window's settled spend and every replica's published reservation.
    pub async fn read_spend(
        &self,
        keys: &SpendKeys,
    ) -> Result<(u64, Vec<(String, String)>), StoreError> {
        let mut spent_cmd = redis::pipe();
        spent_cmd.cmd("GET").arg(&keys.spent);
        let mut reserved_cmd = redis::pipe();
        reserved_cmd.cmd("HGETALL").arg(&keys.reserved);
        let mut values = Vec::with_capacity(2);
        for pipe in self.per_slot([spent_cmd, reserved_cmd]) {
            let answers: Vec<redis::Value> = self
                .query(|mut conn| async move { pipe.query_async(&mut conn).await })
                .await?;
            values.extend(answers);
        }
        let [spent, reserved] = <[redis::Value; 2]>::try_from(values)
            .map_err(|_| StoreError("two answers expected".into()))?;
        let spent: Option<u64> =
            redis::from_redis_value(spent).map_err(|e| StoreError(e.to_string()))?;
        let reserved: Vec<(String, String)> =
            redis::from_redis_value(reserved).map_err(|e| StoreError(e.to_string()))?;
        Ok((spent.unwrap_or(0), reserved))
    }

    /// A budget's two keys together: one atomic pipeline on one node; on a
    /// cluster, where they are in different slots and a pipeline must stay
    /// in one, a pipeline each (a reader may then see one update before the
    /// other for a moment).
    fn per_slot(&self, pipes: [redis::Pipeline; 2]) -> Vec<redis::Pipeline> {
        if self.is_cluster() {
            return pipes.into();
        }
        let mut one = redis::pipe();
        one.atomic();
        for cmd in pipes.iter().flat_map(|p| p.cmd_iter()) {
            one.add_command(cmd.clone());
        }
        vec![one]
    }

    /// Keys matching `pattern` (`SCAN`, so Redis never blocks; every master
    /// of a cluster), at most `max`.
    pub async fn scan(&self, pattern: &str, max: usize) -> Result<Vec<String>, StoreError> {
        // Each SCAN call is bounded by the connection's response timeout;
        // the whole walk, by a hundred of them.
        let conn = self.connection().await?;
        let walk = async {
            let mut conn = conn.clone();
            conn.scan(pattern, max).await
        };
        match tokio::time::timeout(self.timeout * 100, walk).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(e)) => {
                self.forget(&conn).await;
                Err(StoreError(e.to_string()))
            }
            Err(_) => Err(StoreError("timed out".into())),
        }
    }

    /// Where the store connects (never the password): `host:port`, the
    /// cluster's first seed, or the Sentinel master's name and sentinels.
    pub fn address(&self) -> String {
        match &self.client {
            RedisClient::Single(client) => client.get_connection_info().addr().to_string(),
            RedisClient::Cluster { seeds, .. } => format!("cluster {}", seeds.join(", ")),
            RedisClient::Sentinel(sentinel) => {
                let nodes: Vec<String> = sentinel
                    .nodes
                    .iter()
                    .map(|n| n.addr().to_string())
                    .collect();
                format!(
                    "sentinel master {} via {}",
                    sentinel.master_name,
                    nodes.join(", ")
                )
            }
        }
    }

    /// One `PING`; its round trip.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let start = std::time::Instant::now();
        let _: String = self
            .query(|mut conn| async move { redis::cmd("PING").query_async(&mut conn).await })
            .await?;
        Ok(start.elapsed())
    }

    /// Redis time minus this machine's, in milliseconds (after a sync).
    pub fn clock_offset_ms(&self) -> i64 {
        self.clock_offset_ms.load(Ordering::Relaxed)
    }

    /// Re-reads Redis `TIME` to keep window boundaries shared.
    pub async fn sync_clock(&self) -> Result<(), StoreError> {
        let before = epoch_ms();
        let (secs, micros): (u64, u64) = self
            .query(|mut conn| async move { redis::cmd("TIME").query_async(&mut conn).await })
            .await?;
        let after = epoch_ms();
        let redis_ms = secs * 1000 + micros / 1000;
        let local_mid = (before + after) / 2;
        self.clock_offset_ms
            .store(redis_ms as i64 - local_mid as i64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On Redis Cluster a script may only touch keys of one hash slot: each
    /// of these touches exactly one key, `KEYS[1]`, and names no key in an
    /// argument.
    #[test]
    fn every_script_touches_one_key() {
        for script in [
            PRELUDE, LEASE, CHARGE, ADJUST, CLAIM, SLOTS_TAKE, SLOTS_HOLD, MARKER,
        ] {
            let keys: Vec<&str> = script
                .match_indices("KEYS[")
                .map(|(i, _)| &script[i..i + 7])
                .collect();
            assert!(keys.iter().all(|k| *k == "KEYS[1]"), "{script}");
            assert!(!script.contains("redis.call('GET', ARGV"), "{script}");
        }
    }
}
