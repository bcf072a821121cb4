//! Slack replies: JSON bodies for slash commands and interactions (Block Kit).
//!
//! Text from users (justifications, names) is escaped as Slack asks (`&`, `<`, `>`), so that
//! nobody can slip `<!channel>` or a disguised link into a message jitgate posts.

use super::summary_lines;
use crate::domain::request::{AccessRequest, RequestStatus};
use serde_json::{json, Value};

/// The `action_id`s of the buttons on a pending request.
pub const APPROVE_ACTION: &str = "jit_approve";
pub const DENY_ACTION: &str = "jit_deny";

/// Escapes text for Slack's mrkdwn.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A reply only the person who typed the command sees.
pub fn ephemeral(text: &str) -> Value {
    json!({ "response_type": "ephemeral", "text": text })
}

/// A refusal or note in answer to a button click: seen by the clicker only, leaving the
/// original message (and its buttons) as it was.
pub fn ephemeral_note(text: &str) -> Value {
    json!({ "response_type": "ephemeral", "replace_original": false, "text": text })
}

fn request_blocks(headline: &str, r: &AccessRequest) -> Vec<Value> {
    let mut text = format!("{headline}\n");
    text.push_str(&summary_lines(r, escape).join("\n"));
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": text },
    })];
    if r.status == RequestStatus::Pending {
        blocks.push(json!({
            "type": "actions",
            "block_id": format!("jit_decide:{}", r.id),
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": { "type": "plain_text", "text": "Approve" },
                    "value": r.id,
                },
                {
                    "type": "button",
                    "action_id": DENY_ACTION,
                    "style": "danger",
                    "text": { "type": "plain_text", "text": "Deny" },
                    "value": r.id,
                },
            ],
        }));
    }
    blocks
}

/// A request as a message. A pending one goes to the channel, with Approve and Deny buttons
/// whose `value` is the request id, for approvers to act on; others only to the requester.
pub fn request_message(headline: &str, r: &AccessRequest) -> Value {
    let response_type = if r.status == RequestStatus::Pending {
        "in_channel"
    } else {
        "ephemeral"
    };
    json!({
        "response_type": response_type,
        "text": format!("{headline} (request {}: {})", r.id, r.status.as_str()),
        "blocks": request_blocks(headline, r),
    })
}

/// The pending message rewritten after a decision (buttons gone once it is decided).
pub fn replace_with(headline: &str, r: &AccessRequest) -> Value {
    json!({
        "replace_original": true,
        "text": format!("{headline} (request {}: {})", r.id, r.status.as_str()),
        "blocks": request_blocks(headline, r),
    })
}

/// The caller's latest requests.
pub fn status_message(requests: &[AccessRequest]) -> Value {
    if requests.is_empty() {
        return ephemeral("You have no access requests.");
    }
    let mut text = String::from("Your latest access requests:");
    for r in requests {
        text.push_str("\n\n");
        text.push_str(&summary_lines(r, escape).join("\n"));
    }
    ephemeral(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_ping_or_link() {
        assert_eq!(
            escape("<!channel> & <https://evil|bank>"),
            "&lt;!channel&gt; &amp; &lt;https://evil|bank&gt;"
        );
    }

    #[test]
    fn replies_have_slacks_shape() {
        let e = ephemeral("nope");
        assert_eq!(e["response_type"], "ephemeral");
        assert_eq!(e["text"], "nope");
        let n = ephemeral_note("nope");
        assert_eq!(n["replace_original"], false);
        assert_eq!(status_message(&[])["text"], "You have no access requests.");
    }
}
