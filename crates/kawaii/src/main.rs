//! `kawaii`: the gateway daemon and its command-line client.

mod client;
mod config;
mod keys;
mod lab;
mod metrics;
mod serve;
mod store_url;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "kawaii",
    version,
    about = "A project's private network gateway"
)]
struct Cli {
    /// API base URL for the client commands.
    #[arg(
        long,
        global = true,
        env = "KAWAII_API",
        default_value = "http://127.0.0.1:7780"
    )]
    api: String,
    /// Bearer token for the client commands (default: the daemon's bootstrap token file, if readable).
    #[arg(long, global = true, env = "KAWAII_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    tls: client::TlsOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// This instance's zone (may be omitted with one zone or none).
        #[arg(long)]
        zone: Option<String>,
        /// Where the store lives.
        #[arg(long, default_value = "/var/lib/kawaii")]
        state: PathBuf,
        #[command(flatten)]
        store: StoreOpts,
    },
    /// Validate a config file: prints every error (exit 1) or only warnings (exit 0).
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print what would be applied, without applying it.
    Render {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        zone: Option<String>,
        #[arg(long, value_enum, default_value = "all")]
        what: client::RenderWhat,
    },
    /// Show resources: gateway, ingress-rules, egress-rules, nat-rules, vpc-peerings, ipsec,
    /// wireguard-peers, pipes, routes.
    Get {
        kind: Option<String>,
        name: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Apply a file: a whole gateway document (TOML or JSON), or Kilo `Peer` manifests (YAML),
    /// which create or replace those WireGuard peers.
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Delete one resource.
    Delete { kind: String, name: String },
    /// Zones, VIP owners, tunnels, peers, rule counters: what the daemon observes.
    Status {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// The audit trail (admin token).
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// VPN peers.
    Peer {
        #[command(subcommand)]
        command: PeerCommand,
    },
    /// WireGuard key helpers.
    Wg {
        #[command(subcommand)]
        command: WgCommand,
    },
    /// Store maintenance.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Convert a drop-in config format to native TOML.
    Import { file: PathBuf },
    /// The demo topology in network namespaces (never touches the root namespace).
    Lab {
        #[command(subcommand)]
        command: LabCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Build the topology and start the gateway.
    Up {
        /// Gateway config for the lab (interfaces wan0 and lan0); default examples/lab.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// 2: two zones sharing a private and a public segment, one kawaii per zone (HA).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        zones: u8,
    },
    /// What runs.
    Status,
    /// Run a command inside a lab host (internet, router, gw, vm1, vm2).
    Exec {
        host: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Remove every namespace and process the lab made.
    Down,
}

/// Where the desired state lives (`kawaii serve --store`).
#[derive(Debug, clap::Args)]
struct StoreOpts {
    /// `sqlite` (the file in --state), `etcd://HOST:PORT[,HOST:PORT]/PREFIX` or `etcds://...`.
    #[arg(long, env = "KAWAII_STORE", default_value = "sqlite")]
    store: String,
    /// CA certificate (PEM) that signed the etcd servers' certificates (etcds://).
    #[arg(long)]
    store_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd (etcds://).
    #[arg(long)]
    store_cert: Option<PathBuf>,
    /// Client private key (PEM) for etcd (etcds://).
    #[arg(long)]
    store_key: Option<PathBuf>,
    /// File holding the etcd `USER:PASSWORD` (never on the command line).
    #[arg(long)]
    store_auth_file: Option<PathBuf>,
}

impl StoreOpts {
    fn args(&self, url: &str) -> store_url::StoreArgs {
        store_url::StoreArgs {
            url: url.to_string(),
            ca: self.store_ca.clone(),
            cert: self.store_cert.clone(),
            key: self.store_key.clone(),
            auth_file: self.store_auth_file.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy a gateway's document, audit trail and metadata from one store to another
    /// (e.g. sqlite to etcd and back). Stop the instances writing to either first.
    Copy {
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Overwrite a target that is not empty.
        #[arg(long)]
        force: bool,
        /// The state directory a plain `sqlite` URL means.
        #[arg(long, default_value = "/var/lib/kawaii")]
        state: PathBuf,
        /// TLS and credentials for whichever side is etcd.
        #[arg(long)]
        store_ca: Option<PathBuf>,
        #[arg(long)]
        store_cert: Option<PathBuf>,
        #[arg(long)]
        store_key: Option<PathBuf>,
        #[arg(long)]
        store_auth_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Print the configuration a VPN peer applies.
    Showconf {
        name: String,
        #[arg(short, long, value_enum, default_value = "wireguard")]
        output: ShowconfOutput,
    },
}

#[derive(Debug, Subcommand)]
enum WgCommand {
    /// Print a new private key.
    Genkey,
    /// Read a private key on stdin, print its public key.
    Pubkey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
    Toml,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowconfOutput {
    Wireguard,
    Json,
    Yaml,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve {
            config,
            zone,
            state,
            store,
        } => serve::run(config, zone, state, store.args(&store.store)),
        Command::Store {
            command:
                StoreCommand::Copy {
                    from,
                    to,
                    force,
                    state,
                    store_ca,
                    store_cert,
                    store_key,
                    store_auth_file,
                },
        } => {
            let opts = StoreOpts {
                store: String::new(),
                store_ca,
                store_cert,
                store_key,
                store_auth_file,
            };
            // TLS and credentials go to the etcd side(s) only.
            let side = |url: &str| {
                if url.starts_with("etcd") {
                    opts.args(url)
                } else {
                    store_url::StoreArgs {
                        url: url.to_string(),
                        ..Default::default()
                    }
                }
            };
            store_url::copy(&side(&from), &side(&to), &state, force)
        }
        Command::Check { config } => config::check(&config),
        Command::Render { config, zone, what } => client::render(&config, zone.as_deref(), what),
        Command::Import { file } => config::import(&file),
        Command::Lab {
            command: LabCommand::Up { config, zones },
        } => lab::up(config, zones),
        Command::Lab {
            command: LabCommand::Status,
        } => lab::status(),
        Command::Lab {
            command: LabCommand::Exec { host, command },
        } => lab::exec(&host, &command),
        Command::Lab {
            command: LabCommand::Down,
        } => lab::down(),
        Command::Wg {
            command: WgCommand::Genkey,
        } => keys::genkey(),
        Command::Wg {
            command: WgCommand::Pubkey,
        } => keys::pubkey(),
        command => match client::Api::new(&cli.api, cli.token, &cli.tls) {
            Err(e) => Err(e),
            Ok(api) => match command {
                Command::Get { kind, name, output } => {
                    api.get(kind.as_deref(), name.as_deref(), output)
                }
                Command::Apply { file } => api.apply(&file),
                Command::Delete { kind, name } => api.delete(&kind, &name),
                Command::Status { output } => api.status(output),
                Command::Audit { limit, output } => api.audit(limit, output),
                Command::Peer {
                    command: PeerCommand::Showconf { name, output },
                } => api.showconf(&name, output),
                _ => unreachable!("handled above"),
            },
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}
