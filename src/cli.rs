//! The `jitgate` command line.

use crate::auth::dev::{DevKey, DevTokenSpec};
use crate::config::{Config, ConfigError, Settings};
use crate::domain::{AccessDuration, Scope};
use crate::rbac::Role;
use crate::{api, server, store, telemetry};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "jitgate",
    version,
    about = "Just-in-time access to Azure VM management ports"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServiceArgs),
    /// Apply database migrations and exit.
    Migrate(ServiceArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Print a dev-mode bearer token (dev auth only).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    /// A TOML file of settings (keys as the flags, in snake case); flags and env win over it.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub settings: Settings,
}

impl ServiceArgs {
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        self.settings.or(file).resolve()
    }
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user name (shown as `preferred_username`).
    #[arg(long)]
    pub user: String,
    /// A role; repeat for several (Jit.Admin, Jit.Approver, Jit.Requester, Jit.Auditor, Jit.Bot).
    #[arg(long = "role", value_parser = parse_role)]
    pub roles: Vec<Role>,
    /// Narrow the roles to an ARM scope; repeat for several. Default: tenant-wide.
    #[arg(long = "scope", value_parser = parse_scope)]
    pub scopes: Vec<Scope>,
    /// A group object id for the `groups` claim; repeat for several.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// The object id. Default: derived from --user, so it is the same every time.
    #[arg(long)]
    pub oid: Option<String>,
    /// An app-only token (a bot's service principal) instead of a user's.
    #[arg(long)]
    pub app: bool,
    /// Lifetime, as an ISO 8601 duration.
    #[arg(long, default_value = "PT8H", value_parser = parse_duration)]
    pub ttl: AccessDuration,
    /// Where the dev signing key lives (as `serve`'s).
    #[arg(long, env = "JITGATE_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}
fn parse_scope(s: &str) -> Result<Scope, String> {
    Scope::parse(s)
}
fn parse_duration(s: &str) -> Result<AccessDuration, String> {
    s.parse()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<ConfigError>() => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Openapi => {
            print!("{}", api::openapi_json());
            Ok(())
        }
        Command::Token(args) => {
            let key = DevKey::load_or_create(&args.data_dir)?;
            let spec = DevTokenSpec {
                user: args.user,
                oid: args.oid,
                roles: args.roles,
                scopes: args.scopes,
                groups: args.groups,
                app: args.app,
                ttl: args.ttl.as_chrono(),
            };
            println!("{}", key.mint(&spec)?);
            Ok(())
        }
        Command::Serve(args) => {
            let config = args.resolve()?;
            telemetry::init(config.log_format);
            runtime()?.block_on(server::run(config))
        }
        Command::Migrate(args) => {
            let config = args.resolve()?;
            telemetry::init(config.log_format);
            runtime()?.block_on(async {
                let store = store::connect(&config.database).await?;
                eprintln!("migrations applied ({})", store.backend());
                Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}
