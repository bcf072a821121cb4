//! Slack: the `/jit` slash command and the Approve/Deny buttons.
//!
//! Slack wants an answer within 3 seconds; every command is one or two database reads and at
//! most one write (ARM work goes through the outbox), so it is answered at once.

use super::{bad_signature, caller_for, describe, disabled, execute, not_linked, Reply};
use crate::api::error::Problem;
use crate::api::{flow, AppState};
use crate::chatops::slack as blocks;
use crate::chatops::{command, signature, Command, Platform};
use crate::store::Idempotency;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The form Slack posts for a slash command (the fields jitgate reads; Slack sends more).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SlackCommandForm {
    /// The workspace.
    pub team_id: String,
    /// The member who typed the command.
    pub user_id: String,
    /// What follows the command: `request vm1 22 1h from 203.0.113.7 INC-1234 patch`.
    #[serde(default)]
    pub text: String,
    /// Unique to this invocation (a retry by Slack carries the same one).
    #[serde(default)]
    pub trigger_id: Option<String>,
}

/// The form Slack posts for a button click: `payload` holds the interaction as JSON
/// (`type: block_actions`, `user`, `team`, `actions[0].action_id` `jit_approve` or
/// `jit_deny` with the request id as `value`, `response_url`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct SlackInteractionForm {
    pub payload: String,
}

/// A reply to Slack (the shape of Slack's message payloads).
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SlackReply {
    /// `ephemeral` (only the caller sees it) or `in_channel`.
    pub response_type: Option<String>,
    /// For button clicks: whether the message with the buttons is replaced.
    pub replace_original: Option<bool>,
    pub text: String,
    /// Block Kit blocks; a pending request has Approve and Deny buttons whose `value` is its id.
    pub blocks: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: String,
    user: InteractionUser,
    #[serde(default)]
    team: Option<InteractionTeam>,
    #[serde(default)]
    actions: Vec<InteractionAction>,
    #[serde(default)]
    response_url: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InteractionUser {
    id: String,
    #[serde(default)]
    team_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InteractionTeam {
    id: String,
}

#[derive(Debug, Deserialize)]
struct InteractionAction {
    action_id: String,
    #[serde(default)]
    value: Option<String>,
}

/// Checks the signing secret is set and the request signed with it.
fn verify(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<(), Problem> {
    let Some(secret) = &state.config.chatops.slack_signing_secret else {
        return Err(disabled("Slack", "JITGATE_SLACK_SIGNING_SECRET"));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    signature::verify_slack(
        secret.expose_secret().as_bytes(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(|e| bad_signature("Slack", &e))
}

fn malformed(what: &str, e: impl std::fmt::Display) -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-request",
        "The request is malformed",
        format!("{what}: {e}"),
    )
    .into_response()
}

fn render(reply: Reply) -> Value {
    match reply {
        Reply::Text(text) => blocks::ephemeral(&text),
        Reply::Request { headline, request } => {
            blocks::request_message(&blocks::escape(&headline), &request)
        }
        Reply::Status(list) => blocks::status_message(&list),
    }
}

/// The `/jit` slash command.
///
/// Signed by Slack (`X-Slack-Signature`, `X-Slack-Request-Timestamp`); a bad or stale
/// signature is a 401 and nothing is done. Everything else, refusals included, is answered
/// 200 with a message for Slack to show: `ephemeral` for notes and errors, `in_channel` for
/// a pending request with its Approve and Deny buttons.
#[utoipa::path(
    post,
    path = "/v1/chatops/slack/commands",
    tag = "chatops",
    params(
        ("X-Slack-Request-Timestamp" = String, Header, description = "Unix seconds; refused if more than 5 minutes from now"),
        ("X-Slack-Signature" = String, Header, description = "`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`"),
    ),
    request_body(content = SlackCommandForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A message for Slack to show", body = SlackReply),
        (status = 400, description = "Not a slash command form", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, bad or stale signature: nothing was done", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Slack chatops is not configured (JITGATE_SLACK_SIGNING_SECRET unset)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("slackSignature" = []))
)]
pub(super) async fn slack_commands(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verify(&state, &headers, &body) {
        return refused.into_response();
    }
    let form: SlackCommandForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return malformed("slash command form", e),
    };
    let reply = command_reply(&state, &form).await;
    Json(render(reply)).into_response()
}

async fn command_reply(state: &AppState, form: &SlackCommandForm) -> Reply {
    let command = match command::parse(&form.text) {
        Ok(Command::Help) => return Reply::Text(command::USAGE.into()),
        Ok(c) => c,
        Err(why) => return Reply::Text(why),
    };
    let identity = match state
        .store
        .find_chat_identity(Platform::Slack, &form.team_id, &form.user_id)
        .await
    {
        Ok(Some(i)) => i.identity,
        Ok(None) => {
            return Reply::Text(not_linked(
                "Slack",
                &format!("{}/{}", form.team_id, form.user_id),
            ))
        }
        Err(e) => return Reply::Text(describe(e.into())),
    };
    let caller = match caller_for(state, &identity).await {
        Ok(c) => c,
        Err(e) => return Reply::Text(describe(e)),
    };
    let idempotency = form.trigger_id.as_ref().map(|t| Idempotency {
        key: format!("slack:{t}"),
        body_hash: super::body_hash(&[&form.team_id, &form.user_id, &form.text]),
    });
    execute(state, &caller, command, idempotency).await
}

/// The Approve and Deny buttons of a pending request.
///
/// Signed as the slash command is. The clicker must be mapped, and is then held to exactly
/// what `POST /v1/access-requests/{id}/approve` (or `/deny`) would allow them. The answer
/// (the message rewritten, or a refusal only the clicker sees) is the response body and is
/// also posted to Slack's `response_url`, as Slack reads it from there for button clicks.
#[utoipa::path(
    post,
    path = "/v1/chatops/slack/interactions",
    tag = "chatops",
    params(
        ("X-Slack-Request-Timestamp" = String, Header, description = "Unix seconds; refused if more than 5 minutes from now"),
        ("X-Slack-Signature" = String, Header, description = "`v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{raw body}`"),
    ),
    request_body(content = SlackInteractionForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The message rewritten after the decision, or a refusal for the clicker", body = SlackReply),
        (status = 400, description = "Not an interaction payload", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, bad or stale signature: nothing was done", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Slack chatops is not configured (JITGATE_SLACK_SIGNING_SECRET unset)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("slackSignature" = []))
)]
pub(super) async fn slack_interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = verify(&state, &headers, &body) {
        return refused.into_response();
    }
    let form: SlackInteractionForm = match serde_urlencoded::from_bytes(&body) {
        Ok(f) => f,
        Err(e) => return malformed("interaction form", e),
    };
    let interaction: Interaction = match serde_json::from_str(&form.payload) {
        Ok(i) => i,
        Err(e) => return malformed("interaction payload", e),
    };
    let reply = interaction_reply(&state, &interaction).await;
    if let Some(url) = interaction.response_url.as_deref() {
        post_to_response_url(url, &reply);
    }
    Json(reply).into_response()
}

async fn interaction_reply(state: &AppState, i: &Interaction) -> Value {
    let action = i
        .actions
        .iter()
        .find(|a| a.action_id == blocks::APPROVE_ACTION || a.action_id == blocks::DENY_ACTION);
    let (Some(action), "block_actions") = (action, i.kind.as_str()) else {
        return blocks::ephemeral_note("jitgate has nothing to do for this interaction.");
    };
    let Some(id) = action.value.as_deref().filter(|v| !v.is_empty()) else {
        return blocks::ephemeral_note("This button names no request.");
    };
    let Some(team) = i
        .team
        .as_ref()
        .map(|t| t.id.as_str())
        .or(i.user.team_id.as_deref())
    else {
        return blocks::ephemeral_note("This interaction names no Slack workspace.");
    };
    let identity = match state
        .store
        .find_chat_identity(Platform::Slack, team, &i.user.id)
        .await
    {
        Ok(Some(found)) => found.identity,
        Ok(None) => {
            return blocks::ephemeral_note(&not_linked("Slack", &format!("{team}/{}", i.user.id)))
        }
        Err(e) => return blocks::ephemeral_note(&describe(e.into())),
    };
    let caller = match caller_for(state, &identity).await {
        Ok(c) => c,
        Err(e) => return blocks::ephemeral_note(&describe(e)),
    };
    let name = &caller.principal.name;
    let (headline, outcome) = if action.action_id == blocks::APPROVE_ACTION {
        (
            format!("Approved by {name}"),
            flow::approve(state, id, &caller, None).await,
        )
    } else {
        (
            format!("Denied by {name}"),
            flow::deny(state, id, &caller, None).await,
        )
    };
    match outcome {
        Ok(request) => blocks::replace_with(&blocks::escape(&headline), &request),
        Err(e) => blocks::ephemeral_note(&describe(e)),
    }
}

/// Sends the answer to a button click where Slack reads it, in the background (Slack's
/// `response_url`, accepted only on hooks.slack.com so that a forged URL cannot make
/// jitgate call elsewhere; the payload's signature was checked already).
fn post_to_response_url(url: &str, reply: &Value) {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return;
    };
    if parsed.scheme() != "https" || parsed.host_str() != Some("hooks.slack.com") {
        tracing::warn!(
            url,
            "chatops: ignoring a Slack response_url outside hooks.slack.com"
        );
        return;
    }
    let reply = reply.clone();
    tokio::spawn(async move {
        // Bounded on every side: a slow or silent response_url cannot hold this task.
        let client = match reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(5))
            // The host was checked; a redirect would take the reply somewhere unchecked.
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(client) => client,
            Err(e) => {
                tracing::warn!(error = %e, "no HTTP client for the Slack response_url");
                return;
            }
        };
        let sent = client.post(parsed).json(&reply).send().await;
        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
            // Without the URL: a response_url is a bearer capability for the conversation.
            tracing::warn!(error = %e.without_url(), "chatops: could not post to Slack's response_url");
        }
    });
}
