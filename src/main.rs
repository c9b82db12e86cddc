//! `ai-api-gateway`: the command line. `run` (the default) loads the
//! config, builds the Pingora server and its services and serves; `check`
//! validates a config; `hash-key` and `check-redis` help set one up.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use clap::{Args, Parser, Subcommand};
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::Opt;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use ai_api_gateway::admin::AdminService;
use ai_api_gateway::edge::certificates::CertificateWatcher;
use ai_api_gateway::edge::connection::{ConnectionGuard, Edge};
use ai_api_gateway::edge::http2;
use ai_api_gateway::edge::settings::Listen;
use ai_api_gateway::edge::tls::TlsEdge;
use ai_api_gateway::gateway::{self, Gateway};
use ai_api_gateway::lifecycle::{self, DrainSignals};
use ai_api_gateway::mock::{self, MockState};
use ai_api_gateway::observability::{access_writer, redact, traces};
use ai_api_gateway::reload::{SharedState, Supervisor};
use ai_api_gateway::settings::{self, Process, Settings};
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

/// The command line: a subcommand, or Pingora's own flags for `run`.
#[derive(Parser)]
#[command(
    name = "ai-api-gateway",
    version,
    about = "An AI API gateway on Cloudflare's Pingora",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// `run`'s flags, given without its name (Pingora's convention).
    #[command(flatten)]
    run: RunFlags,
}

/// Pingora's flags, with what they mean here.
#[derive(Args)]
struct RunFlags {
    /// The config file.
    #[arg(short, long, default_value = DEFAULT_CONFIG)]
    conf: PathBuf,
    /// Graceful upgrade: take the listening sockets over from the running
    /// instance (then send it SIGQUIT).
    #[arg(short, long)]
    upgrade: bool,
    /// Run as a daemon.
    #[arg(short, long)]
    daemon: bool,
    /// Validate the config and exit.
    #[arg(short, long)]
    test: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Serve (the default): `-c FILE`, `-u` to take over a running
    /// instance's sockets, `-d` to run as a daemon, `-t` to check and exit.
    Run(RunFlags),
    /// Validate the config and exit, as `-t` does.
    Check(ConfigFile),
    /// Read an API key on stdin (so it stays out of shell history) and
    /// print the SHA-256 that `auth.api_keys[].sha256` takes.
    HashKey,
    /// Ask the Redis of the config's limits for PING and TIME, with the
    /// config's address and credentials: exit 0 when it answers, 1 when not.
    CheckRedis(ConfigFile),
    /// Print the config file's JSON Schema (what `conf/gateway.schema.json`
    /// ships), for editors to validate `gateway.yaml` with.
    Schema,
}

#[derive(Args)]
struct ConfigFile {
    /// The config file.
    #[arg(short, long, default_value = DEFAULT_CONFIG)]
    conf: PathBuf,
}

fn main() -> ExitCode {
    ai_api_gateway::memory::disable_transparent_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        None => run(cli.run),
        Some(Command::Run(opt)) => run(opt),
        Some(Command::Check(file)) => check(&file.conf),
        Some(Command::HashKey) => hash_key(),
        Some(Command::CheckRedis(file)) => check_redis(&file.conf),
        Some(Command::Schema) => {
            println!("{}", ai_api_gateway::settings::json_schema_text());
            ExitCode::SUCCESS
        }
    }
}

/// Why the process cannot go on; printed with the config file's path.
enum Fatal {
    /// The config is not valid (exit 2).
    Config(String),
    /// A valid config that cannot be started on this machine (exit 2).
    Start(String),
}

impl Fatal {
    fn report(self, path: &std::path::Path) -> ExitCode {
        match self {
            Fatal::Config(e) => eprintln!("configuration error: {e}"),
            Fatal::Start(e) => eprintln!("cannot start: {}: {e}", path.display()),
        }
        ExitCode::from(2)
    }
}

/// Loads and validates the config; its secrets are scrubbed from every log
/// line from now on.
fn load(path: &std::path::Path) -> Result<Settings, Fatal> {
    let config = settings::load_file(path).map_err(|e| Fatal::Config(e.to_string()))?;
    for secret in &config.secrets {
        redact::register_secret(secret.expose());
    }
    Ok(config)
}

/// The state a config builds: its routes, pools, callers and limiter.
fn build(config: &Settings) -> Result<GatewayState, Fatal> {
    GatewayState::new(config, None).map_err(Fatal::Start)
}

/// `check` and `-t`: the config loads and builds.
fn check(path: &std::path::Path) -> ExitCode {
    match load(path).and_then(|config| build(&config)) {
        Ok(_) => {
            println!("{}: configuration is valid", path.display());
            ExitCode::SUCCESS
        }
        Err(fatal) => fatal.report(path),
    }
}

fn hash_key() -> ExitCode {
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

/// Exit 0 when the configured Redis answers, 1 when not, 2 for a bad config.
fn check_redis(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(config) => config,
        Err(fatal) => return fatal.report(path),
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
    let limiter = match ai_api_gateway::limits::Limiter::new(&config.limits) {
        Ok(limiter) => limiter,
        Err(e) => return Fatal::Start(e).report(path),
    };
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

/// Serves until drained (SIGTERM, SIGQUIT) or stopped (SIGINT).
fn run(flags: RunFlags) -> ExitCode {
    init_logging();
    let path = flags.conf;
    if flags.test {
        return check(&path);
    }
    let config = match load(&path) {
        Ok(config) => config,
        Err(fatal) => return fatal.report(&path),
    };
    let state = match build(&config) {
        Ok(state) => Arc::new(ArcSwap::from_pointee(state)),
        Err(fatal) => return fatal.report(&path),
    };
    if !flags.upgrade {
        if let Err(e) = check_ports_free(&config.process.listen) {
            return Fatal::Start(e).report(&path);
        }
    }
    if let Err(fatal) = start_process_services(&config.process) {
        return fatal.report(&path);
    }
    let process = config.process.clone();
    let mut pingora_conf = process.server.to_pingora();
    // Pingora's retry loop bounds the gateway's tries, fallbacks included.
    pingora_conf.max_retries = gateway::MAX_ATTEMPTS as usize;
    let opt = Opt {
        upgrade: flags.upgrade,
        daemon: flags.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), pingora_conf);
    // With -u this waits for the running process to hand its sockets over.
    server.bootstrap();
    if !process.server.daemon {
        lifecycle::write_pid_file(&process.server.pid_file);
    }
    if let Err(fatal) = add_services(&mut server, &state, &path, &process) {
        return fatal.report(&path);
    }
    let listen = &process.listen;
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

/// What the process starts once, before Pingora: the access-log writer and
/// the trace exporter.
fn start_process_services(process: &Process) -> Result<(), Fatal> {
    let output = &process.access_log_output;
    access_writer::configure(
        output.path.as_deref().map(std::path::Path::new),
        output.buffer_bytes,
    )
    .map_err(|e| Fatal::Start(format!("access_log.path: {e}")))?;
    if let Some(tracing) = &process.tracing {
        traces::start(tracing).map_err(|e| Fatal::Start(format!("tracing: {e}")))?;
    }
    Ok(())
}

/// The mock upstream (demo), the proxy behind its connection guard, the
/// admin port, the certificate watcher and the supervisor.
fn add_services(
    server: &mut Server,
    state: &SharedState,
    path: &std::path::Path,
    process: &Process,
) -> Result<(), Fatal> {
    if let Some(mock_listen) = process.mock_upstream {
        let addr = mock::bind_and_spawn_thread(mock_listen, MockState::new("demo", false))
            .map_err(|e| {
                Fatal::Config(format!(
                    "{}: mock_upstream.listen: cannot listen on {mock_listen}: {e}",
                    path.display()
                ))
            })?;
        log::info!("mock upstream listening on {addr}");
    }
    let listen = &process.listen;
    let tls = match &listen.tls {
        Some(tls) => {
            let edge = TlsEdge::new(tls).map_err(|e| Fatal::Start(format!("listen.tls: {e}")))?;
            server.add_service(background_service(
                "tls certificates",
                CertificateWatcher {
                    store: edge.store.clone(),
                    interval: tls.reload_interval,
                },
            ));
            Some((edge, tls))
        }
        None => None,
    };
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
        Supervisor::new(state.clone(), path.to_path_buf(), process.clone()),
    ));
    Ok(())
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
