//! `/v1/chatops/...`: Slack and Teams front doors to the access-request flow.
//!
//! These endpoints authenticate the platform by its request signature, then the person by
//! an admin-kept mapping from their chat account to an Entra user
//! ([`identities`]). The user is then built as for a bot's `onBehalfOf`
//! ([`rbac::absent_user`]: their object id and the roles of the stored assignments made to
//! them directly) and every command goes through [`super::flow`], the same functions the
//! REST handlers call: chat can never grant what the API would not.

mod identities;
mod slack;
mod teams;

use super::error::{ApiError, Problem};
use super::flow;
use super::AppState;
use crate::auth::Caller;
use crate::chatops::command::{RequestCommand, USAGE};
use crate::chatops::{ChatIdentity, Command};
use crate::domain::policy::AllowedSources;
use crate::domain::request::{
    AccessRequest, PortRequestDraft, RequestDraft, RequestStatus, VmDraft,
};
use crate::domain::{Port, Scope, VmId};
use crate::rbac::{self, Action};
use crate::store::{Idempotency, PageRequest, RequestCreated, RequestFilter};
use axum::http::StatusCode;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(slack::slack_commands))
        .routes(routes!(slack::slack_interactions))
        .routes(routes!(teams::teams_messages))
        .routes(routes!(identities::list_identities))
        .routes(routes!(
            identities::get_identity,
            identities::put_identity,
            identities::delete_identity
        ))
}

/// The security schemes of the chat platforms' endpoints, which carry no bearer token.
pub struct ChatSignatures;

impl utoipa::Modify for ChatSignatures {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "slackSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Slack-Signature",
                "Slack's request signature: `v0=` and the hex HMAC-SHA256 of \
                 `v0:{X-Slack-Request-Timestamp}:{raw body}` under the app's signing secret \
                 (JITGATE_SLACK_SIGNING_SECRET). The timestamp header is required too, and \
                 must be within 5 minutes of now.",
            ))),
        );
        components.add_security_scheme(
            "teamsHmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`HMAC <base64(HMAC-SHA256(key, raw body))>`, where the key is the outgoing \
                 webhook's security token, base64-decoded (JITGATE_TEAMS_OUTGOING_WEBHOOK_SECRET).",
            ))),
        );
    }
}

/// 404 for a platform that is not configured.
fn disabled(platform: &str, setting: &str) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "chatops-disabled",
        "This chat integration is not configured",
        format!("{platform} chatops is off: set {setting} to enable it"),
    )
}

/// 401 for a request whose signature does not check out; nothing is done.
fn bad_signature(platform: &str, why: &crate::chatops::signature::SignatureError) -> Problem {
    tracing::warn!(platform, reason = %why, "chatops request refused: bad signature");
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-signature",
        "The request's signature is not valid",
        format!("{platform} request refused: {why}; nothing was done"),
    )
}

/// What a command comes to, before each platform renders it.
pub(super) enum Reply {
    /// A note for the person who typed the command.
    Text(String),
    /// A request after a change, with a headline saying what happened.
    Request {
        headline: String,
        request: Box<AccessRequest>,
    },
    /// The caller's latest requests.
    Status(Vec<AccessRequest>),
}

fn not_linked(platform: &str, account: &str) -> String {
    format!(
        "Your {platform} account ({account}) is not linked to a jitgate user, so jitgate cannot act for you. \
         Ask a jitgate admin to map it to your Entra ID user: PUT /v1/chatops/identities/{{id}}."
    )
}

/// The mapped user as a caller: their object id, their name as the mapping gives it, and the
/// roles of the stored assignments made to them directly.
async fn caller_for(state: &AppState, identity: &ChatIdentity) -> Result<Caller, ApiError> {
    let oid = identity.user.id.clone();
    let assignments = state
        .store
        .role_assignments_for(std::slice::from_ref(&oid))
        .await?;
    let mut caller = rbac::absent_user(&oid, assignments);
    caller.principal.name = identity.user.name.clone();
    Ok(caller)
}

/// An error of the flow in words for a chat message.
fn describe(e: ApiError) -> String {
    match e {
        ApiError::Validation(errors) => {
            let mut text = String::from("That request cannot be made:");
            for f in errors.0 {
                text.push_str(&format!("\n• {}: {}", f.field, f.message));
            }
            text
        }
        ApiError::Forbidden(why) => format!("Not allowed: {why}."),
        ApiError::NotFound(why)
        | ApiError::BadRequest(why)
        | ApiError::Conflict(why)
        | ApiError::Unprocessable(why) => why,
        ApiError::Unavailable(why) => {
            tracing::warn!(error = %why, "chatops: service unavailable");
            "jitgate cannot answer right now; try again in a moment.".into()
        }
        other => {
            tracing::error!(error = format!("{other:#}"), "chatops: unexpected error");
            "Something went wrong inside jitgate (it is logged); try again, or use the API.".into()
        }
    }
}

/// Runs a command as `caller`. `idempotency` (a platform's id of this invocation) makes a
/// platform's retry of the same request return the request made first.
pub(super) async fn execute(
    state: &AppState,
    caller: &Caller,
    command: Command,
    idempotency: Option<Idempotency>,
) -> Reply {
    let name = caller.principal.name.clone();
    let done = |headline: String, r: Result<AccessRequest, ApiError>| match r {
        Ok(request) => Reply::Request {
            headline,
            request: Box::new(request),
        },
        Err(e) => Reply::Text(describe(e)),
    };
    match command {
        Command::Help => Reply::Text(USAGE.into()),
        Command::Status => match status(state, caller).await {
            Ok(list) => Reply::Status(list),
            Err(e) => Reply::Text(describe(e)),
        },
        Command::Request(cmd) => match submit(state, caller, cmd, idempotency).await {
            Ok(reply) => reply,
            Err(e) => Reply::Text(describe(e)),
        },
        Command::Approve { id, comment } => done(
            format!("Approved by {name}"),
            flow::approve(state, &id, caller, comment).await,
        ),
        Command::Deny { id, reason } => done(
            format!("Denied by {name}"),
            flow::deny(state, &id, caller, reason).await,
        ),
        Command::Cancel { id } => done(
            format!("Cancelled by {name}"),
            flow::cancel(state, &id, caller).await,
        ),
        Command::Revoke { id, reason } => done(
            format!("Revoked by {name}"),
            flow::revoke(state, &id, caller, reason).await,
        ),
    }
}

async fn status(state: &AppState, caller: &Caller) -> Result<Vec<AccessRequest>, ApiError> {
    let me = caller.principal.id.clone();
    let filter = RequestFilter {
        involving: Some(me.clone()),
        visible_to: Some((me, vec![])),
        ..Default::default()
    };
    let page = PageRequest {
        limit: 10,
        after: None,
    };
    let page = state.store.list_requests(&filter, &page).await?;
    Ok(page.items.into_iter().map(|s| s.request).collect())
}

/// The VM a command names: an ARM id, `<resource group>/<name>`, or a name from the
/// inventory (case-insensitive). Several VMs of one name are narrowed to those the caller
/// has a role on; if that leaves more than one, the caller is asked to say which.
async fn resolve_vm(state: &AppState, caller: &Caller, text: &str) -> Result<VmId, ApiError> {
    if text.starts_with('/') {
        return VmId::parse(text)
            .map_err(|e| ApiError::BadRequest(format!("`{text}` is not a VM id: {e}")));
    }
    let (rg, name) = match text.split_once('/') {
        Some((rg, name)) => (Some(rg), name),
        None => (None, text),
    };
    let found: Vec<VmId> = state
        .store
        .find_vms_by_name(name, 50)
        .await?
        .into_iter()
        .map(|v| v.vm.vm)
        .filter(|id| rg.is_none_or(|rg| id.resource_group().eq_ignore_ascii_case(rg)))
        .collect();
    if found.len() == 1 {
        return Ok(found[0].clone());
    }
    if found.is_empty() {
        return Err(ApiError::NotFound(format!(
            "No VM named `{text}` is in jitgate's inventory (the VMs of its configured subscriptions). \
             Check the name, or give the VM's full ARM id."
        )));
    }
    let visible: Vec<&VmId> = found
        .iter()
        .filter(|id| rbac::authorize_vm(caller, Action::ReadPolicy, id).is_ok())
        .collect();
    match visible.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(ApiError::BadRequest(format!(
            "Several VMs are named `{name}`, and you have no role on any of them."
        ))),
        several => {
            let mut text = format!(
                "Several VMs are named `{name}`: say which, as `<resource group>/{name}` or by its ARM id:"
            );
            for id in several.iter().take(10) {
                text.push_str(&format!(
                    "\n• `{}/{}` (subscription {}): `{id}`",
                    id.resource_group(),
                    id.name(),
                    id.subscription()
                ));
            }
            Err(ApiError::BadRequest(text))
        }
    }
}

/// Where the port is opened from when the command names no source: the policy's single
/// allowed prefix, if it has exactly one; otherwise the user must say (`from ...`). `None`
/// leaves the decision to the flow (no policy, or a port it does not list).
fn implied_source(
    policy: Option<&crate::domain::Policy>,
    port: u16,
) -> Result<Option<String>, ApiError> {
    let rule = Port::try_from(i64::from(port))
        .ok()
        .and_then(|p| policy.and_then(|policy| policy.port(p)));
    let Some(rule) = rule else { return Ok(None) };
    match &rule.sources {
        AllowedSources::Within(prefixes) if prefixes.len() == 1 => {
            Ok(Some(prefixes[0].to_string()))
        }
        AllowedSources::Within(prefixes) => {
            let list: Vec<String> = prefixes.iter().map(|p| p.to_string()).collect();
            Err(ApiError::BadRequest(format!(
                "Say where you will connect from: add `from <address>` with an address or block inside one of {}.",
                list.join(", ")
            )))
        }
        AllowedSources::PerRequest => Err(ApiError::BadRequest(
            "Say where you will connect from: add `from <your public IP address>` \
             (chat cannot see your address), e.g. `request vm-web-1 22 1h from 203.0.113.7 INC-1234 patch`."
                .into(),
        )),
    }
}

async fn submit(
    state: &AppState,
    caller: &Caller,
    cmd: RequestCommand,
    idempotency: Option<Idempotency>,
) -> Result<Reply, ApiError> {
    let vm = resolve_vm(state, caller, &cmd.vm).await?;
    // Checked before the policy is read, so that its allowed sources are told only to those
    // who may ask (the flow checks again).
    rbac::authorize(caller, Action::SubmitRequest, &Scope::Vm(vm.clone()))?;
    let source = match cmd.source {
        Some(s) => Some(s),
        None => {
            let policy = state.store.get_policy(&vm).await?.map(|p| p.policy);
            implied_source(policy.as_ref(), cmd.port)?
        }
    };
    let draft = RequestDraft {
        virtual_machines: vec![VmDraft {
            id: vm.as_str().to_string(),
            ports: vec![PortRequestDraft {
                number: i64::from(cmd.port),
                duration: cmd.duration,
                allowed_source_address_prefix: source,
                ..Default::default()
            }],
        }],
        justification: cmd.justification,
        on_behalf_of: None,
    };
    let created = flow::submit(
        state,
        flow::Submission {
            submitted_by: caller,
            requestor: caller,
            on_behalf: false,
            draft,
            caller_address: None,
            idempotency: Ok(idempotency),
        },
    )
    .await?;
    let (replayed, request) = match created {
        RequestCreated::Created(s) => (false, s.request),
        RequestCreated::Replayed(s) => (true, s.request),
    };
    let who = &caller.principal.name;
    let headline = match (replayed, request.status) {
        (true, _) => "This request was made already:".to_string(),
        (false, RequestStatus::Pending) => format!(
            "{who} asks for access; it needs {} approval(s) from an approver other than them.",
            request.required_approvals
        ),
        (false, _) => format!("{who}'s request is approved; the port is being opened."),
    };
    Ok(Reply::Request {
        headline,
        request: Box::new(request),
    })
}

/// Hashes what identifies a command's content, for an idempotency key.
pub(super) fn body_hash(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}
