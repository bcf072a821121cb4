//! The `jitgate` command line.

use crate::audit::checkpoint::AuditVerifier;
use crate::audit::verify::verify_chain;
use crate::auth::dev::{DevKey, DevTokenSpec};
use crate::config::{redact_url, Config, ConfigError, DatabaseUrl, Settings};
use crate::domain::{AccessDuration, Scope};
use crate::history_seed::{self, HistorySpec};
use crate::rbac::Role;
use crate::{api, server, store, telemetry};
use anyhow::Context;
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
    /// Run the ARM simulator alone, seeded with the demo subscription.
    ArmSim(ArmSimArgs),
    /// The audit trail, offline.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Fill a database with realistic grant history (for benchmarks and trying queries).
    SeedHistory(SeedHistoryArgs),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the hash chain in a database and report the first broken seq (exit status 1).
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The database to check (sqlite://FILE or postgres://...).
    #[arg(long, env = "JITGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The audit signing key (or its public key, PEM), needed once events were pruned.
    #[arg(long, env = "JITGATE_AUDIT_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct SeedHistoryArgs {
    /// The database to fill (sqlite://FILE or postgres://...); migrated first.
    #[arg(long, env = "JITGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// How many grants to write.
    #[arg(long)]
    pub grants: u64,
    /// The random seed: the same seed writes the same history.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct ArmSimArgs {
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// The bearer token callers must send; any non-empty token when unset.
    #[arg(long, env = "JITGATE_ARM_SIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How long each write's long-running operation takes, ISO 8601.
    #[arg(long, default_value = "PT1S", value_parser = parse_duration)]
    pub lro_delay: AccessDuration,
    /// Share of requests answered 429 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub throttle_rate: f64,
    /// Share of requests answered 500/503 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub server_error_rate: f64,
    /// Share of writes whose long-running operation fails (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub lro_failure_rate: f64,
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
        Command::ArmSim(args) => {
            telemetry::init(crate::config::LogFormat::Text);
            runtime()?.block_on(run_arm_sim(args))
        }
        Command::Audit(AuditCommand::Verify(args)) => runtime()?.block_on(audit_verify(args)),
        Command::SeedHistory(args) => runtime()?.block_on(seed_history(args)),
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

async fn open_store(url: &str) -> anyhow::Result<store::DynStore> {
    let database = DatabaseUrl::parse(url).map_err(|reason| ConfigError {
        setting: "--database-url",
        value: redact_url(url),
        reason,
    })?;
    store::connect(&database)
        .await
        .with_context(|| format!("opening the database {}", redact_url(url)))
}

/// Prints the report as JSON; a broken chain is an error, so the exit status says it too.
async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<()> {
    let store = open_store(&args.database_url).await?;
    let key = args
        .signing_key
        .as_deref()
        .map(AuditVerifier::load)
        .transpose()?;
    let report = verify_chain(&store, key.as_ref(), None).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    match report.broken_at {
        None => Ok(()),
        Some(seq) => anyhow::bail!(
            "the audit chain is broken at seq {seq}: {}",
            report.reason.unwrap_or_default()
        ),
    }
}

async fn seed_history(args: SeedHistoryArgs) -> anyhow::Result<()> {
    let store = open_store(&args.database_url).await?;
    let spec = HistorySpec::new(args.grants, args.seed, chrono::Utc::now());
    let started = std::time::Instant::now();
    let mut last_report = 0;
    history_seed::seed(&store, &spec, |done| {
        if done - last_report >= 1_000_000 || done == spec.grants {
            last_report = done;
            eprintln!(
                "{done} grants written ({:.0} s)",
                started.elapsed().as_secs_f64()
            );
        }
    })
    .await?;
    Ok(())
}

async fn run_arm_sim(args: ArmSimArgs) -> anyhow::Result<()> {
    use crate::arm::sim::{seed, FaultPlan, Sim};
    let rate = |name: &str, r: f64| {
        if (0.0..=1.0).contains(&r) {
            Ok(r)
        } else {
            Err(anyhow::anyhow!("--{name} must be between 0 and 1"))
        }
    };
    let faults = FaultPlan {
        lro_delay: std::time::Duration::from_secs(args.lro_delay.as_secs().into()),
        throttle_rate: rate("throttle-rate", args.throttle_rate)?,
        server_error_rate: rate("server-error-rate", args.server_error_rate)?,
        lro_failure_rate: rate("lro-failure-rate", args.lro_failure_rate)?,
        ..FaultPlan::default()
    };
    let mut sim = Sim::new(faults);
    seed::demo(&sim);
    if let Some(token) = args.token {
        sim = sim.with_token(token);
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let base = sim.spawn(listener)?;
    eprintln!(
        "ARM simulator on {base}: demo subscription {}. Point jitgate at it with\n  \
         JITGATE_ARM_MODE=azure JITGATE_ARM_ENDPOINT={base} JITGATE_ARM_CREDENTIAL=static JITGATE_ARM_STATIC_TOKEN=<token> JITGATE_SUBSCRIPTIONS={}",
        seed::DEMO_SUBSCRIPTION,
        seed::DEMO_SUBSCRIPTION
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
