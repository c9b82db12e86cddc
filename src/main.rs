//! `ai-api-gateway`: parse the CLI, load the config, build the Pingora server
//! and its services, run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use ai_api_gateway::admin::AdminService;
use ai_api_gateway::config::{self, Listen};
use ai_api_gateway::edge::certificates::CertificateWatcher;
use ai_api_gateway::edge::connection::{ConnectionGuard, Edge};
use ai_api_gateway::edge::http2;
use ai_api_gateway::edge::tls::TlsEdge;
use ai_api_gateway::gateway::{self, Gateway};
use ai_api_gateway::lifecycle::{self, DrainSignals};
use ai_api_gateway::mock::{self, MockState};
use ai_api_gateway::observability::{access_writer, redact, traces};
use ai_api_gateway::reload::Supervisor;
use ai_api_gateway::state::GatewayState;

const DEFAULT_CONFIG: &str = "conf/gateway.yaml";

#[global_allocator]
static GLOBAL: ai_api_gateway::allocator::Allocator = ai_api_gateway::allocator::Allocator;

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            // Access lines are already structured, and carry no credential:
            // print them bare.
            if record.target() == "access" {
                return writeln!(buf, "{}", record.args());
            }
            // Every other line, from any crate at any level, is scrubbed
            // of credentials first.
            let line = record.args().to_string();
            writeln!(
                buf,
                "{} {} {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                redact::redact(&line)
            )
        })
        .init();
}

/// `ai-api-gateway hash-key`: reads an API key on standard input (so it stays
/// out of shell history) and prints the SHA-256 that `auth.api_keys[].sha256` takes.
fn hash_key_command() -> ExitCode {
    let mut key = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut key) {
        eprintln!("cannot read the key: {e}");
        return ExitCode::from(2);
    }
    let key = key.trim_end_matches(['\r', '\n']);
    if key.is_empty() {
        eprintln!("usage: echo -n \"$KEY\" | ai-api-gateway hash-key");
        return ExitCode::from(2);
    }
    println!("{}", ai_api_gateway::auth::hash_key(key));
    ExitCode::SUCCESS
}

/// `ai-api-gateway check-redis [-c FILE]`: does the Redis that the config's
/// limits use answer, with the config's address and credentials? Exit 0
/// when it does, 1 when not, 2 for a bad config.
fn check_redis_command() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let path = match args.as_slice() {
        [] => PathBuf::from(DEFAULT_CONFIG),
        [flag, file] if flag == "-c" || flag == "--conf" => PathBuf::from(file),
        _ => {
            eprintln!("usage: ai-api-gateway check-redis [-c FILE]");
            return ExitCode::from(2);
        }
    };
    let config = match config::load_file(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    for secret in &config.secrets {
        redact::register_secret(secret.expose());
    }
    let limiter = ai_api_gateway::limits::Limiter::new(&config.limits);
    match runtime.block_on(limiter.check_redis()) {
        Ok(report) => {
            println!("{}", redact::redact(&report));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", redact::redact(&e));
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    ai_api_gateway::memory::disable_transparent_huge_pages();
    match std::env::args().nth(1).as_deref() {
        Some("hash-key") => return hash_key_command(),
        Some("check-redis") => return check_redis_command(),
        _ => {}
    }
    init_logging();
    // Pingora's own flags: -c config, -u upgrade, -d daemon, -t test.
    let mut opt = Opt::parse_args();
    let path = PathBuf::from(
        opt.conf
            .take()
            .unwrap_or_else(|| DEFAULT_CONFIG.to_string()),
    );
    let config = match config::load_file(&path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    for secret in &config.secrets {
        redact::register_secret(secret.expose());
    }
    let state = Arc::new(ArcSwap::from_pointee(GatewayState::new(&config, None)));
    if opt.test {
        println!("{}: configuration is valid", path.display());
        return ExitCode::SUCCESS;
    }
    if !opt.upgrade {
        if let Err(e) = check_ports_free(&config.process.listen) {
            eprintln!("cannot start: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }

    let output = &config.process.access_log_output;
    if let Err(e) = access_writer::configure(
        output.path.as_deref().map(std::path::Path::new),
        output.buffer_bytes,
    ) {
        eprintln!("cannot start: {}: access_log.path: {e}", path.display());
        return ExitCode::from(2);
    }
    if let Some(tracing) = &config.process.tracing {
        if let Err(e) = traces::start(tracing) {
            eprintln!("cannot start: {}: tracing: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let process = config.process.clone();
    let mut pingora_conf = process.server.to_pingora();
    // Pingora's retry loop bounds the gateway's tries, fallbacks included.
    pingora_conf.max_retries = gateway::MAX_ATTEMPTS as usize;
    let mut server = Server::new_with_opt_and_conf(Some(opt), pingora_conf);
    // With -u this waits for the running process to hand its sockets over.
    server.bootstrap();
    if !process.server.daemon {
        lifecycle::write_pid_file(&process.server.pid_file);
    }

    if let Some(mock_listen) = process.mock_upstream {
        match mock::bind_and_spawn_thread(mock_listen, MockState::new("demo", false)) {
            Ok(addr) => log::info!("mock upstream listening on {addr}"),
            Err(e) => {
                eprintln!(
                    "configuration error: {}: mock_upstream.listen: cannot listen on {mock_listen}: {e}",
                    path.display(),
                );
                return ExitCode::from(2);
            }
        }
    }

    let listen = &process.listen;
    let tls = match &listen.tls {
        Some(tls) => match TlsEdge::new(tls) {
            Ok(edge) => Some((edge, tls)),
            Err(e) => {
                eprintln!("cannot start: {}: listen.tls: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if let Some((edge, tls)) = &tls {
        server.add_service(background_service(
            "tls certificates",
            CertificateWatcher {
                store: edge.store.clone(),
                interval: tls.reload_interval,
            },
        ));
    }
    let request_limits = state.load().request;
    let mut proxy_app =
        pingora::proxy::http_proxy(&server.configuration, Gateway::new(state.clone()));
    proxy_app.server_options = Some(http2::server_options(&request_limits));
    proxy_app.h2_options = Some(http2::options(&request_limits));
    let edge = Edge {
        handshake_timeout: tls
            .as_ref()
            .map_or(request_limits.header_timeout, |(_, t)| t.handshake_timeout),
        tls: tls.map(|(edge, _)| edge),
        tls_ports: listen.proxy_tls.iter().map(|a| a.port()).collect(),
        proxy_protocol: listen.proxy_protocol,
        h2c: listen.h2c,
    };
    let mut proxy = Service::new(
        "proxy".to_string(),
        ConnectionGuard::new(proxy_app, Box::new(state.clone()), edge),
    );
    let read_buffer = L4BufferSettings::default().read(listen.read_buffer_bytes);
    // TLS listeners are plain TCP to Pingora: the connection guard runs the
    // PROXY header and the handshake itself (edge/tls.rs says why).
    for addr in listen.proxy.iter().chain(&listen.proxy_tls) {
        proxy.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(read_buffer));
    }
    server.add_service(proxy);
    server.add_service(AdminService::new(state.clone(), &listen.admin.to_string()));
    // Health checks, DNS refresh, JWKS refresh and limit sync follow the
    // state through reloads.
    server.add_service(background_service(
        "supervisor",
        Supervisor::new(state.clone(), path.clone(), process.clone()),
    ));
    log::info!(
        "ai-api-gateway {} proxy on {:?}, TLS on {:?}, admin on {}",
        env!("CARGO_PKG_VERSION"),
        listen.proxy,
        listen.proxy_tls,
        listen.admin
    );
    // The gateway ends the process itself once drained (lifecycle.rs); `run`
    // returns only after a fast shutdown (SIGINT).
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainSignals),
    });
    lifecycle::exit(0)
}

/// How long a start without `-u` waits for its ports: a process that just
/// exited may still hold them for a moment.
const PORT_WAIT: Duration = Duration::from_secs(5);

/// Checks that every address can be bound before Pingora tries: Pingora
/// retries a taken port and then panics inside a task while the process
/// lives on, so a second instance started without `-u` would hang, silent.
fn check_ports_free(listen: &Listen) -> Result<(), String> {
    let addresses = listen
        .proxy
        .iter()
        .enumerate()
        .map(|(i, addr)| (format!("listen.proxy[{i}]"), addr))
        .chain(
            listen
                .proxy_tls
                .iter()
                .enumerate()
                .map(|(i, addr)| (format!("listen.proxy_tls[{i}]"), addr)),
        )
        .chain(std::iter::once(("listen.admin".to_string(), &listen.admin)));
    let deadline = Instant::now() + PORT_WAIT;
    for (field, addr) in addresses {
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    return Err(format!(
                        "{field}: {addr} is still in use after {PORT_WAIT:?}. Another process \
                         (another gateway?) listens there; to take its sockets over in a graceful \
                         upgrade, start with -u and send the running one SIGQUIT"
                    ));
                }
                Err(e) => return Err(format!("{field}: cannot listen on {addr}: {e}")),
            }
        }
    }
    Ok(())
}
