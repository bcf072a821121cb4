//! Who a chat account is: an admin-kept mapping from a Slack or Teams user to the Entra user
//! whose stored role assignments decide what they may do through chat.

use crate::domain::{FieldErrors, Principal};
use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Slack,
    Teams,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Slack => "slack",
            Platform::Teams => "teams",
        }
    }

    pub fn parse(s: &str) -> Result<Platform, String> {
        match s {
            "slack" => Ok(Platform::Slack),
            "teams" => Ok(Platform::Teams),
            other => Err(format!(
                "unknown platform {other:?}: expected slack or teams"
            )),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A chat account and the Entra user it acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatIdentity {
    pub id: String,
    pub platform: Platform,
    /// Slack: the workspace's `team_id` (`T0123ABCD`). Teams: the Entra tenant id
    /// (`channelData.tenant.id`).
    pub workspace_id: String,
    /// Slack: the member's `user_id` (`U0456EFGH`). Teams: the sender's `from.aadObjectId`.
    pub chat_user_id: String,
    /// The Entra user (object id and display name or UPN).
    pub user: Principal,
}

/// The body of `PUT /v1/chatops/identities/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatIdentityDraft {
    /// `slack` or `teams`.
    pub platform: Option<String>,
    /// Slack: the workspace's team id (`T0123ABCD`). Teams: the Entra tenant id.
    pub workspace_id: Option<String>,
    /// Slack: the member id (`U0456EFGH`). Teams: the user's Entra object id (`from.aadObjectId`).
    pub chat_user_id: Option<String>,
    /// The Entra object id of the user this account acts as.
    pub user_id: Option<String>,
    /// The user's name as requests record it (a UPN is customary).
    pub user_name: Option<String>,
}

const MAX_FIELD_CHARS: usize = 200;

fn required(errors: &mut FieldErrors, field: &str, value: Option<String>) -> Option<String> {
    match value.map(|v| v.trim().to_string()) {
        None => {
            errors.push(field, "is required");
            None
        }
        Some(v) if v.is_empty() => {
            errors.push(field, "must not be empty");
            None
        }
        Some(v) if v.chars().count() > MAX_FIELD_CHARS || v.chars().any(char::is_control) => {
            errors.push(
                field,
                format!("must be at most {MAX_FIELD_CHARS} printable characters"),
            );
            None
        }
        Some(v) => Some(v),
    }
}

impl ChatIdentity {
    pub fn parse(id: &str, draft: ChatIdentityDraft) -> Result<ChatIdentity, FieldErrors> {
        let mut errors = FieldErrors::new();
        if let Err(e) = crate::rbac::check_assignment_id(id) {
            errors.push("id", e.replace("role assignment id", "identity id"));
        }
        let platform = required(&mut errors, "platform", draft.platform)
            .and_then(|p| errors.take("platform", Platform::parse(&p)));
        let workspace_id = required(&mut errors, "workspaceId", draft.workspace_id);
        let chat_user_id = required(&mut errors, "chatUserId", draft.chat_user_id);
        let user_id = required(&mut errors, "userId", draft.user_id)
            .map(|u| crate::rbac::assignment::normalize_principal_id(&u));
        let user_name = required(&mut errors, "userName", draft.user_name);
        // Teams gives the Entra tenant and object id: GUIDs, compared in their canonical form.
        let canonical = |s: String| match platform {
            Some(Platform::Teams) => crate::rbac::assignment::normalize_principal_id(&s),
            _ => s,
        };
        let workspace_id = workspace_id.map(canonical);
        let chat_user_id = chat_user_id.map(canonical);
        errors.finish(|| ChatIdentity {
            id: id.to_string(),
            platform: platform.unwrap_or(Platform::Slack),
            workspace_id: workspace_id.unwrap_or_default(),
            chat_user_id: chat_user_id.unwrap_or_default(),
            user: Principal {
                id: user_id.unwrap_or_default(),
                name: user_name.unwrap_or_default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_checked_field_by_field() {
        let e = ChatIdentity::parse("bad id!", ChatIdentityDraft::default()).unwrap_err();
        let fields: Vec<_> = e.0.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "id",
                "platform",
                "workspaceId",
                "chatUserId",
                "userId",
                "userName"
            ]
        );
        let ok = ChatIdentity::parse(
            "alice-teams",
            ChatIdentityDraft {
                platform: Some("teams".into()),
                workspace_id: Some("AAAAAAAA-0000-0000-0000-000000000001".into()),
                chat_user_id: Some(" BBBBBBBB-0000-0000-0000-000000000002 ".into()),
                user_id: Some("BBBBBBBB-0000-0000-0000-000000000002".into()),
                user_name: Some("alice@example.com".into()),
            },
        )
        .unwrap();
        assert_eq!(ok.workspace_id, "aaaaaaaa-0000-0000-0000-000000000001");
        assert_eq!(ok.chat_user_id, "bbbbbbbb-0000-0000-0000-000000000002");
        assert_eq!(ok.user.id, "bbbbbbbb-0000-0000-0000-000000000002");
    }
}
