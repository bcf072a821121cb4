//! The ARM REST client: authentication, `api-version`, request ids, retries and long-running
//! operations, as Azure documents them, for every call jitgate makes.
//!
//! Retried: 429 (after `Retry-After`), 409 `AnotherOperationInProgress`, 5xx and transport
//! errors or timeouts (exponential backoff with jitter), up to a bounded number of attempts.
//! Not retried: 412 (the caller re-reads and re-merges) and every other 4xx, which carry ARM's
//! error code and message to whoever asked.

use super::credential::ArmCredential;
use super::model::{AsyncOperation, ErrorResponse, ListPage};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The api-versions jitgate speaks.
pub mod api_version {
    pub const COMPUTE: &str = "2024-07-01";
    pub const NETWORK: &str = "2024-05-01";
}

/// An ARM failure as ARM states it: the HTTP status (none for a transport failure), the
/// error code (`AnotherOperationInProgress`, `PreconditionFailed`...) and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ArmError {
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl ArmError {
    fn new(status: Option<u16>, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.into(),
            message: message.into(),
        }
    }

    pub fn is_precondition_failed(&self) -> bool {
        self.status == Some(412)
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// Worth another try later: throttling, a busy resource, a server error or no answer.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(429) | Some(500..=599) => true,
            Some(409) => self.code == "AnotherOperationInProgress",
            _ => false,
        }
    }
}

/// How hard to try.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured as given; longer ones are cut to this.
    pub max_retry_after: Duration,
    /// Poll interval for an operation whose answer names none.
    pub default_poll: Duration,
    /// The shortest wait between polls, whatever `Retry-After` says.
    pub min_poll: Duration,
    /// How long a long-running operation may take before we give up on it.
    pub lro_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
            default_poll: Duration::from_secs(2),
            min_poll: Duration::from_millis(20),
            lro_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Fast retries for tests and the in-process simulator.
    pub fn quick() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            max_retry_after: Duration::from_millis(200),
            default_poll: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            lro_timeout: Duration::from_secs(30),
            ..RetryPolicy::default()
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        // Full jitter in [50%, 100%]: many clients retrying after one outage spread out.
        exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0))
    }
}

/// A response that succeeded (2xx), kept whole for the caller.
pub struct ArmResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl ArmResponse {
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ArmError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::new(
                Some(self.status.as_u16()),
                "UnexpectedResponse",
                format!("ARM answered with unexpected JSON: {e}"),
            )
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct ArmClient {
    http: reqwest::Client,
    endpoint: Url,
    credential: ArmCredential,
    retry: RetryPolicy,
}

impl ArmClient {
    pub fn new(
        endpoint: Url,
        credential: ArmCredential,
        retry: RetryPolicy,
    ) -> anyhow::Result<ArmClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10).min(retry.request_timeout))
            .timeout(retry.request_timeout)
            .user_agent(concat!("jitgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ArmClient {
            http,
            endpoint,
            credential,
            retry,
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// The URL of a resource id or collection path at `api_version`.
    pub fn url(&self, path: &str, api_version: &str) -> Result<Url, ArmError> {
        let mut url = self
            .endpoint
            .join(path.trim_start_matches('/'))
            .map_err(|e| ArmError::new(None, "InvalidResourceId", format!("{path}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        Ok(url)
    }

    /// GETs one resource.
    pub async fn get<T: DeserializeOwned>(
        &self,
        id: &str,
        api_version: &str,
    ) -> Result<T, ArmError> {
        self.execute(Method::GET, self.url(id, api_version)?, None, None)
            .await?
            .json()
    }

    /// GETs every page of a collection, following `nextLink` as given.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<T>, ArmError> {
        let mut items = Vec::new();
        let mut next = Some(self.url(path, api_version)?);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(ArmError::new(
                    None,
                    "TooManyPages",
                    format!("{path}: more than 10000 pages; refusing to follow nextLink further"),
                ));
            }
            let page: ListPage<T> = self.execute(Method::GET, url, None, None).await?.json()?;
            items.extend(page.value);
            next = page
                .next_link
                .map(|l| {
                    Url::parse(&l)
                        .map_err(|e| ArmError::new(None, "InvalidNextLink", format!("{l}: {e}")))
                })
                .transpose()?;
        }
        Ok(items)
    }

    /// PUTs a resource and waits for its long-running operation to end; returns the resource
    /// as it stands afterwards. `if_match` makes the write conditional on the ETag read.
    pub async fn put_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        id: &str,
        api_version: &str,
        body: &B,
        if_match: Option<&str>,
    ) -> Result<T, ArmError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ArmError::new(None, "InvalidRequest", e.to_string()))?;
        let response = self
            .execute(
                Method::PUT,
                self.url(id, api_version)?,
                Some(body),
                if_match,
            )
            .await?;
        self.wait(id, api_version, response).await
    }

    /// Follows a write's long-running operation: `Azure-AsyncOperation` (poll until a terminal
    /// status, then GET the resource), else `Location` (poll until it stops answering 202),
    /// else the resource itself is the result.
    async fn wait<T: DeserializeOwned>(
        &self,
        id: &str,
        api_version: &str,
        first: ArmResponse,
    ) -> Result<T, ArmError> {
        let started = Instant::now();
        let mut delay = self.poll_delay(&first);
        if let Some(status_url) = first.header("azure-asyncoperation").map(str::to_string) {
            let url = Url::parse(&status_url)
                .map_err(|e| ArmError::new(None, "InvalidAsyncOperation", e.to_string()))?;
            loop {
                self.sleep_within(started, delay, id).await?;
                let poll = self.execute(Method::GET, url.clone(), None, None).await?;
                let op: AsyncOperation = poll.json()?;
                match op.status.as_str() {
                    "Succeeded" => return self.get(id, api_version).await,
                    "Failed" | "Canceled" => {
                        let (code, message) =
                            op.error.map(|e| (e.code, e.message)).unwrap_or_else(|| {
                                (
                                    op.status.clone(),
                                    format!("the operation on {id} ended {}", op.status),
                                )
                            });
                        return Err(ArmError::new(Some(first.status.as_u16()), &code, message));
                    }
                    _ => delay = self.poll_delay(&poll),
                }
            }
        }
        if first.status == StatusCode::ACCEPTED {
            if let Some(location) = first.header("location").map(str::to_string) {
                let url = Url::parse(&location)
                    .map_err(|e| ArmError::new(None, "InvalidLocation", e.to_string()))?;
                loop {
                    self.sleep_within(started, delay, id).await?;
                    let poll = self.execute(Method::GET, url.clone(), None, None).await?;
                    if poll.status != StatusCode::ACCEPTED {
                        return self.get(id, api_version).await;
                    }
                    delay = self.poll_delay(&poll);
                }
            }
        }
        first.json()
    }

    async fn sleep_within(
        &self,
        started: Instant,
        delay: Duration,
        id: &str,
    ) -> Result<(), ArmError> {
        if started.elapsed() + delay > self.retry.lro_timeout {
            return Err(ArmError::new(
                None,
                "OperationTimedOut",
                format!(
                    "the operation on {id} did not finish within {:?}",
                    self.retry.lro_timeout
                ),
            ));
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn poll_delay(&self, response: &ArmResponse) -> Duration {
        retry_after(&response.headers)
            .map(|d| d.min(self.retry.max_retry_after))
            .unwrap_or(self.retry.default_poll)
            .max(self.retry.min_poll)
    }

    /// One request with retries; a 2xx answer, or the error that ended the attempts.
    pub async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        if_match: Option<&str>,
    ) -> Result<ArmResponse, ArmError> {
        let mut attempt = 0;
        loop {
            let (result, wait) = self.attempt(&method, &url, body.as_deref(), if_match).await;
            match result {
                Ok(response) => return Ok(response),
                Err(e) if e.is_transient() && attempt + 1 < self.retry.max_attempts => {
                    let delay = wait
                        .map(|d| d.min(self.retry.max_retry_after))
                        .unwrap_or_else(|| self.retry.backoff(attempt));
                    tracing::debug!(%method, url = %redact(&url), code = %e.code, attempt, ?delay, "ARM call failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One try: the answer, and the `Retry-After` it carried.
    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        if_match: Option<&str>,
    ) -> (Result<ArmResponse, ArmError>, Option<Duration>) {
        let token = match self.credential.token().await {
            Ok(t) => t,
            Err(e) => {
                return (
                    Err(ArmError::new(None, "CredentialUnavailable", e.to_string())),
                    None,
                )
            }
        };
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut request = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(token.expose_secret())
            .header("x-ms-client-request-id", &client_request_id)
            .header("x-ms-return-client-request-id", "true");
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let code = if e.is_timeout() {
                    "RequestTimeout"
                } else {
                    "ConnectionFailed"
                };
                return (
                    Err(ArmError::new(
                        None,
                        code,
                        format!("{method} {}: {e}", redact(url)),
                    )),
                    None,
                );
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let wait = retry_after(&headers);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return (
                    Err(ArmError::new(None, "ConnectionFailed", e.to_string())),
                    None,
                )
            }
        };
        tracing::debug!(%method, url = %redact(url), status = status.as_u16(), %client_request_id, "ARM call");
        if status.is_success() {
            return (
                Ok(ArmResponse {
                    status,
                    headers,
                    body,
                }),
                None,
            );
        }
        let (code, message) = match serde_json::from_slice::<ErrorResponse>(&body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => (
                status
                    .canonical_reason()
                    .unwrap_or("Error")
                    .replace(' ', ""),
                String::from_utf8_lossy(&body).chars().take(500).collect(),
            ),
        };
        (
            Err(ArmError::new(Some(status.as_u16()), &code, message)),
            wait,
        )
    }
}

/// `Retry-After` in seconds (ARM sends seconds; an HTTP date is taken as "soon").
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value: &HeaderValue = headers.get("retry-after")?;
    let text = value.to_str().ok()?.trim();
    text.parse::<u64>()
        .ok()
        .map(Duration::from_secs)
        .or(Some(Duration::from_secs(1)))
}

/// A URL for logs: no query string (it could carry a SAS or skip token).
fn redact(url: &Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}
