//! Redis Cluster and Sentinel deployments of the tests' own: real
//! redis-server processes on free ports, with failover timers of about a
//! second so a failover fits in a test. Killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::pki::TestCa;
use super::{free_port, redis_server_args};

/// `redis-cli` flags for a test process whose deployment speaks only TLS
/// (set once, by [`RedisCluster::start_tls`]).
static CLI_TLS: OnceLock<Vec<String>> = OnceLock::new();

/// A node process: redis-server in cluster or sentinel mode, or plain.
struct Node {
    port: u16,
    child: Option<Child>,
}

impl Node {
    fn spawn(port: u16, args: &[String], dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("redis-server")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (apt-get install redis-server)");
        let node = Self {
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while cli(port, &["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis on {port} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// SIGKILL: no goodbye, as a crashed pod.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A limit counter's window total on the node at `port`.
pub fn counter_at(port: u16, key: &str) -> u64 {
    cli(port, &["HVALS", key])
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum()
}

/// The password every node of these deployments requires (sentinels
/// excepted): the gateway authenticates as Redis' default user.
pub const PASSWORD: &str = "limits-secret-7c2e";

/// `redis-cli -p PORT args...`: its output (empty when it cannot connect).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(CLI_TLS.get().into_iter().flatten())
        .args(["-a", PASSWORD, "--no-auth-warning"])
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Three masters and three replicas, `cluster-node-timeout` 1 s, every node
/// requiring `PASSWORD`.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Every node requires `PASSWORD` (`requirepass`, `masterauth`).
    pub fn start() -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), &[])
    }

    /// The same, speaking only TLS (clients, the cluster bus and
    /// replication) with a certificate for 127.0.0.1 from a CA of the
    /// test's own; returns the CA file for `limits.redis.tls.ca_file`.
    pub fn start_tls() -> (Self, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("redis CA");
        let ca_file = ca.write(dir.path(), "redis-ca.pem");
        let (cert, key) = ca
            .server(&["127.0.0.1", "localhost"], "redis")
            .write(dir.path(), "redis");
        let _ = CLI_TLS.set(vec![
            "--tls".into(),
            "--cacert".into(),
            ca_file.display().to_string(),
        ]);
        let tls = [
            "--tls-cert-file",
            &cert.display().to_string(),
            "--tls-key-file",
            &key.display().to_string(),
            "--tls-ca-cert-file",
            &ca_file.display().to_string(),
            "--tls-auth-clients",
            "no",
            "--tls-cluster",
            "yes",
            "--tls-replication",
            "yes",
        ]
        .map(String::from);
        (Self::start_with(dir, &tls), ca_file)
    }

    fn start_with(dir: tempfile::TempDir, tls: &[String]) -> Self {
        let nodes: Vec<Node> = (0..6)
            .map(|i| {
                let port = free_port();
                let mut args = redis_server_args(port);
                if !tls.is_empty() {
                    // Only TLS: the plain port closed, the TLS one opened.
                    args[1] = "0".into();
                    args.extend(["--tls-port".to_string(), port.to_string()]);
                    args.extend(tls.iter().cloned());
                }
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "1000",
                        "--requirepass",
                        PASSWORD,
                        "--masterauth",
                        PASSWORD,
                    ]
                    .map(String::from),
                );
                Node::spawn(port, &args, &dir.path().join(format!("node{i}")))
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(CLI_TLS.get().into_iter().flatten())
            .args(["-a", PASSWORD, "--no-auth-warning", "--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let cluster = Self { nodes, _dir: dir };
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    }

    /// The seed URLs for `limits.redis.cluster_nodes` (a YAML flow list of
    /// three nodes: the gateway discovers the rest).
    pub fn nodes_yaml(&self) -> String {
        let scheme = if CLI_TLS.get().is_some() {
            "rediss"
        } else {
            "redis"
        };
        let urls: Vec<String> = self.nodes[..3]
            .iter()
            .map(|n| format!("\"{scheme}://127.0.0.1:{}\"", n.port))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    fn alive(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.child.is_some())
    }

    /// Until every live node says `cluster_state:ok` and sees three masters.
    pub fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.alive().all(|n| {
                let info = cli(n.port, &["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok")
            }) && self.master_ports().len() == 3;
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster is not ok");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ports of the masters serving slots, as a live node sees them.
    pub fn master_ports(&self) -> Vec<u16> {
        let Some(node) = self.alive().next() else {
            return Vec::new();
        };
        cli(node.port, &["CLUSTER", "NODES"])
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail") && l.split(' ').count() > 8)
            .filter_map(|l| {
                let address = l.split(' ').nth(1)?;
                address.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect()
    }

    /// The port of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> u16 {
        let node = self.alive().next().expect("a live node").port;
        let slot: u16 = cli(node, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("slot");
        for line in cli(node, &["CLUSTER", "NODES"]).lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            if !fields.get(2).is_some_and(|f| f.contains("master")) || fields.len() < 9 {
                continue;
            }
            let serves = fields[8..].iter().any(|range| {
                let (a, b) = range.split_once('-').unwrap_or((range, range));
                match (a.parse::<u16>(), b.parse::<u16>()) {
                    (Ok(a), Ok(b)) => (a..=b).contains(&slot),
                    _ => false,
                }
            });
            if serves {
                return fields[1]
                    .split(['@', ':'])
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .expect("port");
            }
        }
        panic!("no master serves slot {slot}");
    }

    pub fn kill(&mut self, port: u16) {
        for node in &mut self.nodes {
            if node.port == port {
                node.kill();
            }
        }
    }

    /// A limit counter's window total (the sum of every replica's part),
    /// read on the master of its slot.
    pub fn counter(&self, key: &str) -> u64 {
        counter_at(self.master_of(key), key)
    }
}

/// One master, one replica and three sentinels watching them, with
/// `down-after-milliseconds` 1 s; master and replica require `PASSWORD`.
pub struct RedisSentinels {
    master: Node,
    replica: Node,
    sentinels: Vec<Node>,
    pub master_name: String,
    _dir: tempfile::TempDir,
}

impl RedisSentinels {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master_port = free_port();
        let auth = ["--requirepass", PASSWORD, "--masterauth", PASSWORD].map(String::from);
        let mut args = redis_server_args(master_port);
        args.extend(auth.clone());
        let master = Node::spawn(master_port, &args, &dir.path().join("master"));
        let replica_port = free_port();
        let mut args = redis_server_args(replica_port);
        args.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        args.extend(auth);
        let replica = Node::spawn(replica_port, &args, &dir.path().join("replica"));
        let master_name = "gateway-limits".to_string();
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let node_dir = dir.path().join(format!("sentinel{i}"));
                std::fs::create_dir_all(&node_dir).unwrap();
                let conf = node_dir.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\nsentinel monitor {master_name} 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds {master_name} 1000\nsentinel failover-timeout {master_name} 5000\n\
                         sentinel parallel-syncs {master_name} 1\nsentinel auth-pass {master_name} {PASSWORD}\n"
                    ),
                )
                .unwrap();
                Node::spawn(
                    port,
                    &[conf.display().to_string(), "--sentinel".into()],
                    &node_dir,
                )
            })
            .collect();
        let deployment = Self {
            master,
            replica,
            sentinels,
            master_name,
            _dir: dir,
        };
        // The sentinels have found the replica and each other.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !deployment.sentinels.iter().all(|s| {
            let replicas = cli(s.port, &["SENTINEL", "REPLICAS", &deployment.master_name]);
            let peers = cli(s.port, &["SENTINEL", "SENTINELS", &deployment.master_name]);
            replicas.contains(&deployment.replica.port.to_string())
                && peers.lines().filter(|l| *l == "name").count() >= 2
        }) {
            assert!(Instant::now() < deadline, "the sentinels did not settle");
            std::thread::sleep(Duration::from_millis(200));
        }
        deployment
    }

    pub fn nodes_yaml(&self) -> String {
        let urls: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("\"redis://127.0.0.1:{}\"", s.port))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// The port the sentinels name as master now.
    pub fn current_master(&self) -> Option<u16> {
        let sentinel = self.sentinels.first()?.port;
        let out = cli(
            sentinel,
            &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.master_name],
        );
        out.lines().nth(1)?.trim().parse().ok()
    }
}
