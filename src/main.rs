//! The `sfproxy` command: `run` the proxy on a config file, or `demo` it against a local stand-in
//! of Salesforce. A config error prints one line naming the key and exits 64, so scripts and
//! supervisors can tell a refused config from a crash.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand, ValueEnum};
use sfproxy::{config::Config, server, stack};

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

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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

async fn run(path: PathBuf) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sfproxy: {}: {error}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let service = match stack::build(&config) {
        Ok(service) => service,
        Err(error) => {
            eprintln!("sfproxy: {}: {error}", path.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match server::bind(config.proxy.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("sfproxy: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listen = listener.local_addr().unwrap_or(config.proxy.listen);
    tracing::info!(
        listen = %listen,
        routes = config.routes.len(),
        config = %path.display(),
        "sfproxy ready"
    );
    server::serve(listener, service, server::stop_signal()).await;
    ExitCode::SUCCESS
}
