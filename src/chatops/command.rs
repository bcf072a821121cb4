//! The text commands, the same for Slack (`/jit ...`) and Teams (`@jitgate ...`):
//!
//! ```text
//! request <vm> <port> [<duration>] [from <address>] [<justification...>]
//! status
//! approve <id> [<comment...>]      deny <id> [<reason...>]
//! cancel <id>                      revoke <id> [<reason...>]
//! help
//! ```
//!
//! `<vm>` is a VM name from the inventory, `<resource group>/<name>`, or a full ARM id.
//! `<port>` is a number, or `ssh` (22), `rdp` (3389), `winrm` (5985). `<duration>` is `1h`,
//! `30m`, `1h30m`, `90s` or ISO 8601 (`PT1H`); left out, the policy's maximum.

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Request(RequestCommand),
    Status,
    Approve { id: String, comment: Option<String> },
    Deny { id: String, reason: Option<String> },
    Cancel { id: String },
    Revoke { id: String, reason: Option<String> },
    Help,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCommand {
    /// As typed: a name, `rg/name`, or an ARM id.
    pub vm: String,
    pub port: u16,
    /// ISO 8601 (`PT1H`); `None`: the policy's maximum.
    pub duration: Option<String>,
    /// The address or block to open the port for.
    pub source: Option<String>,
    pub justification: Option<String>,
}

/// What `help` (and a command that cannot be understood) answers.
pub const USAGE: &str = "Commands:\n\
• `request <vm> <port> [<duration>] [from <your address>] <justification>`: ask for access, e.g. `request vm-web-1 22 1h from 203.0.113.7 INC-1234 patch openssl`. `<vm>` is a VM name, `<resource group>/<name>` or its ARM id; `<port>` a number or ssh/rdp/winrm; `<duration>` like 1h, 30m, 1h30m or PT1H (default: the policy's maximum). `from` is needed unless the port's policy names a single allowed source.\n\
• `status`: your latest requests.\n\
• `approve <id> [comment]`, `deny <id> [reason]`: decide on a pending request (approvers).\n\
• `cancel <id>`: withdraw your pending request.\n\
• `revoke <id> [reason]`: close access early.\n\
• `help`: this text.";

fn rest(words: &[&str]) -> Option<String> {
    let text = words.join(" ");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// `1h`, `30m`, `1h30m`, `90s`, `2d` or ISO 8601 (`PT1H`, case-insensitive) as ISO 8601;
/// `None` when the word is not a duration.
pub fn parse_duration(word: &str) -> Option<String> {
    let upper = word.to_ascii_uppercase();
    if upper.starts_with('P') {
        let ok = upper.len() > 1
            && upper.bytes().any(|b| b.is_ascii_digit())
            && upper
                .bytes()
                .all(|b| b.is_ascii_digit() || b"PTDHMS".contains(&b));
        return ok.then_some(upper);
    }
    let (mut days, mut time) = (String::new(), String::new());
    let mut digits = String::new();
    let mut last_unit = 0;
    for c in upper.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        // Units in order, each once: d, h, m, s.
        let rank = match c {
            'D' => 1,
            'H' => 2,
            'M' => 3,
            'S' => 4,
            _ => return None,
        };
        if digits.is_empty() || rank <= last_unit {
            return None;
        }
        last_unit = rank;
        if c == 'D' {
            days = format!("{digits}D");
        } else {
            time.push_str(&digits);
            time.push(c);
        }
        digits.clear();
    }
    if !digits.is_empty() || last_unit == 0 {
        return None;
    }
    Some(if time.is_empty() {
        format!("P{days}")
    } else {
        format!("P{days}T{time}")
    })
}

fn parse_port(word: &str) -> Result<u16, String> {
    match word.to_ascii_lowercase().as_str() {
        "ssh" => Ok(22),
        "rdp" => Ok(3389),
        "winrm" => Ok(5985),
        other => other.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            format!("`{word}` is not a port: give a number from 1 to 65535, or ssh, rdp or winrm")
        }),
    }
}

fn id_arg(words: &[&str], verb: &str) -> Result<String, String> {
    words
        .first()
        .map(|w| {
            w.trim_matches(|c| c == '`' || c == '<' || c == '>')
                .to_string()
        })
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            format!("`{verb}` needs a request id: `{verb} <id>` (see `status` for yours)")
        })
}

/// Parses the text after the command name (Slack's `text` field; Teams' message with the
/// mention taken out). An error is a message for the user, with the usage when it helps.
pub fn parse(text: &str) -> Result<Command, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    // Accept the command name typed again (`/jit jit status`, `@jitgate /jit status`).
    let words = match words.first() {
        Some(w) if w.eq_ignore_ascii_case("jit") || w.eq_ignore_ascii_case("/jit") => &words[1..],
        _ => &words[..],
    };
    let Some((verb, args)) = words.split_first() else {
        return Ok(Command::Help);
    };
    match verb.to_ascii_lowercase().as_str() {
        "help" | "?" => Ok(Command::Help),
        "status" | "list" => Ok(Command::Status),
        "approve" => Ok(Command::Approve {
            id: id_arg(args, "approve")?,
            comment: rest(&args[1..]),
        }),
        "deny" => Ok(Command::Deny {
            id: id_arg(args, "deny")?,
            reason: rest(&args[1..]),
        }),
        "cancel" => Ok(Command::Cancel {
            id: id_arg(args, "cancel")?,
        }),
        "revoke" => Ok(Command::Revoke {
            id: id_arg(args, "revoke")?,
            reason: rest(&args[1..]),
        }),
        "request" => parse_request(args),
        other => Err(format!("I don't know the command `{other}`.\n{USAGE}")),
    }
}

fn parse_request(args: &[&str]) -> Result<Command, String> {
    let usage = "Usage: `request <vm> <port> [<duration>] [from <your address>] <justification>`, e.g. `request vm-web-1 22 1h from 203.0.113.7 INC-1234 patch openssl`";
    let (Some(vm), Some(port)) = (args.first(), args.get(1)) else {
        return Err(format!("`request` needs a VM and a port. {usage}"));
    };
    let port = parse_port(port).map_err(|e| format!("{e}. {usage}"))?;
    let mut duration = None;
    let mut source = None;
    let mut i = 2;
    while let Some(word) = args.get(i) {
        if word.eq_ignore_ascii_case("from") {
            let Some(address) = args.get(i + 1) else {
                return Err(format!(
                    "`from` needs an address or CIDR block after it. {usage}"
                ));
            };
            if source.is_some() {
                return Err(format!("`from` is given twice. {usage}"));
            }
            source = Some(address.to_string());
            i += 2;
        } else if let Some(d) = duration.is_none().then(|| parse_duration(word)).flatten() {
            duration = Some(d);
            i += 1;
        } else {
            break;
        }
    }
    Ok(Command::Request(RequestCommand {
        vm: vm.to_string(),
        port,
        duration,
        source,
        justification: rest(&args[i..]),
    }))
}

/// A Teams message's text as a command: the bot's `<at>` mention removed, other markup
/// stripped, entities decoded.
pub fn teams_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut rest = html;
    // Drop <at>...</at> mentions with their content.
    while let Some(start) = rest.find("<at>") {
        text.push_str(&rest[..start]);
        rest = match rest[start..].find("</at>") {
            Some(end) => &rest[start + end + "</at>".len()..],
            None => "",
        };
    }
    text.push_str(rest);
    // Strip any other tags, keeping their content.
    let mut plain = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                plain.push(' ');
            }
            _ if !in_tag => plain.push(c),
            _ => {}
        }
    }
    plain
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> RequestCommand {
        match parse(text) {
            Ok(Command::Request(r)) => r,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn a_full_request_parses() {
        let r = request("request vm1 22 1h from 203.0.113.7 INC-1234: patch openssl");
        assert_eq!(
            r,
            RequestCommand {
                vm: "vm1".into(),
                port: 22,
                duration: Some("PT1H".into()),
                source: Some("203.0.113.7".into()),
                justification: Some("INC-1234: patch openssl".into()),
            }
        );
    }

    #[test]
    fn duration_and_source_are_optional_and_in_either_order() {
        let r = request("REQUEST rg-web/vm1 ssh from 10.0.0.0/24 PT30M fix it");
        assert_eq!(r.vm, "rg-web/vm1");
        assert_eq!(r.port, 22);
        assert_eq!(r.source.as_deref(), Some("10.0.0.0/24"));
        assert_eq!(r.duration.as_deref(), Some("PT30M"));
        assert_eq!(r.justification.as_deref(), Some("fix it"));
        let r = request("request vm1 rdp");
        assert_eq!(
            (r.port, r.duration, r.source, r.justification),
            (3389, None, None, None)
        );
        // Only the first duration-looking word is the duration.
        let r = request("request vm1 22 1h 2h");
        assert_eq!(r.duration.as_deref(), Some("PT1H"));
        assert_eq!(r.justification.as_deref(), Some("2h"));
    }

    #[test]
    fn durations_in_chat_shorthand_become_iso_8601() {
        for (given, iso) in [
            ("1h", "PT1H"),
            ("30m", "PT30M"),
            ("1h30m", "PT1H30M"),
            ("90s", "PT90S"),
            ("1d", "P1D"),
            ("1d2h", "P1DT2H"),
            ("PT1H", "PT1H"),
            ("pt45m", "PT45M"),
        ] {
            assert_eq!(parse_duration(given).as_deref(), Some(iso), "{given}");
        }
        for not in [
            "h", "1", "1x", "30m1h", "1h1h", "P", "PT", "INC-1234", "patch", "-1h",
        ] {
            assert_eq!(parse_duration(not), None, "{not}");
        }
    }

    #[test]
    fn other_commands_parse() {
        assert_eq!(parse("status"), Ok(Command::Status));
        assert_eq!(parse(""), Ok(Command::Help));
        assert_eq!(parse("  help "), Ok(Command::Help));
        assert_eq!(parse("jit status"), Ok(Command::Status));
        assert_eq!(
            parse("revoke 0193-abc done early"),
            Ok(Command::Revoke {
                id: "0193-abc".into(),
                reason: Some("done early".into())
            })
        );
        assert_eq!(
            parse("approve `abc`"),
            Ok(Command::Approve {
                id: "abc".into(),
                comment: None
            })
        );
        assert_eq!(
            parse("deny abc not now"),
            Ok(Command::Deny {
                id: "abc".into(),
                reason: Some("not now".into())
            })
        );
        assert_eq!(
            parse("cancel abc"),
            Ok(Command::Cancel { id: "abc".into() })
        );
    }

    #[test]
    fn mistakes_are_explained() {
        let e = parse("request vm1").unwrap_err();
        assert!(e.contains("needs a VM and a port"), "{e}");
        let e = parse("request vm1 http").unwrap_err();
        assert!(e.contains("not a port"), "{e}");
        let e = parse("request vm1 70000").unwrap_err();
        assert!(e.contains("not a port"), "{e}");
        let e = parse("request vm1 22 1h from").unwrap_err();
        assert!(e.contains("`from` needs an address"), "{e}");
        let e = parse("revoke").unwrap_err();
        assert!(e.contains("needs a request id"), "{e}");
        let e = parse("open vm1").unwrap_err();
        assert!(
            e.contains("don't know the command `open`") && e.contains("Commands:"),
            "{e}"
        );
    }

    #[test]
    fn teams_markup_is_taken_out() {
        assert_eq!(
            teams_text("<at>jitgate</at>&nbsp;request vm1 22 1h from 203.0.113.7 R&amp;D<br>fix"),
            "request vm1 22 1h from 203.0.113.7 R&D fix"
        );
        assert_eq!(teams_text("<p><at>jit gate</at> status</p>"), "status");
    }
}
