//! A Redis Cluster of the tests' own.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::super::pki::TestCa;
use super::super::{free_port, redis_server_args};
use super::{cli, counter_at, Node, CLI_TLS, PASSWORD};

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
