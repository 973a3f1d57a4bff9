//! `kawaii`: the gateway daemon and its command-line client.

mod client;
mod config;
mod docs;
mod keys;
mod lab;
mod metrics;
mod output;
mod sd_notify;
mod serve;
mod store_url;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// `kawaii --version`: the package version and the git commit it was built from (build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("KAWAII_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "kawaii",
    version = VERSION,
    about = "A project's private network gateway"
)]
struct Cli {
    /// API base URL for the client commands, also taken after the command
    /// [env: KAWAII_API; default: http://127.0.0.1:7780].
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Bearer token for the client commands, also taken after the command [env: KAWAII_TOKEN;
    /// default: the daemon's bootstrap token file STATE/admin.token, if readable].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    #[command(flatten)]
    tls: client::TlsOptions,
    #[command(subcommand)]
    command: Command,
}

/// The flags of the commands that talk to a daemon's API.
#[derive(Debug, Clone, clap::Args)]
struct ClientOpts {
    /// API base URL [env: KAWAII_API; default: http://127.0.0.1:7780].
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Bearer token [env: KAWAII_TOKEN; default: the daemon's bootstrap token file
    /// STATE/admin.token (STATE: KAWAII_STATE or /var/lib/kawaii), if readable].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

impl ClientOpts {
    /// The API, with the flags given after the command first, then those before it, then the
    /// environment.
    fn api(
        self,
        before: (Option<String>, Option<String>),
        tls: &client::TlsOptions,
    ) -> anyhow::Result<client::Api> {
        let base = self
            .api
            .or(before.0)
            .or_else(|| std::env::var("KAWAII_API").ok())
            .unwrap_or_else(|| "http://127.0.0.1:7780".into());
        let token = client::Token::find(self.token.or(before.1));
        client::Api::new(&base, token, tls)
    }
}

/// A config file, positional or with `--config` (one of the two).
#[derive(Debug, clap::Args)]
struct ConfigFile {
    /// The gateway config file (TOML, JSON, or a drop-in format).
    #[arg(value_name = "FILE", required_unless_present = "config")]
    file: Option<PathBuf>,
    /// The same, as a flag.
    #[arg(long, short, value_name = "FILE", conflicts_with = "file")]
    config: Option<PathBuf>,
}

impl ConfigFile {
    fn path(self) -> PathBuf {
        self.file.or(self.config).unwrap_or_default()
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The gateway config file; edits are applied live.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// This instance's zone (may be omitted with one zone or none).
        #[arg(long)]
        zone: Option<String>,
        /// Where the store lives.
        #[arg(long, default_value = "/var/lib/kawaii")]
        state: PathBuf,
        #[command(flatten)]
        store: StoreOpts,
        /// Rolling upgrades: speak (and read) only the previous release's version of every
        /// message between instances.
        #[arg(
            long,
            hide = true,
            env = "KAWAII_SPEAK_PREVIOUS",
            action = clap::ArgAction::SetTrue,
            value_parser = clap::builder::BoolishValueParser::new()
        )]
        speak_previous: bool,
    },
    /// Validate a config file: prints every error (exit 1) or only warnings (exit 0).
    Check {
        #[command(flatten)]
        file: ConfigFile,
        /// This machine is the gateway: also warn about missing interfaces and a peering `via`
        /// or IPsec `remote_peer` that no connected network or route reaches.
        #[arg(long)]
        local: bool,
        /// With --local: the zone this machine serves (default: every zone).
        #[arg(long, requires = "local")]
        zone: Option<String>,
    },
    /// Print what would be applied, without applying it (no daemon needed).
    Render {
        #[command(flatten)]
        file: ConfigFile,
        /// Plan for this zone (may be omitted with one zone or none).
        #[arg(long)]
        zone: Option<String>,
        /// Which part of the plan to print.
        #[arg(long, value_enum, default_value = "all")]
        what: client::RenderWhat,
    },
    /// Show resources. With no KIND, the whole document.
    Get {
        /// gateway, ingress-rules, egress-rules, nat-rules, vpc-peerings, ipsec,
        /// wireguard-peers, pipes, routes (singular forms and the API's names such as
        /// wireguard/peers too); KIND/NAME names one resource.
        kind: Option<String>,
        /// One resource: its id (rules), domain (routes) or name.
        name: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: output::GetOutput,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Apply a file: a whole gateway document (TOML or JSON), or Kilo `Peer` manifests (YAML),
    /// which create or replace those WireGuard peers. Says `unchanged` when nothing changed.
    Apply {
        /// The file to apply; `-` reads stdin.
        #[arg(short = 'f', long = "filename", value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete one resource.
    Delete {
        /// The kind, as for `get` (or KIND/NAME, as `get -o name` prints).
        kind: String,
        /// Its id (rules), domain (routes) or name.
        name: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Zones, VIP owners, tunnels, peers, rule counters: what the daemon observes.
    Status {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: output::StatusOutput,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// The audit trail (admin token).
    Audit {
        /// The newest N entries.
        #[arg(long, default_value_t = 50, value_name = "N")]
        limit: usize,
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        output: output::AuditOutput,
        #[command(flatten)]
        client: ClientOpts,
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
    Import {
        /// A kiagateway TOML, a Cloud-Gateway conf.yaml, or a native file.
        file: PathBuf,
    },
    /// Write the man pages and the bash, zsh and fish completions (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        /// Directory to write `man/*.1` and `completions/{kawaii.bash,_kawaii,kawaii.fish}` in.
        #[arg(long)]
        out: PathBuf,
    },
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
        /// The host (as `kawaii lab status` lists them, without the `klab-` prefix).
        host: String,
        /// The command and its arguments; `kawaii ...` runs this binary, with the token and
        /// API of that host's daemon.
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
    #[command(flatten)]
    access: StoreAccess,
}

/// How to reach an etcd store: its TLS and credentials (ignored for sqlite).
#[derive(Debug, clap::Args)]
struct StoreAccess {
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

impl StoreAccess {
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
        /// The source: `sqlite` or an etcd URL, as for `serve --store`.
        #[arg(long)]
        from: String,
        /// The target, in the same forms.
        #[arg(long)]
        to: String,
        /// Overwrite a target that is not empty.
        #[arg(long)]
        force: bool,
        /// The state directory a plain `sqlite` URL means.
        #[arg(long, default_value = "/var/lib/kawaii")]
        state: PathBuf,
        /// TLS and credentials of the etcd side(s).
        #[command(flatten)]
        access: StoreAccess,
    },
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Print the configuration a VPN peer applies.
    Showconf {
        /// The peer's name.
        name: String,
        /// `wireguard` (wg-quick), or a Kilo `Peer` as JSON or YAML.
        #[arg(short, long, value_enum, default_value = "wireguard")]
        output: ShowconfOutput,
        /// The zone's IPv6 VIP as `Endpoint` (for a peer that reaches the gateway over IPv6).
        #[arg(long)]
        ipv6: bool,
        #[command(flatten)]
        client: ClientOpts,
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
pub enum ShowconfOutput {
    Wireguard,
    Json,
    Yaml,
}

fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    let before = (cli.api, cli.token);
    let tls = cli.tls;
    let result = match cli.command {
        Command::Serve {
            config,
            zone,
            state,
            store,
            speak_previous,
        } => {
            kawaii_drivers::wire::speak_previous(speak_previous);
            serve::run(config, zone, state, store.access.args(&store.store))
        }
        Command::Store {
            command:
                StoreCommand::Copy {
                    from,
                    to,
                    force,
                    state,
                    access,
                },
        } => {
            // TLS and credentials go to the etcd side(s) only.
            let side = |url: &str| {
                let args = access.args(url);
                if url.starts_with("etcd") {
                    args
                } else {
                    args.without_access()
                }
            };
            store_url::copy(&side(&from), &side(&to), &state, force)
        }
        Command::Check { file, local, zone } => config::check(&file.path(), local, zone.as_deref()),
        Command::Render { file, zone, what } => client::render(&file.path(), zone.as_deref(), what),
        Command::GenerateDocs { out } => docs::generate(Cli::command(), &out),
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
        Command::Get {
            kind,
            name,
            output,
            client,
        } => client
            .api(before, &tls)
            .and_then(|api| api.get(kind.as_deref(), name.as_deref(), output)),
        Command::Apply { file, client } => {
            client.api(before, &tls).and_then(|api| api.apply(&file))
        }
        Command::Delete { kind, name, client } => client
            .api(before, &tls)
            .and_then(|api| api.delete(&kind, name.as_deref())),
        Command::Status { output, client } => {
            client.api(before, &tls).and_then(|api| api.status(output))
        }
        Command::Audit {
            limit,
            output,
            client,
        } => client
            .api(before, &tls)
            .and_then(|api| api.audit(limit, output)),
        Command::Peer {
            command:
                PeerCommand::Showconf {
                    name,
                    output,
                    ipv6,
                    client,
                },
        } => client
            .api(before, &tls)
            .and_then(|api| api.showconf(&name, output, ipv6)),
    };
    match result {
        Ok(code) => code,
        // The reader went away (`kawaii status | head -1`): nothing more to say, to anyone.
        Err(e) if broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            for line in format!("{e:#}").lines() {
                eprintln!("error: {line}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A closed pipe (`kawaii ... | head -1`) ends the program quietly, as it ends `cat`: the client
/// commands write through [`client::emit`], whose `BrokenPipe` error `main` ends on; a
/// `println!` elsewhere panics on it, and this hook turns that panic into the same quiet exit.
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's words: "failed printing to stdout: Broken pipe (os error 32)".
        if msg.starts_with("failed printing to stdout")
            && msg.to_ascii_lowercase().contains("broken pipe")
        {
            std::process::exit(0);
        }
        default(info)
    }));
}

/// Whether the error is a write to a pipe whose reader is gone.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument and flag of every command says what it is for.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(format!("{path} {} (the command)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "kawaii", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
