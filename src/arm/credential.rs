//! Bearer tokens for Azure Resource Manager, obtained the way Microsoft's SDKs do it: a client
//! secret or a federated (workload identity) assertion exchanged at the Entra token endpoint,
//! a managed identity token from IMDS or from App Service's `IDENTITY_ENDPOINT`, or a static
//! token given in the configuration.
//!
//! Tokens are cached until [`REFRESH_MARGIN`] before they expire, so that a token handed out is
//! still good for the ARM calls made with it, and a refresh is shared by every caller waiting
//! for it. Secrets (the client secret, the assertion, `IDENTITY_HEADER`, the tokens) are kept in
//! [`SecretString`]s and scrubbed from error text: none reaches an error, a Debug output or a log.

use crate::config::{ArmConfig, ArmCredentialKind};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::HeaderValue;
use reqwest::{RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A token is refreshed once it has less than this left, so that none expires mid-request.
pub const REFRESH_MARGIN: TimeDelta = TimeDelta::minutes(5);

const DEFAULT_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
const IMDS_API_VERSION: &str = "2018-02-01";
const APP_SERVICE_API_VERSION: &str = "2019-08-01";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const USER_AGENT: &str = concat!("jitgate/", env!("CARGO_PKG_VERSION"));
/// Error text from a token endpoint is cut to this many characters: it ends up in logs.
const MAX_ERROR_TEXT: usize = 1000;

/// The Azure SDK environment variables, read once (tests build it directly).
#[derive(Clone, Debug, Default)]
pub struct AzureEnv {
    /// `AZURE_TENANT_ID`
    pub tenant_id: Option<String>,
    /// `AZURE_CLIENT_ID` (also selects a user-assigned managed identity)
    pub client_id: Option<String>,
    /// `AZURE_CLIENT_SECRET`
    pub client_secret: Option<SecretString>,
    /// `AZURE_FEDERATED_TOKEN_FILE`
    pub federated_token_file: Option<PathBuf>,
    /// `AZURE_AUTHORITY_HOST`, default `https://login.microsoftonline.com`
    pub authority_host: Option<String>,
    /// `IDENTITY_ENDPOINT` (App Service / Container Apps managed identity)
    pub identity_endpoint: Option<String>,
    /// `IDENTITY_HEADER`
    pub identity_header: Option<SecretString>,
}

impl AzureEnv {
    /// Reads the variables; an empty one counts as unset, as in the Azure SDKs.
    pub fn from_env() -> AzureEnv {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        AzureEnv {
            tenant_id: var("AZURE_TENANT_ID"),
            client_id: var("AZURE_CLIENT_ID"),
            client_secret: var("AZURE_CLIENT_SECRET").map(SecretString::from),
            federated_token_file: std::env::var_os("AZURE_FEDERATED_TOKEN_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            authority_host: var("AZURE_AUTHORITY_HOST"),
            identity_endpoint: var("IDENTITY_ENDPOINT"),
            identity_header: var("IDENTITY_HEADER").map(SecretString::from),
        }
    }
}

/// Why no token could be had. The text never holds a secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A variable the credential needs is missing or unusable; the text names it.
    #[error("{0}")]
    Misconfigured(String),
    /// The token source answered with an error status; `error` and `description` are the
    /// OAuth `error` and `error_description` (for Entra, the `AADSTS...` text).
    #[error("token endpoint answered HTTP {status}: {error}: {description}")]
    TokenEndpoint {
        status: u16,
        error: String,
        description: String,
    },
    /// No answer: connection refused, DNS, TLS or the 10 s timeout.
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// A success status whose body is not a usable token response.
    #[error("token endpoint sent an unusable response: {0}")]
    BadResponse(String),
}

/// ARM bearer tokens from the configured source. Cheap to clone (Arc inside); clones share
/// the cache.
#[derive(Clone)]
pub struct ArmCredential {
    inner: Arc<Inner>,
}

struct Inner {
    source: Source,
    http: reqwest::Client,
    /// Held across a refresh, so that concurrent callers on a stale cache share one fetch.
    cache: Mutex<Option<Issued>>,
    fetches: AtomicU64,
}

enum Source {
    Static(SecretString),
    Remote(Remote),
}

/// A token source reached over HTTP, with everything it needs resolved at start-up.
enum Remote {
    ClientSecret {
        url: Url,
        client_id: String,
        secret: SecretString,
        scope: String,
    },
    WorkloadIdentity {
        url: Url,
        client_id: String,
        /// Read on every fetch: the kubelet rotates the projected token.
        token_file: PathBuf,
        scope: String,
    },
    /// App Service / Container Apps: the URL carries api-version, resource and client_id.
    AppService { url: Url, header: HeaderValue },
    /// The Instance Metadata Service: the URL carries api-version, resource and client_id.
    Imds { url: Url },
}

/// A token and when it stops being accepted. (Debug shows the token redacted.)
#[derive(Debug)]
struct Issued {
    token: SecretString,
    expires_at: DateTime<Utc>,
}

impl Issued {
    fn usable_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at - now > REFRESH_MARGIN
    }
}

impl std::fmt::Debug for ArmCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmCredential")
            .field("kind", &self.kind())
            .field("fetches", &self.fetches())
            .finish_non_exhaustive()
    }
}

impl ArmCredential {
    /// Checks that the variables the kind needs are present; fails with a one-line message
    /// naming the missing variable.
    pub fn new(arm: &ArmConfig, env: &AzureEnv) -> Result<ArmCredential, CredentialError> {
        let source = Source::from_config(arm, env)?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10).min(HTTP_TIMEOUT))
            .timeout(HTTP_TIMEOUT)
            .user_agent(USER_AGENT)
            // A token endpoint has no reason to redirect, and following one could carry the
            // secret in a 307's body or the identity header to another host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                CredentialError::Misconfigured(format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(ArmCredential {
            inner: Arc::new(Inner {
                source,
                http,
                cache: Mutex::new(None),
                fetches: AtomicU64::new(0),
            }),
        })
    }

    /// A token good for at least [`REFRESH_MARGIN`] more (when the source issues one that
    /// long), from the cache or freshly fetched. Failures are not cached: the next call tries
    /// again.
    pub async fn token(&self) -> Result<SecretString, CredentialError> {
        let remote = match &self.inner.source {
            Source::Static(token) => return Ok(token.clone()),
            Source::Remote(remote) => remote,
        };
        let mut cache = self.inner.cache.lock().await;
        if let Some(issued) = cache.as_ref().filter(|i| i.usable_at(Utc::now())) {
            return Ok(issued.token.clone());
        }
        let issued = remote.fetch(&self.inner.http).await?;
        self.inner.fetches.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(kind = self.kind(), expires_at = %issued.expires_at, "fetched an ARM token");
        let token = issued.token.clone();
        *cache = Some(issued);
        Ok(token)
    }

    /// How many tokens were fetched from the token source (for tests and /metrics); failed
    /// attempts are not counted, and a static token is never fetched.
    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::Relaxed)
    }

    /// "managed-identity" | "client-secret" | "workload-identity" | "static"
    pub fn kind(&self) -> &'static str {
        match &self.inner.source {
            Source::Static(_) => "static",
            Source::Remote(Remote::ClientSecret { .. }) => "client-secret",
            Source::Remote(Remote::WorkloadIdentity { .. }) => "workload-identity",
            Source::Remote(Remote::AppService { .. } | Remote::Imds { .. }) => "managed-identity",
        }
    }
}

impl Source {
    fn from_config(arm: &ArmConfig, env: &AzureEnv) -> Result<Source, CredentialError> {
        let audience = arm.endpoint.as_str().trim_end_matches('/');
        let scope = format!("{audience}/.default");
        let remote = match arm.credential {
            ArmCredentialKind::Static => {
                return arm
                    .static_token
                    .clone()
                    .map(Source::Static)
                    .ok_or_else(|| missing("static", &[("JITGATE_ARM_STATIC_TOKEN", true)]))
            }
            ArmCredentialKind::ClientSecret => client_secret(env, scope)?,
            ArmCredentialKind::WorkloadIdentity => workload_identity(env, scope)?,
            ArmCredentialKind::ManagedIdentity => {
                managed_identity(arm, env, &format!("{audience}/"))?
            }
        };
        Ok(Source::Remote(remote))
    }
}

fn client_secret(env: &AzureEnv, scope: String) -> Result<Remote, CredentialError> {
    let (Some(tenant), Some(client_id), Some(secret)) =
        (&env.tenant_id, &env.client_id, &env.client_secret)
    else {
        return Err(missing(
            "client-secret",
            &[
                ("AZURE_TENANT_ID", env.tenant_id.is_none()),
                ("AZURE_CLIENT_ID", env.client_id.is_none()),
                ("AZURE_CLIENT_SECRET", env.client_secret.is_none()),
            ],
        ));
    };
    Ok(Remote::ClientSecret {
        url: entra_token_url(env, tenant)?,
        client_id: client_id.clone(),
        secret: secret.clone(),
        scope,
    })
}

fn workload_identity(env: &AzureEnv, scope: String) -> Result<Remote, CredentialError> {
    let (Some(tenant), Some(client_id), Some(token_file)) =
        (&env.tenant_id, &env.client_id, &env.federated_token_file)
    else {
        return Err(missing(
            "workload-identity",
            &[
                ("AZURE_TENANT_ID", env.tenant_id.is_none()),
                ("AZURE_CLIENT_ID", env.client_id.is_none()),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    env.federated_token_file.is_none(),
                ),
            ],
        ));
    };
    Ok(Remote::WorkloadIdentity {
        url: entra_token_url(env, tenant)?,
        client_id: client_id.clone(),
        token_file: token_file.clone(),
        scope,
    })
}

/// App Service's endpoint when both of its variables are set (that is how the SDKs detect
/// it), IMDS otherwise. `AZURE_CLIENT_ID` picks a user-assigned identity in either.
fn managed_identity(
    arm: &ArmConfig,
    env: &AzureEnv,
    resource: &str,
) -> Result<Remote, CredentialError> {
    let client_id = env.client_id.as_deref();
    match (&env.identity_endpoint, &env.identity_header) {
        (Some(endpoint), Some(header)) => Ok(Remote::AppService {
            url: with_query(
                http_url("IDENTITY_ENDPOINT", endpoint)?,
                APP_SERVICE_API_VERSION,
                resource,
                client_id,
            ),
            header: identity_header(header)?,
        }),
        _ => {
            let path = ["metadata", "identity", "oauth2", "token"];
            let base = with_path("JITGATE_IMDS_ENDPOINT", arm.imds_endpoint.clone(), &path)?;
            Ok(Remote::Imds {
                url: with_query(base, IMDS_API_VERSION, resource, client_id),
            })
        }
    }
}

/// The query both managed identity endpoints take.
fn with_query(mut url: Url, api_version: &str, resource: &str, client_id: Option<&str>) -> Url {
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("api-version", api_version);
        query.append_pair("resource", resource);
        if let Some(client_id) = client_id {
            query.append_pair("client_id", client_id);
        }
    }
    url
}

/// Checked once here so that a bad value fails at start-up, and marked sensitive so that
/// the HTTP stack never prints it.
fn identity_header(header: &SecretString) -> Result<HeaderValue, CredentialError> {
    let mut value = HeaderValue::from_str(header.expose_secret()).map_err(|_| {
        CredentialError::Misconfigured("IDENTITY_HEADER is not a valid HTTP header value".into())
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// `{authority}/{tenant}/oauth2/v2.0/token`. The tenant becomes a path segment, so it is held
/// to the characters of a tenant id or domain name.
fn entra_token_url(env: &AzureEnv, tenant: &str) -> Result<Url, CredentialError> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '.';
    if tenant.is_empty() || !tenant.chars().all(valid) {
        return Err(CredentialError::Misconfigured(format!(
            "AZURE_TENANT_ID {tenant:?} is not a tenant id or domain \
             (letters, digits, '-' and '.' only)"
        )));
    }
    let host = env
        .authority_host
        .as_deref()
        .unwrap_or(DEFAULT_AUTHORITY_HOST);
    // The SDKs accept a bare host name here and mean https.
    let host = if host.contains("://") {
        host.to_string()
    } else {
        format!("https://{host}")
    };
    with_path(
        "AZURE_AUTHORITY_HOST",
        http_url("AZURE_AUTHORITY_HOST", &host)?,
        &[tenant, "oauth2", "v2.0", "token"],
    )
}

fn http_url(var: &str, value: &str) -> Result<Url, CredentialError> {
    match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        _ => Err(CredentialError::Misconfigured(format!(
            "{var} {value:?} is not an http:// or https:// URL"
        ))),
    }
}

/// `base` with `segments` appended to its path, whether or not it ends in a slash.
fn with_path(var: &str, mut base: Url, segments: &[&str]) -> Result<Url, CredentialError> {
    base.path_segments_mut()
        .map_err(|()| CredentialError::Misconfigured(format!("{var} cannot have a path")))?
        .pop_if_empty()
        .extend(segments);
    Ok(base)
}

/// One line naming every variable marked missing.
fn missing(kind: &str, vars: &[(&str, bool)]) -> CredentialError {
    let names: Vec<&str> = vars
        .iter()
        .filter(|(_, absent)| *absent)
        .map(|(name, _)| *name)
        .collect();
    let verb = if names.len() == 1 { "is" } else { "are" };
    CredentialError::Misconfigured(format!(
        "the {kind} ARM credential needs {}, which {verb} not set",
        names.join(", ")
    ))
}

impl Remote {
    async fn fetch(&self, http: &reqwest::Client) -> Result<Issued, CredentialError> {
        match self {
            Remote::ClientSecret {
                url,
                client_id,
                secret,
                scope,
            } => {
                let secret = secret.expose_secret();
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret),
                    ("scope", scope),
                ];
                exchange(http.post(url.clone()).form(&form), &[secret]).await
            }
            Remote::WorkloadIdentity {
                url,
                client_id,
                token_file,
                scope,
            } => {
                let assertion = read_assertion(token_file).await?;
                let assertion = assertion.expose_secret();
                let form = [
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("scope", scope),
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", assertion),
                ];
                exchange(http.post(url.clone()).form(&form), &[assertion]).await
            }
            Remote::AppService { url, header } => {
                let request = http.get(url.clone()).header("X-IDENTITY-HEADER", header);
                let header = header.to_str().unwrap_or_default();
                exchange(request, &[header]).await
            }
            Remote::Imds { url } => {
                exchange(http.get(url.clone()).header("Metadata", "true"), &[]).await
            }
        }
    }
}

async fn read_assertion(path: &Path) -> Result<SecretString, CredentialError> {
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        CredentialError::Misconfigured(format!(
            "AZURE_FEDERATED_TOKEN_FILE {}: {e}",
            path.display()
        ))
    })?;
    let assertion = text.trim();
    if assertion.is_empty() {
        return Err(CredentialError::Misconfigured(format!(
            "AZURE_FEDERATED_TOKEN_FILE {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(assertion))
}

/// Sends a token request and reads the answer. `secrets` are what the request carried,
/// scrubbed from any error text in case the endpoint echoes them.
async fn exchange(request: RequestBuilder, secrets: &[&str]) -> Result<Issued, CredentialError> {
    let unreachable = |e: reqwest::Error| CredentialError::Unreachable(describe(&e));
    let response = request.send().await.map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        return Err(endpoint_error(status, &body, secrets));
    }
    parse_token(&body, Utc::now())
}

/// reqwest's own text plus its causes ("connection refused", "timed out"), which it leaves
/// out. The URL it names carries no secret: those travel in bodies and headers.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Reads the OAuth `error`/`error_description` pair (Entra, IMDS), or the `{code, message}`
/// or `message` shapes other Azure endpoints use. A body that is none of these is not quoted.
fn endpoint_error(status: StatusCode, body: &[u8], secrets: &[&str]) -> CredentialError {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = json["error"]
        .as_str()
        .or(json["error"]["code"].as_str())
        .or(status.canonical_reason())
        .unwrap_or_default();
    let description = json["error_description"]
        .as_str()
        .or(json["error"]["message"].as_str())
        .or(json["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("no error description in a {}-byte body", body.len()));
    CredentialError::TokenEndpoint {
        status: status.as_u16(),
        error: tidy(error, secrets),
        description: tidy(&description, secrets),
    }
}

/// Endpoint text made fit for one log line: secrets replaced, whitespace (Entra's
/// descriptions hold `\r\n`) collapsed, length capped.
fn tidy(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret, "[REDACTED]");
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    words.join(" ").chars().take(MAX_ERROR_TEXT).collect()
}

/// The fields of a token response jitgate reads. No Debug: it holds the token.
#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Value,
    #[serde(default)]
    expires_on: Value,
}

fn parse_token(body: &[u8], now: DateTime<Utc>) -> Result<Issued, CredentialError> {
    // Only the error's kind and position are reported: serde's text can quote the body.
    let parsed: TokenBody = serde_json::from_slice(body).map_err(|e| {
        CredentialError::BadResponse(format!(
            "not a JSON token response ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let token = parsed
        .access_token
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| CredentialError::BadResponse("no access_token".into()))?;
    let expires_at = expiry(&parsed.expires_on, &parsed.expires_in, now).ok_or_else(|| {
        CredentialError::BadResponse("neither expires_on nor expires_in is a number".into())
    })?;
    Ok(Issued { token, expires_at })
}

/// `expires_on` (epoch seconds) is preferred: it does not depend on how long the answer took.
/// `expires_in` (seconds from now) is the fallback, also when `expires_on` is in a format
/// other than epoch seconds (old App Service api-versions send a date string).
fn expiry(expires_on: &Value, expires_in: &Value, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let absolute = seconds(expires_on).and_then(|s| DateTime::from_timestamp(s, 0));
    absolute.or_else(|| {
        let relative = TimeDelta::try_seconds(seconds(expires_in)?)?;
        now.checked_add_signed(relative)
    })
}

/// A count of seconds sent as a JSON number or, as IMDS does, as a string.
fn seconds(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ArmMode;
    use serde_json::json;

    fn arm(kind: ArmCredentialKind) -> ArmConfig {
        ArmConfig {
            mode: ArmMode::Azure,
            endpoint: Url::parse("https://management.azure.com").unwrap(),
            credential: kind,
            static_token: None,
            imds_endpoint: Url::parse("http://169.254.169.254").unwrap(),
        }
    }

    fn full_env() -> AzureEnv {
        AzureEnv {
            tenant_id: Some("contoso.onmicrosoft.com".into()),
            client_id: Some("app-id".into()),
            client_secret: Some("s3cret-value".into()),
            federated_token_file: Some("/var/run/secrets/azure/tokens/azure-identity-token".into()),
            ..Default::default()
        }
    }

    fn misconfigured(kind: ArmCredentialKind, env: &AzureEnv) -> String {
        match ArmCredential::new(&arm(kind), env) {
            Err(CredentialError::Misconfigured(message)) => message,
            Err(other) => panic!("expected Misconfigured, got {other}"),
            Ok(c) => panic!("expected Misconfigured, got {c:?}"),
        }
    }

    fn at(epoch: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(epoch, 0).unwrap()
    }

    #[test]
    fn seconds_are_read_from_numbers_and_strings() {
        assert_eq!(seconds(&json!(3599)), Some(3599));
        assert_eq!(seconds(&json!("3599")), Some(3599));
        assert_eq!(seconds(&json!(" 1700000000 ")), Some(1_700_000_000));
        assert_eq!(seconds(&json!(3599.9)), Some(3599));
        assert_eq!(seconds(&json!("09/14/2017 00:00:00 PM +00:00")), None);
        assert_eq!(seconds(&json!(null)), None);
        assert_eq!(seconds(&json!([1])), None);
    }

    #[test]
    fn expires_on_is_preferred_and_expires_in_is_the_fallback() {
        let now = at(1_700_000_000);
        assert_eq!(
            expiry(&json!("1700000600"), &json!(86399), now),
            Some(at(1_700_000_600))
        );
        assert_eq!(
            expiry(&Value::Null, &json!("3599"), now),
            Some(at(1_700_003_599))
        );
        assert_eq!(
            expiry(&json!("09/14/2017 00:00:00 PM +00:00"), &json!(60), now),
            Some(at(1_700_000_060)),
            "an expires_on that is not epoch seconds falls back to expires_in"
        );
        assert_eq!(expiry(&Value::Null, &Value::Null, now), None);
        assert_eq!(
            expiry(&Value::Null, &json!(i64::MAX), now),
            None,
            "an absurd expires_in is refused, not wrapped"
        );
    }

    #[test]
    fn a_token_is_usable_until_five_minutes_before_expiry() {
        let now = at(1_700_000_000);
        let issued = |secs: i64| Issued {
            token: SecretString::from("t"),
            expires_at: at(1_700_000_000 + secs),
        };
        assert!(issued(3599).usable_at(now));
        assert!(issued(301).usable_at(now));
        assert!(!issued(300).usable_at(now));
        assert!(!issued(60).usable_at(now));
        assert!(!issued(-10).usable_at(now));
    }

    #[test]
    fn token_responses_are_parsed_and_bad_ones_do_not_quote_the_body() {
        let now = at(1_700_000_000);
        let body = br#"{"token_type":"Bearer","expires_in":3599,"access_token":"eyJ0"}"#;
        let issued = parse_token(body, now).unwrap();
        assert_eq!(issued.token.expose_secret(), "eyJ0");
        assert_eq!(issued.expires_at, at(1_700_003_599));

        let e = parse_token(br#""eyJ0-a-bare-string""#, now).unwrap_err();
        assert!(matches!(e, CredentialError::BadResponse(_)), "{e}");
        assert!(!format!("{e} {e:?}").contains("eyJ0"), "{e}");

        let e = parse_token(br#"{"access_token":"eyJ0"}"#, now).unwrap_err();
        assert!(e.to_string().contains("expires_in"), "{e}");
        assert!(!format!("{e} {e:?}").contains("eyJ0"), "{e}");

        let e = parse_token(br#"{"expires_in":5}"#, now).unwrap_err();
        assert!(e.to_string().contains("access_token"), "{e}");
    }

    #[test]
    fn endpoint_errors_carry_the_description_on_one_line_without_secrets() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided: s3cret.\r\nTrace ID: abc\r\nCorrelation ID: def"}"#;
        let e = endpoint_error(StatusCode::UNAUTHORIZED, body, &["s3cret"]);
        let CredentialError::TokenEndpoint {
            status,
            error,
            description,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!(*status, 401);
        assert_eq!(error, "invalid_client");
        assert_eq!(
            description,
            "AADSTS7000215: Invalid client secret provided: [REDACTED]. Trace ID: abc Correlation ID: def"
        );

        let e = endpoint_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":{"code":"BadRequest","message":"unknown resource"}}"#,
            &[],
        );
        assert_eq!(
            e.to_string(),
            "token endpoint answered HTTP 400: BadRequest: unknown resource"
        );

        let e = endpoint_error(StatusCode::BAD_GATEWAY, b"<html>proxy s3cret</html>", &[]);
        assert_eq!(
            e.to_string(),
            "token endpoint answered HTTP 502: Bad Gateway: no error description in a 25-byte body"
        );
    }

    #[test]
    fn each_kind_names_the_variables_it_misses() {
        let without = |f: fn(&mut AzureEnv)| {
            let mut env = full_env();
            f(&mut env);
            env
        };
        let cases = [
            (
                ArmCredentialKind::ClientSecret,
                without(|e| e.client_secret = None),
                "the client-secret ARM credential needs AZURE_CLIENT_SECRET, which is not set",
            ),
            (
                ArmCredentialKind::ClientSecret,
                AzureEnv::default(),
                "the client-secret ARM credential needs AZURE_TENANT_ID, AZURE_CLIENT_ID, \
                 AZURE_CLIENT_SECRET, which are not set",
            ),
            (
                ArmCredentialKind::WorkloadIdentity,
                without(|e| e.federated_token_file = None),
                "the workload-identity ARM credential needs AZURE_FEDERATED_TOKEN_FILE, \
                 which is not set",
            ),
            (
                ArmCredentialKind::WorkloadIdentity,
                without(|e| e.tenant_id = None),
                "the workload-identity ARM credential needs AZURE_TENANT_ID, which is not set",
            ),
            (
                ArmCredentialKind::Static,
                full_env(),
                "the static ARM credential needs JITGATE_ARM_STATIC_TOKEN, which is not set",
            ),
        ];
        for (kind, env, expected) in cases {
            assert_eq!(misconfigured(kind, &env), expected);
        }
    }

    #[test]
    fn unusable_values_are_refused_at_start_up() {
        let mut env = full_env();
        env.tenant_id = Some("../common".into());
        let message = misconfigured(ArmCredentialKind::ClientSecret, &env);
        assert!(message.starts_with("AZURE_TENANT_ID"), "{message}");

        let mut env = full_env();
        env.authority_host = Some("ftp://login.example".into());
        let message = misconfigured(ArmCredentialKind::ClientSecret, &env);
        assert!(message.starts_with("AZURE_AUTHORITY_HOST"), "{message}");

        let env = AzureEnv {
            identity_endpoint: Some("not a url".into()),
            identity_header: Some("h".into()),
            ..Default::default()
        };
        let message = misconfigured(ArmCredentialKind::ManagedIdentity, &env);
        assert!(message.starts_with("IDENTITY_ENDPOINT"), "{message}");

        let env = AzureEnv {
            identity_endpoint: Some("http://127.0.0.1:41000/msi/token".into()),
            identity_header: Some("bad\nheader".into()),
            ..Default::default()
        };
        let message = misconfigured(ArmCredentialKind::ManagedIdentity, &env);
        assert_eq!(message, "IDENTITY_HEADER is not a valid HTTP header value");
    }

    #[test]
    fn urls_scope_and_resource_follow_the_arm_endpoint() {
        let mut env = full_env();
        env.authority_host = Some("login.microsoftonline.us/".into());
        let mut config = arm(ArmCredentialKind::ClientSecret);
        config.endpoint = Url::parse("https://management.usgovcloudapi.net/").unwrap();
        let Source::Remote(Remote::ClientSecret { url, scope, .. }) =
            Source::from_config(&config, &env).unwrap()
        else {
            panic!("not client-secret")
        };
        assert_eq!(
            url.as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert_eq!(scope, "https://management.usgovcloudapi.net/.default");

        let mut config = arm(ArmCredentialKind::ManagedIdentity);
        config.imds_endpoint = Url::parse("http://169.254.169.254/").unwrap();
        let Source::Remote(Remote::Imds { url }) =
            Source::from_config(&config, &AzureEnv::default()).unwrap()
        else {
            panic!("not IMDS")
        };
        assert_eq!(
            url.as_str(),
            "http://169.254.169.254/metadata/identity/oauth2/token\
             ?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F"
        );
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let mut config = arm(ArmCredentialKind::Static);
        config.static_token = Some("static-token-value".into());
        let static_cred = ArmCredential::new(&config, &AzureEnv::default()).unwrap();
        let secret_cred =
            ArmCredential::new(&arm(ArmCredentialKind::ClientSecret), &full_env()).unwrap();
        let text = format!("{static_cred:?} {secret_cred:?} {:?}", full_env());
        assert!(!text.contains("static-token-value"), "{text}");
        assert!(!text.contains("s3cret-value"), "{text}");
        assert_eq!(static_cred.kind(), "static");
        assert_eq!(secret_cred.kind(), "client-secret");
    }

    #[tokio::test]
    async fn a_static_token_is_returned_as_given_without_a_fetch() {
        let mut config = arm(ArmCredentialKind::Static);
        config.static_token = Some("static-token-value".into());
        let credential = ArmCredential::new(&config, &AzureEnv::default()).unwrap();
        for _ in 0..2 {
            let token = credential.token().await.unwrap();
            assert_eq!(token.expose_secret(), "static-token-value");
        }
        assert_eq!(credential.fetches(), 0);
    }
}
