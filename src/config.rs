//! One typed configuration from flags, `JITGATE_*` environment variables and an optional
//! TOML file (`--config FILE`), in that order of precedence, checked once at start-up.
//! A bad value stops the process with one line naming the setting and what it accepts.

use crate::domain::{AccessDuration, DurationLimits};
use clap::Args;
use ipnet::IpNet;
use reqwest::Url;
use secrecy::SecretString;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The settings as given. Every field is optional so that a flag or variable can be told
/// apart from a value in the file; defaults are applied by [`Settings::resolve`].
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address to serve on [default: 127.0.0.1:8080]
    #[arg(long, env = "JITGATE_LISTEN")]
    pub listen: Option<String>,
    /// sqlite://PATH or postgres://... [default: sqlite://jitgate.db]
    #[arg(long, env = "JITGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the dev signing key lives [default: .]
    #[arg(long, env = "JITGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// dev (local signing key) or entra [default: dev]
    #[arg(long, env = "JITGATE_AUTH_MODE")]
    pub auth_mode: Option<String>,
    /// Entra tenant whose tokens are accepted
    #[arg(long, env = "JITGATE_ENTRA_TENANT_ID")]
    pub entra_tenant_id: Option<String>,
    /// Accepted `aud` values, comma-separated
    #[arg(long, env = "JITGATE_ENTRA_AUDIENCE")]
    pub entra_audience: Option<String>,
    /// OIDC authority [default: https://login.microsoftonline.com]
    #[arg(long, env = "JITGATE_ENTRA_AUTHORITY")]
    pub entra_authority: Option<String>,
    /// Clock skew accepted on token exp/nbf, ISO 8601, at most PT5M [default: PT1M]
    #[arg(long, env = "JITGATE_TOKEN_LEEWAY")]
    pub token_leeway: Option<String>,
    /// sim (built-in simulator) or azure [default: sim]
    #[arg(long, env = "JITGATE_ARM_MODE")]
    pub arm_mode: Option<String>,
    /// ARM base URL [default: https://management.azure.com]
    #[arg(long, env = "JITGATE_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// managed-identity, client-secret, workload-identity or static [default: managed-identity]
    #[arg(long, env = "JITGATE_ARM_CREDENTIAL")]
    pub arm_credential: Option<String>,
    /// Bearer token for the static ARM credential
    #[arg(long, env = "JITGATE_ARM_STATIC_TOKEN", hide_env_values = true)]
    pub arm_static_token: Option<String>,
    /// Managed identity token source [default: IDENTITY_ENDPOINT or http://169.254.169.254]
    #[arg(long, env = "JITGATE_IMDS_ENDPOINT")]
    pub imds_endpoint: Option<String>,
    /// Subscriptions to inventory, comma-separated
    #[arg(long, env = "JITGATE_SUBSCRIPTIONS")]
    pub subscriptions: Option<String>,
    /// CIDRs whose X-Forwarded-For is believed, comma-separated
    #[arg(long, env = "JITGATE_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// Shortest duration a policy or request may use [default: PT5M]
    #[arg(long, env = "JITGATE_MIN_ACCESS_DURATION")]
    pub min_access_duration: Option<String>,
    /// Lowest NSG priority number jitgate may use [default: 100]
    #[arg(long, env = "JITGATE_RULE_PRIORITY_BASE")]
    pub rule_priority_base: Option<String>,
    /// text or json [default: text]
    #[arg(long, env = "JITGATE_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// How long audit events are kept, ISO 8601 (P365D); older ones are pruned behind a
    /// signed checkpoint [default: kept forever]
    #[arg(long, env = "JITGATE_AUDIT_RETENTION")]
    pub audit_retention: Option<String>,
    /// The P-256 key (PKCS#8 PEM) that signs retention checkpoints; created when missing
    /// [default: DATA_DIR/audit-signing-key.pem]
    #[arg(long, env = "JITGATE_AUDIT_SIGNING_KEY")]
    pub audit_signing_key: Option<PathBuf>,
    /// The wait after a webhook delivery's first failed try, doubling after each, ISO 8601
    /// [default: PT10S]
    #[arg(long, env = "JITGATE_WEBHOOK_RETRY_BASE")]
    pub webhook_retry_base: Option<String>,
    /// The Slack app's signing secret; unset, the Slack endpoints answer 404
    #[arg(long, env = "JITGATE_SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Option<SecretSetting>,
    /// The Teams outgoing webhook's security token (base64); unset, the Teams endpoint answers 404
    #[arg(
        long,
        env = "JITGATE_TEAMS_OUTGOING_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    pub teams_outgoing_webhook_secret: Option<SecretSetting>,
    /// Requests per second each caller may make (by token object id, else by client
    /// address); 0 turns the limit off [default: 20]
    #[arg(long, env = "JITGATE_RATE_LIMIT")]
    pub rate_limit: Option<String>,
    /// How many requests a caller may make at once before the rate applies [default: 40]
    #[arg(long, env = "JITGATE_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<String>,
    /// Due outbox jobs beyond which new access requests are refused with 503; 0 turns the
    /// check off [default: 10000]
    #[arg(long, env = "JITGATE_OUTBOX_MAX_BACKLOG")]
    pub outbox_max_backlog: Option<String>,
}

/// A setting that is a secret: kept out of `Debug` output (and so out of logs).
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretSetting(String);

impl std::fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for SecretSetting {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(SecretSetting(s.to_string()))
    }
}

/// The chat platforms' secrets; a platform without one is switched off.
#[derive(Debug, Clone, Default)]
pub struct ChatopsConfig {
    pub slack_signing_secret: Option<SecretString>,
    /// The Teams outgoing webhook's HMAC key (the security token, base64-decoded).
    pub teams_key: Option<secrecy::SecretSlice<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err("sqlite:// needs a file path, such as sqlite://jitgate.db".into());
            }
            return Ok(DatabaseUrl::Sqlite(url.to_string()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Url::parse(url).map_err(|e| format!("not a valid URL: {e}"))?;
            return Ok(DatabaseUrl::Postgres(url.to_string()));
        }
        Err("expected sqlite://PATH or postgres://USER@HOST/DB".into())
    }

    pub fn backend(&self) -> &'static str {
        match self {
            DatabaseUrl::Sqlite(_) => "sqlite",
            DatabaseUrl::Postgres(_) => "postgres",
        }
    }
}

#[derive(Debug, Clone)]
pub enum AuthConfig {
    Dev,
    Entra {
        tenant_id: String,
        audiences: Vec<String>,
        authority: Url,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmMode {
    Sim,
    Azure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArmCredentialKind {
    ManagedIdentity,
    ClientSecret,
    WorkloadIdentity,
    Static,
}

#[derive(Debug, Clone)]
pub struct ArmConfig {
    pub mode: ArmMode,
    pub endpoint: Url,
    pub credential: ArmCredentialKind,
    pub static_token: Option<SecretString>,
    pub imds_endpoint: Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The checked configuration the service runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub data_dir: PathBuf,
    pub auth: AuthConfig,
    pub token_leeway: std::time::Duration,
    pub arm: ArmConfig,
    pub subscriptions: Vec<String>,
    pub trusted_proxies: Vec<IpNet>,
    pub durations: DurationLimits,
    pub rule_priority_base: u16,
    pub log_format: LogFormat,
    /// Audit events older than this are pruned; `None` keeps them forever.
    pub audit_retention: Option<chrono::Duration>,
    pub audit_signing_key: PathBuf,
    pub webhook_retry_base: std::time::Duration,
    pub chatops: ChatopsConfig,
    /// The per-caller request rate; `None` when turned off.
    pub rate_limit: Option<RateLimit>,
    /// Due outbox jobs beyond which new access requests are refused; `None` when turned off.
    pub outbox_max_backlog: Option<u32>,
}

/// A token bucket: `per_second` refill, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: std::num::NonZeroU32,
    pub burst: std::num::NonZeroU32,
}

/// A setting that cannot be used, said in one line.
#[derive(Debug, thiserror::Error)]
#[error("invalid {setting} {value:?}: {reason}")]
pub struct ConfigError {
    pub setting: &'static str,
    pub value: String,
    pub reason: String,
}

impl Settings {
    /// Reads a TOML file whose keys are the settings' names in snake case (`database_url`).
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            setting: "--config",
            value: path.display().to_string(),
            reason: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError {
            setting: "--config",
            value: path.display().to_string(),
            reason: e.message().to_string(),
        })
    }

    /// Fills what `self` leaves unset from `fallback`.
    pub fn or(self, fallback: Settings) -> Settings {
        macro_rules! pick {
            ($($field:ident),*) => { Settings { $($field: self.$field.or(fallback.$field)),* } };
        }
        pick!(
            listen,
            database_url,
            data_dir,
            auth_mode,
            entra_tenant_id,
            entra_audience,
            entra_authority,
            token_leeway,
            arm_mode,
            arm_endpoint,
            arm_credential,
            arm_static_token,
            imds_endpoint,
            subscriptions,
            trusted_proxies,
            min_access_duration,
            rule_priority_base,
            log_format,
            audit_retention,
            audit_signing_key,
            webhook_retry_base,
            slack_signing_secret,
            teams_outgoing_webhook_secret,
            rate_limit,
            rate_limit_burst,
            outbox_max_backlog
        )
    }

    /// Applies defaults and checks every value.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let bad = |setting: &'static str, value: &str, reason: String| ConfigError {
            setting,
            value: value.to_string(),
            reason,
        };
        let listen_s = self.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen = listen_s.parse().map_err(|_| {
            bad(
                "JITGATE_LISTEN",
                &listen_s,
                "expected HOST:PORT such as 127.0.0.1:8080".into(),
            )
        })?;

        let db_s = self
            .database_url
            .unwrap_or_else(|| "sqlite://jitgate.db".into());
        let database = DatabaseUrl::parse(&db_s)
            .map_err(|r| bad("JITGATE_DATABASE_URL", &redact_url(&db_s), r))?;

        let url = |setting: &'static str, value: String| -> Result<Url, ConfigError> {
            match Url::parse(&value) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(u),
                Ok(_) => Err(bad(
                    setting,
                    &value,
                    "expected an http:// or https:// URL".into(),
                )),
                Err(e) => Err(bad(setting, &value, format!("not a valid URL: {e}"))),
            }
        };

        let auth_mode = self.auth_mode.unwrap_or_else(|| "dev".into());
        let auth = match auth_mode.as_str() {
            "dev" => AuthConfig::Dev,
            "entra" => {
                let tenant_id =
                    self.entra_tenant_id
                        .filter(|t| !t.is_empty())
                        .ok_or_else(|| {
                            bad(
                                "JITGATE_ENTRA_TENANT_ID",
                                "",
                                "required when JITGATE_AUTH_MODE=entra".into(),
                            )
                        })?;
                let audiences = split_list(self.entra_audience.as_deref());
                if audiences.is_empty() {
                    return Err(bad(
                        "JITGATE_ENTRA_AUDIENCE",
                        "",
                        "required when JITGATE_AUTH_MODE=entra".into(),
                    ));
                }
                let authority = url(
                    "JITGATE_ENTRA_AUTHORITY",
                    self.entra_authority
                        .unwrap_or_else(|| "https://login.microsoftonline.com".into()),
                )?;
                AuthConfig::Entra {
                    tenant_id,
                    audiences,
                    authority,
                }
            }
            other => {
                return Err(bad(
                    "JITGATE_AUTH_MODE",
                    other,
                    "expected dev or entra".into(),
                ))
            }
        };

        let leeway_s = self.token_leeway.unwrap_or_else(|| "PT1M".into());
        let token_leeway = leeway_s
            .parse::<AccessDuration>()
            .ok()
            .filter(|d| d.as_secs() <= 300)
            .map(|d| std::time::Duration::from_secs(d.as_secs().into()))
            .ok_or_else(|| {
                bad(
                    "JITGATE_TOKEN_LEEWAY",
                    &leeway_s,
                    "expected an ISO 8601 duration from PT0S to PT5M".into(),
                )
            })?;

        let arm_mode = match self.arm_mode.as_deref().unwrap_or("sim") {
            "sim" => ArmMode::Sim,
            "azure" => ArmMode::Azure,
            other => {
                return Err(bad(
                    "JITGATE_ARM_MODE",
                    other,
                    "expected sim or azure".into(),
                ))
            }
        };
        let credential = match self.arm_credential.as_deref().unwrap_or("managed-identity") {
            "managed-identity" => ArmCredentialKind::ManagedIdentity,
            "client-secret" => ArmCredentialKind::ClientSecret,
            "workload-identity" => ArmCredentialKind::WorkloadIdentity,
            "static" => ArmCredentialKind::Static,
            other => {
                return Err(bad(
                    "JITGATE_ARM_CREDENTIAL",
                    other,
                    "expected managed-identity, client-secret, workload-identity or static".into(),
                ))
            }
        };
        let static_token = self
            .arm_static_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        if credential == ArmCredentialKind::Static
            && arm_mode == ArmMode::Azure
            && static_token.is_none()
        {
            return Err(bad(
                "JITGATE_ARM_STATIC_TOKEN",
                "",
                "required when JITGATE_ARM_CREDENTIAL=static".into(),
            ));
        }
        let imds_default =
            std::env::var("IDENTITY_ENDPOINT").unwrap_or_else(|_| "http://169.254.169.254".into());
        let arm = ArmConfig {
            mode: arm_mode,
            endpoint: url(
                "JITGATE_ARM_ENDPOINT",
                self.arm_endpoint
                    .unwrap_or_else(|| "https://management.azure.com".into()),
            )?,
            credential,
            static_token,
            imds_endpoint: url(
                "JITGATE_IMDS_ENDPOINT",
                self.imds_endpoint.unwrap_or(imds_default),
            )?,
        };

        let subscriptions = split_list(self.subscriptions.as_deref());
        for s in &subscriptions {
            crate::domain::Scope::parse(&format!("/subscriptions/{s}"))
                .map_err(|r| bad("JITGATE_SUBSCRIPTIONS", s, r))?;
        }

        let trusted_proxies = split_list(self.trusted_proxies.as_deref())
            .iter()
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        bad(
                            "JITGATE_TRUSTED_PROXIES",
                            p,
                            "expected IP addresses or CIDR blocks".into(),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;

        let min_s = self.min_access_duration.unwrap_or_else(|| "PT5M".into());
        let min: AccessDuration = min_s
            .parse()
            .map_err(|r| bad("JITGATE_MIN_ACCESS_DURATION", &min_s, r))?;
        if min.as_secs() == 0 || min > DurationLimits::MAX {
            return Err(bad(
                "JITGATE_MIN_ACCESS_DURATION",
                &min_s,
                "expected from PT1S to PT24H".into(),
            ));
        }

        let prio_s = self.rule_priority_base.unwrap_or_else(|| "100".into());
        let rule_priority_base = prio_s
            .parse::<u16>()
            .ok()
            .filter(|p| (100..4096).contains(p))
            .ok_or_else(|| {
                bad(
                    "JITGATE_RULE_PRIORITY_BASE",
                    &prio_s,
                    "expected a number from 100 to 4095 (NSG priorities)".into(),
                )
            })?;

        let log_format = match self.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "JITGATE_LOG_FORMAT",
                    other,
                    "expected text or json".into(),
                ))
            }
        };

        let audit_retention = match self.audit_retention.as_deref() {
            None | Some("") => None,
            Some(text) => Some(
                text.parse::<AccessDuration>()
                    .and_then(|d| {
                        if d.as_secs() == 0 {
                            Err("a retention of zero would delete every event".into())
                        } else {
                            Ok(d.as_chrono())
                        }
                    })
                    .map_err(|r| bad("JITGATE_AUDIT_RETENTION", text, r))?,
            ),
        };
        let data_dir = self.data_dir.unwrap_or_else(|| PathBuf::from("."));
        let audit_signing_key = self
            .audit_signing_key
            .unwrap_or_else(|| data_dir.join("audit-signing-key.pem"));

        let retry_s = self.webhook_retry_base.unwrap_or_else(|| "PT10S".into());
        let webhook_retry_base = retry_s
            .parse::<AccessDuration>()
            .ok()
            .filter(|d| (1..=3600).contains(&d.as_secs()))
            .map(|d| std::time::Duration::from_secs(d.as_secs().into()))
            .ok_or_else(|| {
                bad(
                    "JITGATE_WEBHOOK_RETRY_BASE",
                    &retry_s,
                    "expected an ISO 8601 duration from PT1S to PT1H".into(),
                )
            })?;
        let chatops = ChatopsConfig {
            slack_signing_secret: self
                .slack_signing_secret
                .map(|s| s.0)
                .filter(|s| !s.is_empty())
                .map(SecretString::from),
            teams_key: match self.teams_outgoing_webhook_secret.map(|s| s.0) {
                None => None,
                Some(s) if s.is_empty() => None,
                Some(s) => Some(
                    crate::chatops::signature::teams_key(&s)
                        .map_err(|r| bad("JITGATE_TEAMS_OUTGOING_WEBHOOK_SECRET", "[redacted]", r))?
                        .into(),
                ),
            },
        };

        let number = |setting: &'static str, value: Option<String>, default: &str, max: u32| {
            let text = value.unwrap_or_else(|| default.into());
            text.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad(setting, &text, format!("expected a number from 0 to {max}")))
        };
        let per_second = number("JITGATE_RATE_LIMIT", self.rate_limit, "20", 1_000_000)?;
        let burst = number(
            "JITGATE_RATE_LIMIT_BURST",
            self.rate_limit_burst,
            "40",
            1_000_000,
        )?;
        let rate_limit = match std::num::NonZeroU32::new(per_second) {
            None => None,
            Some(per_second) => Some(RateLimit {
                per_second,
                burst: std::num::NonZeroU32::new(burst).ok_or_else(|| {
                    bad(
                        "JITGATE_RATE_LIMIT_BURST",
                        "0",
                        "expected at least 1 while JITGATE_RATE_LIMIT is on".into(),
                    )
                })?,
            }),
        };
        let outbox_max_backlog = Some(number(
            "JITGATE_OUTBOX_MAX_BACKLOG",
            self.outbox_max_backlog,
            "10000",
            100_000_000,
        )?)
        .filter(|n| *n > 0);

        Ok(Config {
            rate_limit,
            outbox_max_backlog,
            listen,
            database,
            data_dir,
            auth,
            token_leeway,
            arm,
            subscriptions,
            trusted_proxies,
            durations: DurationLimits::with_min(min),
            rule_priority_base,
            log_format,
            audit_retention,
            audit_signing_key,
            webhook_retry_base,
            chatops,
        })
    }
}

fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A database URL with its password blanked, for messages and logs. Done on the text, not
/// with a URL parser, so that a URL too broken to parse is still redacted.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find('/')
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..authority_start],
            &authority[..colon],
            &url[authority_start + at..]
        ),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_settings_give_the_embedded_default() {
        let c = Settings::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            c.database,
            DatabaseUrl::Sqlite("sqlite://jitgate.db".into())
        );
        assert!(matches!(c.auth, AuthConfig::Dev));
        assert_eq!(c.arm.mode, ArmMode::Sim);
        assert_eq!(c.durations.min.to_string(), "PT5M");
        assert_eq!(c.rule_priority_base, 100);
        let limit = c.rate_limit.unwrap();
        assert_eq!((limit.per_second.get(), limit.burst.get()), (20, 40));
        assert_eq!(c.outbox_max_backlog, Some(10_000));
        let off = Settings {
            rate_limit: Some("0".into()),
            outbox_max_backlog: Some("0".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert_eq!((off.rate_limit, off.outbox_max_backlog), (None, None));
    }

    #[test]
    fn bad_values_name_the_setting_in_one_line() {
        let cases: Vec<(Settings, &str)> = vec![
            (
                Settings {
                    database_url: Some("mysql://x".into()),
                    ..Default::default()
                },
                "JITGATE_DATABASE_URL",
            ),
            (
                Settings {
                    auth_mode: Some("kerberos".into()),
                    ..Default::default()
                },
                "JITGATE_AUTH_MODE",
            ),
            (
                Settings {
                    auth_mode: Some("entra".into()),
                    ..Default::default()
                },
                "JITGATE_ENTRA_TENANT_ID",
            ),
            (
                Settings {
                    arm_endpoint: Some("not a url".into()),
                    ..Default::default()
                },
                "JITGATE_ARM_ENDPOINT",
            ),
            (
                Settings {
                    listen: Some("8080".into()),
                    ..Default::default()
                },
                "JITGATE_LISTEN",
            ),
            (
                Settings {
                    trusted_proxies: Some("10.0.0.0/8,bogus".into()),
                    ..Default::default()
                },
                "JITGATE_TRUSTED_PROXIES",
            ),
            (
                Settings {
                    min_access_duration: Some("P1M".into()),
                    ..Default::default()
                },
                "JITGATE_MIN_ACCESS_DURATION",
            ),
            (
                Settings {
                    rule_priority_base: Some("5000".into()),
                    ..Default::default()
                },
                "JITGATE_RULE_PRIORITY_BASE",
            ),
            (
                Settings {
                    rate_limit: Some("fast".into()),
                    ..Default::default()
                },
                "JITGATE_RATE_LIMIT",
            ),
            (
                Settings {
                    rate_limit_burst: Some("0".into()),
                    ..Default::default()
                },
                "JITGATE_RATE_LIMIT_BURST",
            ),
            (
                Settings {
                    outbox_max_backlog: Some("-1".into()),
                    ..Default::default()
                },
                "JITGATE_OUTBOX_MAX_BACKLOG",
            ),
        ];
        for (settings, setting) in cases {
            let message = settings.resolve().unwrap_err().to_string();
            assert!(
                message.starts_with(&format!("invalid {setting}")),
                "{message}"
            );
            assert!(!message.contains('\n'));
        }
    }

    #[test]
    fn flags_and_env_win_over_the_file() {
        let file: Settings =
            toml::from_str("listen = \"0.0.0.0:9000\"\nlog_format = \"json\"\n").unwrap();
        let given = Settings {
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        };
        let c = given.or(file).resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:1");
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            toml::from_str::<Settings>("lisen = \"x\"").is_err(),
            "a misspelt key is refused"
        );
    }

    #[test]
    fn chat_secrets_stay_out_of_debug_output() {
        let settings = Settings {
            slack_signing_secret: Some("slack-hunter2".parse().unwrap()),
            teams_outgoing_webhook_secret: Some("dGVhbXMtaHVudGVyMg==".parse().unwrap()),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("hunter2"));
        let c = settings.resolve().unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("dGVhbXMtaHVudGVyMg"),
            "{shown}"
        );
        assert!(c.chatops.slack_signing_secret.is_some());
        let bad = Settings {
            teams_outgoing_webhook_secret: Some("not base64!".parse().unwrap()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err()
        .to_string();
        assert!(
            bad.starts_with("invalid JITGATE_TEAMS_OUTGOING_WEBHOOK_SECRET"),
            "{bad}"
        );
        assert!(!bad.contains("not base64!"), "{bad}");
    }

    #[test]
    fn passwords_never_reach_messages() {
        let e = Settings {
            database_url: Some("postgres://u:hunter2@h:99999/db".into()),
            ..Default::default()
        }
        .resolve()
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://h/db?user=a@b"),
            "postgres://h/db?user=a@b"
        );
    }
}
