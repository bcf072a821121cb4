//! Teams replies: an outgoing webhook answers with `{ "type": "message", "text": ... }` in
//! the HTTP response (within five seconds). Teams renders a subset of Markdown; user text is
//! stripped of markup characters that could reshape the message.

use super::summary_lines;
use crate::domain::request::AccessRequest;
use serde_json::{json, Value};

/// Escapes text for a Teams message.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['*', '_', '`', '[', ']'], " ")
}

pub fn message(text: &str) -> Value {
    json!({ "type": "message", "text": text })
}

/// A request as a message; a pending one says how approvers decide on it.
pub fn request_message(headline: &str, r: &AccessRequest) -> Value {
    let mut lines = vec![headline.to_string()];
    lines.extend(summary_lines(r, escape));
    if r.status == crate::domain::request::RequestStatus::Pending {
        lines.push(format!(
            "Approvers: `approve {id}` or `deny {id} <reason>`",
            id = r.id
        ));
    }
    message(&lines.join("\n\n"))
}

pub fn status_message(requests: &[AccessRequest]) -> Value {
    if requests.is_empty() {
        return message("You have no access requests.");
    }
    let mut text = String::from("Your latest access requests:");
    for r in requests {
        text.push_str("\n\n");
        text.push_str(&summary_lines(r, escape).join("\n\n"));
    }
    message(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_a_teams_message() {
        let m = message("hello");
        assert_eq!(m, json!({ "type": "message", "text": "hello" }));
        assert_eq!(escape("[x](http://e) <b>*"), " x (http://e) &lt;b&gt; ");
    }
}
