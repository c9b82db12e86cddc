//! The binary's command line and config checks: `-t` validates and exits,
//! and a bad file fails at start naming the file, the field and the fault.

mod common;

use std::process::Command;

use common::repo_path;

fn gateway(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run the gateway");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path.display().to_string())
}

#[test]
fn shipped_configs_validate() {
    let demo = repo_path("conf/demo.yaml");
    let (code, out) = gateway(&["-t", "-c", demo.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration is valid"), "{out}");

    let prod = repo_path("conf/gateway.yaml");
    let env = [
        ("OPENAI_API_KEY", "sk-x"),
        ("ANTHROPIC_API_KEY", "sk-ant-x"),
        ("AZURE_OPENAI_API_KEY", "az-x"),
        ("GEMINI_API_KEY", "gm-x"),
        ("GATEWAY_TEAM_A_KEY", "sk-team-a"),
    ];
    let (code, out) = gateway(&["-t", "-c", prod.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}");

    // The config the Kubernetes manifests ship, with the secret's variables.
    let configmap: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_path("deploy/base/configmap.yaml")).expect("configmap"),
    )
    .expect("configmap YAML");
    let text = configmap["data"]["gateway.yaml"]
        .as_str()
        .expect("data.gateway.yaml");
    // The TLS secret's files, made here where the pod would mount them.
    let tls_dir = tempfile::tempdir().unwrap();
    let ca = common::pki::TestCa::new("deploy CA");
    ca.server(&["ai-api-gateway"], "ai-api-gateway")
        .write(tls_dir.path(), "tls");
    assert!(text.contains("/etc/ai-api-gateway/tls/tls.crt"), "{text}");
    let text = text.replace(
        "/etc/ai-api-gateway/tls",
        &tls_dir.path().display().to_string(),
    );
    let (_dir, path) = write_config(&text);
    let env = [
        ("OPENAI_API_KEY", "sk-x"),
        ("ANTHROPIC_API_KEY", "sk-ant-x"),
        ("GATEWAY_TEAM_A_KEY", "sk-team-a"),
        ("ADMIN_TOKEN", "replace-me-with-a-random-token"),
    ];
    let (code, out) = gateway(&["-t", "-c", &path], &env);
    assert_eq!(code, 0, "deploy/base/configmap.yaml: {out}");
}

#[test]
fn production_config_names_a_missing_secret() {
    let prod = repo_path("conf/gateway.yaml");
    let (code, out) = gateway(
        &["-t", "-c", prod.to_str().unwrap()],
        &[
            ("ANTHROPIC_API_KEY", "x"),
            ("AZURE_OPENAI_API_KEY", "x"),
            ("GEMINI_API_KEY", "x"),
            ("GATEWAY_TEAM_A_KEY", "y"),
        ],
    );
    assert_ne!(code, 0);
    assert!(out.contains("gateway.yaml: upstreams.openai.backends[0].api_key: environment variable `OPENAI_API_KEY` is not set"), "{out}");
}

#[test]
fn bad_files_fail_with_file_field_and_fault() {
    let cases = [
        ("upstreams: {}\nroutes: []\n", "upstreams: needs at least one pool"),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: ftp://x\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "upstreams.a.backends[0].base_url: unsupported scheme `ftp`",
        ),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: b}\n",
            "routes[0].upstream: no upstream pool is named `b`",
        ),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\n        wieght: 2\nroutes: []\n",
            "unknown field `wieght`",
        ),
        ("listen: {proxy: [nowhere]}\nupstreams: {}\nroutes: []\n", "listen.proxy[0]"),
        ("routes: [\n", "line 2"),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1/chat/completions], models: [m], upstream: a, fallbacks: [nowhere]}\n",
            "routes[0].fallbacks[0]: no route serves the model `nowhere`",
        ),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1/chat/completions], models: [\"m*\"], upstream: a, fallbacks: [m2]}\n",
            "routes[0].fallbacks[0]: this route serves `m2` itself",
        ),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1/chat/completions], models: [m], upstream: a, fallbacks: [a, b, c, d, e, f]}\n  - {name: o, paths: [/v1/chat/completions], models: [\"*\"], upstream: a}\n",
            "routes[0].fallbacks: lists 6 models; at most 5",
        ),
        (
            "auth:\n  api_keys:\n    - {id: a, sha256: nothex}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "auth.api_keys[0].sha256: must be 64 hex digits",
        ),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a, auth: [jwt]}\n",
            "routes[0].auth: `jwt` needs an `auth.jwt` section",
        ),
        (
            "auth:\n  jwt:\n    keys:\n      - {algorithms: [RS256, ES256], public_key_file: /etc/hostname}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "auth.jwt.keys[0].algorithms: one key's algorithms must be of one family",
        ),
        (
            "auth:\n  jwt:\n    oidc: {issuer_url: http://login.example.com}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "auth.jwt.oidc.issuer_url: `http://login.example.com` must use https",
        ),
        (
            "request:\n  idle_timeout: 100y\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "request.idle_timeout: must be at most 24h",
        ),
        (
            "request:\n  header_timeout: 0s\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "request.header_timeout: must be above zero",
        ),
        (
            "listen:\n  read_buffer_bytes: 1073741824\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "listen.read_buffer_bytes: must be at most 1048576",
        ),
        (
            "limits:\n  rules:\n    - {name: big, key: [global], counts: total_tokens, limit: 281474976710657}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.rules[0].limit: must be a whole number from 1 to 2^48 (281474976710656)",
        ),
        (
            "server:\n  grace_period_seconds: 5\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "server.grace_period_seconds: was replaced by `server.drain_timeout`",
        ),
        (
            "server:\n  drain_timeout: 0s\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "server.drain_timeout: must be above zero",
        ),
        (
            "server:\n  drain_timeout: 2d\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "server.drain_timeout: must be at most 24h",
        ),
        (
            "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a, auth: [none], scopes: [admin]}\n",
            "routes[0].scopes: a route that needs no credentials cannot require scopes",
        ),
        (
            "upstreams:\n  a:\n    strategy: fastest\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "upstreams.a.strategy: unknown value `fastest` (expected `round_robin`, `weighted` or `least_requests`)",
        ),
        (
            "pricing:\n  - {model: m, input_per_million: -1, output_per_million: 1}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "pricing[0].input_per_million: must be a number of USD between 0 and 1000000",
        ),
        (
            "pricing:\n  - {model: m, input_per_million: 1, output_per_million: .nan}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "pricing[0].output_per_million: must be a number of USD between 0 and 1000000",
        ),
        (
            "pricing:\n  - {model: '', input_per_million: 1, output_per_million: 1}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "pricing[0].model: must not be empty",
        ),
        (
            "limits:\n  rules:\n    - {name: b, key: [team], counts: cost_usd, limit: 10, window: month}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.rules[0].counts: `cost_usd` needs a `pricing` table",
        ),
        (
            "pricing:\n  - {model: m, input_per_million: 1, output_per_million: 1}\nlimits:\n  rules:\n    - {name: b, key: [team], counts: cost_usd, limit: 0, window: day}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.rules[0].limit: must be a number of USD above 0 and at most 281474976",
        ),
        (
            "limits:\n  rules:\n    - {name: b, key: [team], counts: requests, limit: 1.5, window: day}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.rules[0].limit: must be a whole number from 1 to 2^48",
        ),
        (
            "limits:\n  rules:\n    - {name: b, key: [team], counts: requests, limit: 5, window: week}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.rules[0].window: unknown value `week` (expected `second`, `minute`, `hour`, `day` or `month`)",
        ),
        (
            "admin: {token: short}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "admin.token: must be at least 16 characters",
        ),
        (
            "admin: {token: \"${NO_SUCH_ADMIN_TOKEN_VAR}\"}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "admin.token: environment variable `NO_SUCH_ADMIN_TOKEN_VAR` is not set",
        ),
        (
            "tracing: {enabled: true, endpoint: \"https://collector:4318/v1/traces\"}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "tracing.endpoint: must be an http:// URL of an OTLP collector",
        ),
        (
            "tracing: {enabled: true, sample_ratio: 1.5}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "tracing.sample_ratio: must be between 0 and 1",
        ),
        (
            "answers: {max_event_bytes: 100}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "answers.max_event_bytes: must be between 16384 and 67108864",
        ),
        (
            "answers: {max_translated_bytes: 1000000000}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "answers.max_translated_bytes: must be between 65536 and 268435456",
        ),
        (
            "tracing: {enabled: true, queue_size: 1}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "tracing.queue_size: must be between 16 and 1048576",
        ),
        (
            "listen:\n  trusted_proxies: [10.0.0.1/8]\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "listen.trusted_proxies[0]: `10.0.0.1/8` has host bits set (the network is 10.0.0.0/8)",
        ),
        (
            "limits:\n  rules: []\n  redis: {url: \"redis://127.0.0.1:6379\", tls: {ca_file: /x.pem}}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.redis.tls: needs a rediss:// URL",
        ),
        (
            "limits:\n  rules: []\n  redis: {url: \"redis://127.0.0.1:6379\", username: gw}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.redis.username: needs a `password` too",
        ),
        (
            "limits:\n  rules: []\n  redis: {url: \"redis://127.0.0.1:6379\", cluster_nodes: [\"redis://127.0.0.1:7000\"]}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.redis: needs exactly one of `url`, `cluster_nodes` and `sentinel`",
        ),
        (
            "limits:\n  rules: []\n  redis: {timeout: 50ms}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.redis: needs exactly one of `url`, `cluster_nodes` and `sentinel`",
        ),
        (
            "limits:\n  rules: []\n  redis: {cluster_nodes: [\"redis://127.0.0.1:7000\", \"rediss://127.0.0.1:7001\"]}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.redis.cluster_nodes: mixes redis:// and rediss:// URLs",
        ),
        (
            "limits:\n  rules: []\n  redis: {sentinel: {master_name: m, nodes: [\"http://127.0.0.1:26379\"]}}\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n",
            "limits.redis.sentinel.nodes[0]: must be a redis:// or rediss:// URL",
        ),
        ("{{{", "line 1 column 2"),
    ];
    for (text, expected) in cases {
        let (_dir, path) = write_config(text);
        // Both -t and a real start refuse it, with the same message.
        for args in [vec!["-t", "-c", &path], vec!["-c", &path]] {
            let (code, out) = gateway(&args, &[]);
            assert_eq!(code, 2, "{text}: {out}");
            assert!(out.contains(&path), "file not named: {out}");
            assert!(out.contains(expected), "expected {expected:?} in {out}");
        }
    }
}

#[test]
fn missing_file_is_reported() {
    let (code, out) = gateway(&["-t", "-c", "/nonexistent/gw.yaml"], &[]);
    assert_eq!(code, 2);
    assert!(
        out.contains("/nonexistent/gw.yaml: cannot read the file"),
        "{out}"
    );
}

#[test]
fn check_redis_reports_the_configured_redis() {
    let mut redis = common::Redis::start();
    let config = |url: &str| {
        write_config(&format!(
            "limits:\n  redis: {{url: \"{url}\", timeout: 500ms}}\n  rules: []\nupstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {{name: r, paths: [/v1], upstream: a}}\n"
        ))
    };
    let (_dir, path) = config(&redis.url());
    let (code, out) = gateway(&["check-redis", "-c", &path], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("redis at 127.0.0.1:{}: PONG in", redis.port)),
        "{out}"
    );

    // A password in the URL never shows, whatever Redis answers.
    let (_dir, with_password) =
        config(&format!("redis://:hunter2-secret@127.0.0.1:{}", redis.port));
    let (code, out) = gateway(&["check-redis", "-c", &with_password], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("hunter2-secret"), "{out}");

    redis.down();
    let (code, out) = gateway(&["check-redis", "-c", &path], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("redis at 127.0.0.1:{}", redis.port)),
        "{out}"
    );

    let (code, out) = gateway(
        &[
            "check-redis",
            "-c",
            repo_path("conf/demo.yaml").to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("limits use no Redis"), "{out}");
}

#[test]
fn bad_tls_settings_fail_with_the_field_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = common::pki::TestCa::new("edge CA");
    let (cert, key) = ca.server(&["localhost"], "a").write(dir.path(), "a");
    let (_, other_key) = ca.server(&["localhost"], "b").write(dir.path(), "b");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let tail = "upstreams:\n  a:\n    backends:\n      - base_url: http://127.0.0.1:1\nroutes:\n  - {name: r, paths: [/v1], upstream: a}\n";
    let pair = |c: &std::path::Path, k: &std::path::Path| {
        format!(
            "[{{cert_file: {}, key_file: {}}}]",
            c.display(),
            k.display()
        )
    };
    let cases = [
        (
            "listen:\n  proxy_tls: [\"127.0.0.1:8443\"]\n".to_string(),
            "listen.tls: is needed by listen.proxy_tls".to_string(),
        ),
        (
            format!("listen:\n  tls: {{certificates: {}}}\n", pair(&cert, &key)),
            "listen.proxy_tls: needs an address for listen.tls".to_string(),
        ),
        (
            format!(
                "listen:\n  proxy: [\"127.0.0.1:8443\"]\n  proxy_tls: [\"127.0.0.1:8443\"]\n  tls: {{certificates: {}}}\n",
                pair(&cert, &key)
            ),
            "listen.proxy_tls[0]: port 8443 is also a cleartext listen.proxy port".to_string(),
        ),
        (
            format!(
                "listen:\n  proxy_tls: [\"127.0.0.1:8443\"]\n  tls: {{certificates: {}}}\n",
                pair(&cert, &other_key)
            ),
            format!(
                "listen.tls.certificates[0]: `{}` is not the key of `{}`",
                other_key.display(),
                cert.display()
            ),
        ),
        (
            format!(
                "listen:\n  proxy_tls: [\"127.0.0.1:8443\"]\n  tls: {{certificates: {}}}\n",
                pair(&junk, &key)
            ),
            format!("listen.tls.certificates[0]: `{}` is not valid PEM", junk.display()),
        ),
        (
            format!(
                "listen:\n  proxy_tls: [\"127.0.0.1:8443\"]\n  tls: {{certificates: {}, client_auth: optional}}\n",
                pair(&cert, &key)
            ),
            "listen.tls.client_auth: needs listen.tls.client_ca_file".to_string(),
        ),
        (
            format!(
                "listen:\n  proxy_tls: [\"127.0.0.1:8443\"]\n  tls: {{certificates: {}, client_ca_file: {}}}\n",
                pair(&cert, &key),
                junk.display()
            ),
            "listen.tls.client_ca_file:".to_string(),
        ),
        (
            "auth:\n  client_certs: [{id: a, subject: worker}]\n".to_string(),
            "auth.client_certs: needs listen.tls.client_ca_file".to_string(),
        ),
        (
            format!(
                "listen:\n  proxy_tls: [\"127.0.0.1:8443\"]\n  tls: {{certificates: {}, client_ca_file: {}}}\nauth:\n  client_certs: [{{id: a, subject: worker, san: \"spiffe://x/y\"}}]\n",
                pair(&cert, &key),
                ca_file.display()
            ),
            "auth.client_certs[0]: needs exactly one non-empty `subject` or `san`".to_string(),
        ),
        (
            "auth:\n  api_keys: [{id: k, key: sk-k}]\n".to_string(),
            "routes[0].auth: `client_cert` needs identities in `auth.client_certs`".to_string(),
        ),
    ];
    for (listen, expected) in cases {
        let tail = if expected.starts_with("routes[0].auth") {
            tail.replace("upstream: a}", "upstream: a, auth: [client_cert]}")
        } else {
            tail.to_string()
        };
        let (_dir, path) = write_config(&format!("{listen}{tail}"));
        let (code, out) = gateway(&["-t", "-c", &path], &[]);
        assert_eq!(code, 2, "{listen}: {out}");
        assert!(out.contains(&path), "file not named: {out}");
        assert!(out.contains(&expected), "expected {expected:?} in {out}");
    }
}

#[test]
fn subcommands_check_hash_keys_and_refuse_what_they_do_not_know() {
    let demo = repo_path("conf/demo.yaml");
    let demo = demo.to_str().unwrap();
    let (code, out) = gateway(&["check", "-c", demo], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration is valid"), "{out}");
    let (code, out) = gateway(&["check", "-c", "/nonexistent/gw.yaml"], &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/gw.yaml"), "{out}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_ai-api-gateway"))
        .arg("hash-key")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        ai_api_gateway::auth::hash_key("abc")
    );

    for args in [
        vec!["serve-now"],
        vec!["check-redis", "extra"],
        vec!["-c", demo, "check"],
    ] {
        let (code, out) = gateway(&args, &[]);
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains("Usage:"), "{args:?}: {out}");
    }
}
