//! Microsoft Teams: an outgoing webhook (`@jitgate request vm1 22 1h from ...`).
//!
//! Teams signs the body (`Authorization: HMAC ...`) but sends no timestamp, so a captured
//! message could be replayed for as long as the secret stands. jitgate remembers the ids of
//! the messages it handled (for an hour, in the database, so every replica sees them) and
//! refuses a message id it has seen; Teams answers must come within 5 seconds.

use super::{bad_signature, caller_for, describe, disabled, execute, not_linked, Reply};
use crate::api::error::Problem;
use crate::api::AppState;
use crate::chatops::teams as messages;
use crate::chatops::{command, signature, Command, Platform};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// How long handled message ids are remembered.
const REMEMBER_FOR: chrono::Duration = chrono::Duration::hours(1);

/// The activity Teams posts (the fields jitgate reads; Teams sends more).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamsActivity {
    /// `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The message's id, unique per message: a second message with the same id is a replay.
    pub id: Option<String>,
    /// The message as HTML, with the webhook's `<at>` mention.
    #[serde(default)]
    pub text: String,
    pub from: TeamsFrom,
    #[serde(default)]
    pub channel_data: Option<TeamsChannelData>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TeamsFrom {
    /// The sender's Entra object id.
    pub aad_object_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TeamsChannelData {
    pub tenant: Option<TeamsTenant>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TeamsTenant {
    /// The Entra tenant id.
    pub id: String,
}

/// A Teams reply.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)]
pub struct TeamsReply {
    /// `message`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: String,
}

fn render(reply: Reply) -> Value {
    match reply {
        Reply::Text(text) => messages::message(&text),
        Reply::Request { headline, request } => {
            messages::request_message(&messages::escape(&headline), &request)
        }
        Reply::Status(list) => messages::status_message(&list),
    }
}

/// A message to jitgate's Teams outgoing webhook.
///
/// Signed by Teams (`Authorization: HMAC ...`); a bad signature is a 401 and nothing is done.
/// The sender (`from.aadObjectId` in the tenant `channelData.tenant.id`) must be mapped. The
/// same commands as Slack's `/jit`; approvers decide with `approve <id>` / `deny <id>`.
#[utoipa::path(
    post,
    path = "/v1/chatops/teams/messages",
    tag = "chatops",
    request_body = TeamsActivity,
    responses(
        (status = 200, description = "The reply for Teams to show", body = TeamsReply),
        (status = 400, description = "Not a Teams message activity", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or bad HMAC: nothing was done", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Teams chatops is not configured (JITGATE_TEAMS_OUTGOING_WEBHOOK_SECRET unset)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("teamsHmac" = []))
)]
pub(super) async fn teams_messages(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = &state.config.chatops.teams_key else {
        return disabled("Teams", "JITGATE_TEAMS_OUTGOING_WEBHOOK_SECRET").into_response();
    };
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = signature::verify_teams(key.expose_secret(), authorization, &body) {
        return bad_signature("Teams", &e).into_response();
    }
    let activity: TeamsActivity = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "The request is malformed",
                format!("Teams activity: {e}"),
            )
            .into_response()
        }
    };
    Json(render(reply(&state, activity).await)).into_response()
}

async fn reply(state: &AppState, activity: TeamsActivity) -> Reply {
    if activity.kind != "message" {
        return Reply::Text("jitgate only answers messages.".into());
    }
    let Some(message_id) = activity.id.as_deref().filter(|id| !id.is_empty()) else {
        return Reply::Text(
            "This message has no id, so it cannot be told from a replay: nothing was done.".into(),
        );
    };
    let now = chrono::Utc::now();
    match state
        .store
        .remember_chat_message(&format!("teams:{message_id}"), now, now - REMEMBER_FOR)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(message_id, "chatops: Teams message replayed; ignored");
            return Reply::Text(
                "This message was handled already (a replay?): nothing was done.".into(),
            );
        }
        Err(e) => return Reply::Text(describe(e.into())),
    }
    let command = match command::parse(&command::teams_text(&activity.text)) {
        Ok(Command::Help) => return Reply::Text(command::USAGE.into()),
        Ok(c) => c,
        Err(why) => return Reply::Text(why),
    };
    let (Some(tenant), Some(oid)) = (
        activity
            .channel_data
            .as_ref()
            .and_then(|c| c.tenant.as_ref())
            .map(|t| crate::rbac::assignment::normalize_principal_id(&t.id)),
        activity
            .from
            .aad_object_id
            .as_deref()
            .map(crate::rbac::assignment::normalize_principal_id),
    ) else {
        return Reply::Text(
            "This message carries no Entra tenant or user id, so jitgate cannot tell who sent it."
                .into(),
        );
    };
    let identity = match state
        .store
        .find_chat_identity(Platform::Teams, &tenant, &oid)
        .await
    {
        Ok(Some(i)) => i.identity,
        Ok(None) => {
            let who = activity.from.name.as_deref().unwrap_or("unnamed");
            return Reply::Text(not_linked("Teams", &format!("{who}, {oid}")));
        }
        Err(e) => return Reply::Text(describe(e.into())),
    };
    let caller = match caller_for(state, &identity).await {
        Ok(c) => c,
        Err(e) => return Reply::Text(describe(e)),
    };
    execute(state, &caller, command, None).await
}
