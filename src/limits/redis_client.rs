//! Redis for the limits: where and how to reach it (the one topology the
//! config names, its ACL credentials and TLS roots) as checked settings,
//! and the client built from them. Errors name what is wrong without
//! echoing the URL or a password.

use std::fmt;
use std::time::Duration;

use crate::config::check::{ensure, fault, Lowered};
use crate::config::{expand, schema, Env, Secret};

/// How to reach Redis, checked: building a client from it cannot fail on
/// anything the config says. Prints no address or password.
#[derive(Clone)]
pub struct RedisConnection {
    topology: Topology,
    username: Option<String>,
    password: Option<String>,
    tls: Option<redis::TlsCertificates>,
    /// Connect and response timeout of a cluster's connections.
    timeout: Duration,
}

#[derive(Clone)]
enum Topology {
    Single(redis::ConnectionInfo),
    Cluster(Vec<redis::ConnectionInfo>),
    Sentinel {
        master_name: String,
        nodes: Vec<redis::ConnectionInfo>,
    },
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topology = match self.topology {
            Topology::Single(_) => "single",
            Topology::Cluster(_) => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        };
        write!(f, "RedisConnection({topology}, ***)")
    }
}

impl RedisConnection {
    /// The connection `limits.redis` names; `timeout` is already checked.
    pub fn lower(r: &schema::Redis, timeout: Duration, env: Env<'_>) -> Lowered<Self> {
        let at = "limits.redis";
        let named = [
            r.url.is_some(),
            !r.cluster_nodes.is_empty(),
            r.sentinel.is_some(),
        ];
        if named.iter().filter(|n| **n).count() != 1 {
            return fault(
                at,
                "needs exactly one of `url`, `cluster_nodes` and `sentinel`",
            );
        }
        let (username, password) = redis_credentials(r, env)?;
        let (topology, tls, field) = if let Some(url) = &r.url {
            let info = redis_url(&format!("{at}.url"), url, env)?;
            let tls = redis_tls(r, is_tls(&info))?;
            (Topology::Single(info), tls, format!("{at}.tls"))
        } else if let Some(sentinel) = &r.sentinel {
            ensure(
                !sentinel.master_name.is_empty(),
                || format!("{at}.sentinel.master_name"),
                "must not be empty",
            )?;
            ensure(
                !sentinel.nodes.is_empty(),
                || format!("{at}.sentinel.nodes"),
                "needs at least one sentinel",
            )?;
            let nodes = sentinel
                .nodes
                .iter()
                .enumerate()
                .map(|(i, url)| {
                    redis_url(
                        &format!("{at}.sentinel.nodes[{i}]"),
                        &Secret::new(url.clone()),
                        env,
                    )
                })
                .collect::<Lowered<Vec<_>>>()?;
            let tls = redis_tls(r, same_scheme(&nodes, &format!("{at}.sentinel.nodes"))?)?;
            let topology = Topology::Sentinel {
                master_name: sentinel.master_name.clone(),
                nodes,
            };
            (topology, tls, format!("{at}.sentinel"))
        } else {
            let nodes = r
                .cluster_nodes
                .iter()
                .enumerate()
                .map(|(i, url)| redis_url(&format!("{at}.cluster_nodes[{i}]"), url, env))
                .collect::<Lowered<Vec<_>>>()?;
            let tls = redis_tls(r, same_scheme(&nodes, &format!("{at}.cluster_nodes"))?)?;
            (Topology::Cluster(nodes), tls, format!("{at}.cluster_nodes"))
        };
        let connection = Self {
            topology,
            username,
            password,
            tls,
            timeout,
        };
        // Whatever the crate would refuse, refuse now, naming the field.
        connection
            .client()
            .or_else(|e| redis_setup_fault(&field, e))?;
        Ok(connection)
    }

    /// A client of the topology (no connection is made yet).
    pub fn client(&self) -> redis::RedisResult<RedisClient> {
        let tls = self.tls.clone();
        match &self.topology {
            Topology::Single(info) => {
                let mut settings = info.redis_settings().clone();
                if let Some(username) = &self.username {
                    settings = settings.set_username(username);
                }
                if let Some(password) = &self.password {
                    settings = settings.set_password(password);
                }
                let info = info.clone().set_redis_settings(settings);
                let client = match tls {
                    Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
                    None => redis::Client::open(info)?,
                };
                Ok(RedisClient::Single(client))
            }
            Topology::Sentinel { master_name, nodes } => Ok(RedisClient::Sentinel(RedisSentinel {
                master_name: master_name.clone(),
                nodes: nodes.clone(),
                username: self.username.clone(),
                password: self.password.clone(),
                tls,
            })),
            Topology::Cluster(nodes) => {
                let seeds = nodes.iter().map(|n| n.addr().to_string()).collect();
                let tls_urls = nodes.iter().all(is_tls);
                let mut builder = redis::cluster::ClusterClientBuilder::new(nodes.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    // A request never waits past the timeout: the retries the
                    // crate makes after MOVED or a failover all fit inside it,
                    // and more are the next request's to make.
                    .retries(2)
                    .min_retry_wait(5)
                    .max_retry_wait(50);
                if let Some(username) = &self.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &self.password {
                    builder = builder.password(password);
                }
                if tls_urls {
                    builder = builder.tls(redis::TlsMode::Secure);
                }
                if let Some(certificates) = tls {
                    builder = builder.certs(certificates);
                }
                Ok(RedisClient::Cluster {
                    client: Box::new(builder.build()?),
                    seeds,
                })
            }
        }
    }
}

/// Whether every node's URL is `rediss://`; a mix is refused.
fn same_scheme(nodes: &[redis::ConnectionInfo], field: &str) -> Lowered<bool> {
    let tls_urls = nodes.iter().all(is_tls);
    ensure(
        tls_urls || !nodes.iter().any(is_tls),
        || field.to_string(),
        "mixes redis:// and rediss:// URLs",
    )?;
    Ok(tls_urls)
}

/// A Redis client of the configured topology; its address may hold a
/// password, so it never prints.
#[derive(Clone)]
pub enum RedisClient {
    Single(redis::Client),
    Cluster {
        /// Boxed: the cluster client is several times the others' size.
        client: Box<redis::cluster::ClusterClient>,
        /// The configured nodes' addresses (`host:port`), for messages.
        seeds: Vec<String>,
    },
    Sentinel(RedisSentinel),
}

/// What finds the master through Sentinel: a client is built per
/// (re)connection, because the master moves.
#[derive(Clone)]
pub struct RedisSentinel {
    pub master_name: String,
    pub nodes: Vec<redis::ConnectionInfo>,
    /// Credentials and TLS for the master (`username`, `password`, `tls`).
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<redis::TlsCertificates>,
}

impl fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topology = match self {
            RedisClient::Single(_) => "single",
            RedisClient::Cluster { .. } => "cluster",
            RedisClient::Sentinel(_) => "sentinel",
        };
        write!(f, "RedisClient({topology}, ***)")
    }
}

/// The client for `limits.redis`: the URL, then the ACL user and password
/// and the TLS roots when set. Errors name what is wrong without echoing
/// the URL or a password.
/// A Redis node's URL (`redis://` or `rediss://`), `${ENV}` expanded.
fn redis_url(field: &str, url: &Secret, env: Env<'_>) -> Lowered<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let url = expand(field, url, env)?;
    ensure(
        url.expose().starts_with("redis://") || url.expose().starts_with("rediss://"),
        || field.to_string(),
        "must be a redis:// or rediss:// URL",
    )?;
    url.expose()
        .into_connection_info()
        .or_else(|e| fault(field, format!("not a usable Redis URL ({:?})", e.kind())))
}

fn is_tls(info: &redis::ConnectionInfo) -> bool {
    matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. })
}

/// `username` and `password` (ACL), `${ENV}` expanded.
fn redis_credentials(r: &schema::Redis, env: Env<'_>) -> Lowered<(Option<String>, Option<String>)> {
    let at = "limits.redis";
    if r.username.is_some() {
        ensure(
            r.password.is_some(),
            || format!("{at}.username"),
            "needs a `password` too",
        )?;
    }
    let expose = |field: &str, value: &Option<Secret>| {
        value
            .as_ref()
            .map(|v| expand(&format!("{at}.{field}"), v, env).map(|v| v.expose().to_string()))
            .transpose()
    };
    Ok((
        expose("username", &r.username)?,
        expose("password", &r.password)?,
    ))
}

/// The CA of `tls.ca_file`, checked against the URLs' schemes.
fn redis_tls(r: &schema::Redis, tls_urls: bool) -> Lowered<Option<redis::TlsCertificates>> {
    let at = "limits.redis";
    let Some(tls) = &r.tls else {
        return Ok(None);
    };
    ensure(
        tls_urls,
        || format!("{at}.tls"),
        "needs a rediss:// URL (TLS is the URL's scheme)",
    )?;
    let root_cert = match &tls.ca_file {
        Some(path) => Some(std::fs::read(path).or_else(|e| {
            fault(
                format!("{at}.tls.ca_file"),
                format!("cannot read {path}: {e}"),
            )
        })?),
        None => None,
    };
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert,
    }))
}

fn redis_setup_fault<T>(field: &str, e: redis::RedisError) -> Lowered<T> {
    fault(
        field,
        format!(
            "cannot set up the Redis client ({:?}: {})",
            e.kind(),
            e.detail().unwrap_or("")
        ),
    )
}
