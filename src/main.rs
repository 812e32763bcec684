//! The `gatehouse` command line.

use clap::{Parser, Subcommand};
use gatehouse::config::LogFormat;
use gatehouse::{server, snapshot};
use std::path::PathBuf;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An edge proxy and API gateway built on Pingora.
#[derive(Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway on a config file and serve until SIGTERM (graceful) or SIGINT (fast).
    /// SIGHUP reloads the config; a bad file keeps the current one running.
    Run {
        /// Config file (TOML).
        #[arg(short, long, default_value = "conf/gatehouse.toml")]
        config: PathBuf,
        /// Take over the listening sockets of a running gatehouse (graceful binary upgrade).
        #[arg(short, long)]
        upgrade: bool,
        /// Detach and run in the background.
        #[arg(short, long)]
        daemon: bool,
    },
    /// Validate a config file: exits 0 with a one-line summary, or non-zero listing every
    /// problem with its key path (and line and column for syntax errors).
    Check {
        /// Config file (TOML).
        #[arg(short, long, default_value = "conf/gatehouse.toml")]
        config: PathBuf,
    },
    /// Show what the gateway would do with a request: listener, host policy, route,
    /// rewritten path, path checks, limits, authorizer, upstream, or why it would be refused.
    /// Nothing is sent upstream and no credential is verified.
    Explain {
        /// Config file (TOML).
        #[arg(short, long, default_value = "conf/gatehouse.toml")]
        config: PathBuf,
        /// Request method, e.g. GET.
        method: String,
        /// Absolute URL; its scheme and port choose the listener.
        url: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client's address, for IP lists.
        #[arg(long)]
        client_ip: Option<std::net::IpAddr>,
    },
    /// Print the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("gatehouse {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Check { config } => check(config),
        Command::Explain {
            config,
            method,
            url,
            headers,
            client_ip,
        } => explain(&config, &method, &url, &headers, client_ip),
        Command::Run {
            config,
            upgrade,
            daemon,
        } => {
            let (format, level) = log_settings(&config);
            init_logging(format, &level);
            // SIGHUP's default action kills the process, and the reload handler only exists once
            // the services run: catch it from the start (e.g. `systemctl kill -s HUP` reaching a
            // process that is still starting during an upgrade).
            let early_hangup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGHUP, early_hangup) {
                eprintln!("gatehouse: cannot install the SIGHUP handler: {e}");
                return ExitCode::FAILURE;
            }
            // Absolute, because `--daemon` changes the working directory to `/` and later
            // reloads read the file again.
            let config = std::path::absolute(&config).unwrap_or(config);
            let opts = server::RunOptions {
                config_path: config,
                upgrade,
                daemon,
            };
            match server::run(opts) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprint!("gatehouse: {e}");
                    if !e.to_string().ends_with('\n') {
                        eprintln!();
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn explain(
    path: &std::path::Path,
    method: &str,
    url: &str,
    headers: &[String],
    client_ip: Option<std::net::IpAddr>,
) -> ExitCode {
    let mut pairs = Vec::new();
    for h in headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("gatehouse: -H {h:?}: expected `Name: value`");
            return ExitCode::FAILURE;
        };
        pairs.push((name.to_string(), value.to_string()));
    }
    let Some(loaded) = load(path) else {
        return ExitCode::FAILURE;
    };
    let question = gatehouse::proxy::explain::Question {
        listeners: &loaded.config.listeners,
        method,
        url,
        headers: &pairs,
        client_ip,
    };
    match gatehouse::proxy::explain::explain(&loaded.snapshot, &loaded.config, &question) {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gatehouse: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: PathBuf) -> ExitCode {
    let Some(snapshot::Loaded { snapshot, .. }) = load(&path) else {
        return ExitCode::FAILURE;
    };
    println!("{}: ok, {}", path.display(), snapshot.summary());
    for warning in snapshot.certificate_warnings() {
        eprintln!("{}: warning: {warning}", path.display());
    }
    ExitCode::SUCCESS
}

/// Read, validate and compile the config at `path` as startup would (on scratch registries),
/// or print every problem and give `None`.
fn load(path: &std::path::Path) -> Option<snapshot::Loaded> {
    let registries = match snapshot::Registries::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gatehouse: cannot set up metrics: {e}");
            return None;
        }
    };
    match snapshot::load(path, &registries) {
        Ok(loaded) => Some(loaded),
        Err(e) => {
            eprint!("{}", e.errors);
            None
        }
    }
}

/// `[server] log_format` and `log_level` of the config file, read before anything logs; the
/// defaults when the file cannot be read or is invalid (startup then reports why).
fn log_settings(path: &std::path::Path) -> (LogFormat, String) {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| gatehouse::config::check(&text).0)
        .map_or((LogFormat::Text, "info".to_string()), |c| {
            (c.server.log_format, c.server.log_level)
        })
}

fn init_logging(format: LogFormat, level: &str) {
    use gatehouse::observe::log_limit::{site_key, unix_second, LogLimiter, Verdict};
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::builder().parse(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let limiter = LogLimiter::default();
    // Without a hint the limit would make every disabled debug and trace call site in Pingora
    // and tokio ask the filters on every request (measured: 1,400 instructions per request).
    let hint =
        tracing_subscriber::layer::Filter::<tracing_subscriber::Registry>::max_level_hint(&filter);
    // A line that repeats in a loop is written a few times a second, with a count of the rest.
    let limit = tracing_subscriber::filter::filter_fn(move |meta| {
        // Lines from the `log` crate are first asked about with only a level and a target
        // (`log::Log::enabled`), then dispatched with their file and line: count them once.
        if !meta.is_event() || meta.line().is_none() {
            return true;
        }
        match limiter.check(site_key(meta), unix_second()) {
            Verdict::Drop => false,
            Verdict::Write { suppressed: 0 } => true,
            Verdict::Write { suppressed } => {
                eprintln!(
                    "gatehouse: {suppressed} more lines from {} ({}:{}) were not written since the \
                     one before",
                    meta.target(),
                    meta.file().unwrap_or("?"),
                    meta.line().unwrap_or(0)
                );
                true
            }
        }
    });
    let limit = match hint {
        Some(hint) => limit.with_max_level_hint(hint),
        None => limit,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(output(format).with_filter(limit.and(gatehouse::observe::log_noise::QuietBenign)))
        .init();
}

/// The writer of process log lines, on standard error.
fn output<S>(format: LogFormat) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => layer
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .boxed(),
        LogFormat::Json => layer.json().boxed(),
    }
}
