//! A Sentinel deployment of the tests' own.

use std::time::{Duration, Instant};

use super::super::{free_port, redis_server_args};
use super::{cli, Node, PASSWORD};

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
