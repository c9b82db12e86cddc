//! One connection to the limits' Redis, whatever its topology: a single
//! node (a connection manager that reconnects by itself), Redis Cluster (the
//! crate's cluster connection: it discovers the slots, follows MOVED and ASK,
//! and picks up a promoted replica), or a master found through Sentinel
//! (asked again after any failure, because the master moves).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::redis_client::{RedisClient, RedisSentinel};

#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl Connection {
    pub async fn open(client: &RedisClient, timeout: Duration) -> Result<Self, String> {
        // Boxed: the crate's connect futures (the cluster's above all) are
        // deep types, and every request's future would carry them.
        let connecting: std::pin::Pin<
            Box<dyn std::future::Future<Output = redis::RedisResult<Self>> + Send + '_>,
        > = Box::pin(async move {
            match client {
                RedisClient::Single(client) => {
                    let config = redis::aio::ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(timeout))
                        .set_response_timeout(Some(timeout))
                        .set_number_of_retries(1);
                    client
                        .get_connection_manager_with_config(config)
                        .await
                        .map(Connection::Single)
                }
                RedisClient::Cluster { client, .. } => {
                    client.get_async_connection().await.map(Connection::Cluster)
                }
                RedisClient::Sentinel(sentinel) => {
                    master(sentinel, timeout).await.map(Connection::Sentinel)
                }
            }
        });
        tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect: {e}"))
    }

    /// Whether a failed call should drop this connection so the next one
    /// finds the topology again. A single node's manager and the cluster
    /// connection recover by themselves; a Sentinel master may have moved.
    pub fn rediscover_after_errors(&self) -> bool {
        matches!(self, Connection::Sentinel(_))
    }

    /// `SCAN` for keys matching `pattern`, at most `max`: on a cluster, on
    /// every master in turn.
    pub async fn scan(&mut self, pattern: &str, max: usize) -> redis::RedisResult<Vec<String>> {
        let nodes = match self {
            Connection::Cluster(cluster) => masters(cluster).await?,
            _ => vec![None],
        };
        let mut keys = Vec::new();
        for node in nodes {
            let mut cursor = 0u64;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let (next, batch): (u64, Vec<String>) = match (&mut *self, &node) {
                    (Connection::Cluster(cluster), Some((host, port))) => {
                        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                            host: host.clone(),
                            port: *port,
                        });
                        redis::from_redis_value(cluster.route_command(cmd, routing).await?)?
                    }
                    (conn, _) => cmd.query_async(conn).await?,
                };
                keys.extend(batch);
                if keys.len() >= max {
                    keys.truncate(max);
                    return Ok(keys);
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }
}

/// The master Sentinel names now, connected.
async fn master(
    sentinel: &RedisSentinel,
    timeout: Duration,
) -> redis::RedisResult<MultiplexedConnection> {
    let tls = sentinel
        .nodes
        .first()
        .is_some_and(|n| matches!(n.addr(), redis::ConnectionAddr::TcpTls { .. }));
    let mut builder = SentinelClientBuilder::new(
        sentinel.nodes.iter().map(|n| n.addr().clone()),
        &sentinel.master_name,
        SentinelServerType::Master,
    )?;
    if let Some(username) = &sentinel.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &sentinel.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if tls {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
        if let Some(certificates) = &sentinel.tls {
            builder = builder
                .set_client_to_redis_certificates(certificates.clone())
                .set_client_to_sentinel_certificates(certificates.clone());
        }
    }
    let mut client = builder.build()?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    client.get_async_connection_with_config(&config).await
}

/// The cluster's masters (host, port), from `CLUSTER SLOTS`.
async fn masters(
    cluster: &mut ClusterConnection,
) -> redis::RedisResult<Vec<Option<(String, u16)>>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(cluster)
        .await?;
    let mut out: Vec<Option<(String, u16)>> = Vec::new();
    for range in slots {
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(master)) = parts.get(2) else {
            continue;
        };
        let host: Option<String> = master
            .first()
            .and_then(|v| redis::from_redis_value_ref(v).ok());
        let port: Option<u16> = master
            .get(1)
            .and_then(|v| redis::from_redis_value_ref(v).ok());
        if let (Some(host), Some(port)) = (host, port) {
            let node = Some((host, port));
            if !out.contains(&node) {
                out.push(node);
            }
        }
    }
    Ok(out)
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}
