//! The `sfproxy` command: `run` the proxy on a config file, or `demo` it against a local stand-in
//! of Salesforce. A config error prints one line naming the key and exits 64, so scripts and
//! supervisors can tell a refused config from a crash.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use sfproxy::{app::App, config::Config, keygen::Keygen};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit status of a refused config (part of the CLI contract).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    version,
    about = "Forward authenticating HTTP proxy for Salesforce (OAuth 2.0 JWT bearer)"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy.
    Run {
        /// Config file [default: $SFPROXY_CONFIG, else sfproxy.toml]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Log in as every route's user and call the API once: does this config work?
    Check {
        /// Config file [default: $SFPROXY_CONFIG, else sfproxy.toml]
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Check only this route.
        #[arg(long)]
        route: Option<String>,
    },
    /// Make a connected app's private key and certificate (for "Use digital signatures"), with
    /// --ca an interception CA, or with --logins-key the key of [logins].
    Keygen(Keygen),
    /// Run the proxy in front of a local Salesforce stand-in, with generated keys.
    Demo {
        /// Address of the proxy port.
        #[arg(long, default_value = "127.0.0.1:3128")]
        listen: SocketAddr,
    },
    /// Run only the Salesforce stand-in (for docker-compose or a proxy started by hand).
    StandIn {
        /// Address of its TLS port.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Where to write the connected app's key and certificate and the TLS CA.
        #[arg(long, default_value = "stand-in")]
        dir: PathBuf,
        /// Host names (and IPs) its TLS certificate is valid for.
        #[arg(long = "name", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        names: Vec<String>,
        /// The instance URL its token responses announce [default: https://<first name>:<port>]
        #[arg(long)]
        public_url: Option<String>,
    },
}

/// `RUST_LOG` wins; otherwise `default` (the one-shot commands print their own report, so they
/// log only errors). Lines go to stderr in batches through a writer thread of their own, text
/// ones through sfproxy's faster formatter (see `sfproxy::logs`); the returned guard writes what
/// is left at exit.
fn init_logs(format: LogFormat, default: &str) -> sfproxy::logs::Flush {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, flush) = sfproxy::logs::writer(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer);
    match format {
        LogFormat::Text => builder
            .event_format(sfproxy::logs::PlainText::default())
            .fmt_fields(sfproxy::logs::PlainFields::default())
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
    flush
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(cli.command, Command::Check { .. } | Command::Keygen(_));
    let _logs = init_logs(cli.log_format, if quiet { "error" } else { "info" });
    // Accepting, the admin port, reloads and warm sessions; the proxy's connections are served
    // on threads of their own (`sfproxy::workers`).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("sfproxy: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run(Config::path_from(config)).await,
            Command::Check { config, route } => check(Config::path_from(config), route).await,
            Command::Keygen(args) => match sfproxy::keygen::run(&args) {
                Ok(summary) => {
                    print!("{summary}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("sfproxy keygen: {error}");
                    ExitCode::FAILURE
                }
            },
            Command::Demo { listen } => report("demo", sfproxy::demo::run(listen).await),
            Command::StandIn {
                listen,
                dir,
                names,
                public_url,
            } => report(
                "stand-in",
                sfproxy::demo::stand_in(listen, &dir, &names, public_url).await,
            ),
        }
    })
}

fn report(command: &str, outcome: Result<(), String>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sfproxy {command}: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn check(path: PathBuf, route: Option<String>) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sfproxy: {}: {error}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match sfproxy::check::run(&config, route.as_deref()).await {
        Ok(report) => {
            for warning in &report.warnings {
                eprintln!("{warning}");
            }
            for line in &report.lines {
                println!("{line}");
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("sfproxy check: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn run(path: PathBuf) -> ExitCode {
    let app = match App::load(&path) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("sfproxy: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match sfproxy::app::run(app, |_| {}).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sfproxy: {error}");
            ExitCode::FAILURE
        }
    }
}
