//! Webhook bodies: Custos' JSON document and a Slack-compatible message.
//!
//! The JSON document is a stable interface (fields are only ever added):
//!
//! ```json
//! {"type": "risk.opened", "id": "<delivery id>", "occurred_at": "2025-12-01T00:00:00Z",
//!  "risk": {"id": 42, "title": "...", "requirement": "iso27001:2022/A.8.7", "level": "high",
//!           "status": "open", "affected_hosts": 3, "owner": null,
//!           "due": "2026-01-01T00:00:00Z", "link": null}}
//! ```

use serde::Serialize;
use time::OffsetDateTime;
use time::macros::format_description;

use super::{Format, RiskEventKind, RiskNotice, WebhookError};

/// Longest title, requirement or owner shown in a Slack message (Slack cuts a
/// section at 3000 characters; the JSON document keeps the full text).
const SLACK_FIELD_CHARS: usize = 200;

/// The body of the delivery `delivery_id` of `notice` in `format`.
pub fn render(format: Format, delivery_id: &str, notice: &RiskNotice) -> Result<String, WebhookError> {
    match format {
        Format::Json => json(delivery_id, notice),
        Format::Slack => slack(notice),
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "type")]
    kind: String,
    id: &'a str,
    occurred_at: String,
    risk: Risk<'a>,
}

#[derive(Serialize)]
struct Risk<'a> {
    id: i64,
    title: &'a str,
    requirement: Option<&'a str>,
    level: &'a str,
    status: &'a str,
    affected_hosts: usize,
    owner: Option<&'a str>,
    due: Option<String>,
    link: Option<&'a str>,
}

fn time(notice: &RiskNotice, field: &'static str, value: i64) -> Result<OffsetDateTime, WebhookError> {
    OffsetDateTime::from_unix_timestamp(value).map_err(|_| WebhookError::Time {
        risk_id: notice.risk_id,
        field,
        value,
    })
}

fn rfc3339(notice: &RiskNotice, field: &'static str, value: i64) -> Result<String, WebhookError> {
    // Years past 9999 have no RFC 3339 form.
    custos_proto::time::rfc3339(time(notice, field, value)?).ok_or(WebhookError::Time {
        risk_id: notice.risk_id,
        field,
        value,
    })
}

fn json(delivery_id: &str, n: &RiskNotice) -> Result<String, WebhookError> {
    let doc = Document {
        kind: n.kind.event_type(),
        id: delivery_id,
        occurred_at: rfc3339(n, "at", n.at)?,
        risk: Risk {
            id: n.risk_id,
            title: &n.title,
            requirement: n.requirement.as_deref(),
            level: &n.level,
            status: &n.status,
            affected_hosts: n.affected_hosts,
            owner: n.owner.as_deref(),
            due: n.due.map(|d| rfc3339(n, "due", d)).transpose()?,
            link: n.link.as_deref(),
        },
    };
    Ok(serde_json::to_string(&doc)?)
}

fn headline(kind: RiskEventKind) -> &'static str {
    match kind {
        RiskEventKind::Opened => "Risk opened",
        RiskEventKind::Escalated => "Risk escalated",
        RiskEventKind::Accepted => "Risk accepted",
        RiskEventKind::AcceptanceExpired => "Risk acceptance expired",
        RiskEventKind::Closed => "Risk closed",
        RiskEventKind::Reopened => "Risk reopened",
    }
}

/// Slack's escaping for message text: without it a title could ping
/// `<!channel>` or smuggle in a link.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `text` cut to `max` characters, then escaped.
fn field(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        escape(text)
    } else {
        let cut: String = text.chars().take(max - 1).collect();
        escape(&format!("{cut}…"))
    }
}

/// The link as Slack link syntax, when it is a plain http(s) URL that cannot
/// break out of `<url|label>`.
fn slack_link(url: &str, label: &str) -> Option<String> {
    let plain = (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(|c| c == '|' || c.is_whitespace() || c.is_control());
    plain.then(|| format!("<{}|{label}>", escape(url)))
}

fn slack(n: &RiskNotice) -> Result<String, WebhookError> {
    let when = format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    let show = |field_name, value| -> Result<String, WebhookError> {
        time(n, field_name, value)?.format(&when).map_err(|_| WebhookError::Time {
            risk_id: n.risk_id,
            field: field_name,
            value,
        })
    };
    let title = field(&n.title, SLACK_FIELD_CHARS);
    let hosts = match n.affected_hosts {
        1 => "1 host".to_string(),
        k => format!("{k} hosts"),
    };
    let level = field(&n.level, 40);
    let status = field(&n.status, 40);

    let heading = match n.link.as_deref().and_then(|l| slack_link(l, &title)) {
        Some(link) => link,
        None => format!("*{title}*"),
    };
    let mut lines = vec![
        format!("*{}*: {heading}", headline(n.kind)),
        format!("*Level:* {level}    *Status:* {status}"),
        format!("*Affected hosts:* {}", n.affected_hosts),
    ];
    if let Some(due) = n.due {
        lines.push(format!("*Due:* {}", show("due", due)?));
    }
    if let Some(req) = &n.requirement {
        lines.push(format!("*Requirement:* {}", field(req, SLACK_FIELD_CHARS)));
    }
    if let Some(owner) = &n.owner {
        lines.push(format!("*Owner:* {}", field(owner, SLACK_FIELD_CHARS)));
    }
    let context = format!("Custos risk #{} · {}", n.risk_id, show("at", n.at)?);
    let message = serde_json::json!({
        "text": format!("{}: {title} ({level}, {hosts})", headline(n.kind)),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    });
    Ok(serde_json::to_string(&message)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::tests::notice;

    fn parse(body: &str) -> serde_json::Value {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn json_document_fields() {
        let body = render(Format::Json, "d1", &notice(RiskEventKind::AcceptanceExpired)).unwrap();
        assert_eq!(
            parse(&body),
            serde_json::json!({
                "type": "risk.acceptance_expired",
                "id": "d1",
                "occurred_at": "2025-12-01T00:00:00Z",
                "risk": {
                    "id": 42,
                    "title": "Malware protection missing",
                    "requirement": "iso27001:2022/A.8.7",
                    "level": "high",
                    "status": "open",
                    "affected_hosts": 3,
                    "owner": "it-ops",
                    "due": "2026-01-01T00:00:00Z",
                    "link": "https://custos.example/risks/42",
                }
            })
        );
        // Field order is part of the stable form (receivers may log it).
        assert!(body.starts_with(r#"{"type":"risk.acceptance_expired","id":"d1","occurred_at":"#), "{body}");

        let bare = RiskNotice {
            requirement: None,
            owner: None,
            due: None,
            link: None,
            ..notice(RiskEventKind::Closed)
        };
        let v = parse(&render(Format::Json, "d2", &bare).unwrap());
        assert_eq!(v["type"], "risk.closed");
        for k in ["requirement", "owner", "due", "link"] {
            assert!(v["risk"][k].is_null(), "{k}");
        }
    }

    #[test]
    fn slack_message_text_and_blocks() {
        let v = parse(&render(Format::Slack, "d1", &notice(RiskEventKind::Opened)).unwrap());
        assert_eq!(v["text"], "Risk opened: Malware protection missing (high, 3 hosts)");
        assert_eq!(v["blocks"][0]["type"], "section");
        assert_eq!(v["blocks"][0]["text"]["type"], "mrkdwn");
        assert_eq!(
            v["blocks"][0]["text"]["text"],
            "*Risk opened*: <https://custos.example/risks/42|Malware protection missing>\n\
             *Level:* high    *Status:* open\n\
             *Affected hosts:* 3\n\
             *Due:* 2026-01-01 00:00 UTC\n\
             *Requirement:* iso27001:2022/A.8.7\n\
             *Owner:* it-ops"
        );
        assert_eq!(v["blocks"][1]["elements"][0]["text"], "Custos risk #42 · 2025-12-01 00:00 UTC");

        let one = RiskNotice { affected_hosts: 1, link: None, due: None, ..notice(RiskEventKind::Escalated) };
        let v = parse(&render(Format::Slack, "d1", &one).unwrap());
        assert_eq!(v["text"], "Risk escalated: Malware protection missing (high, 1 host)");
        let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(text.starts_with("*Risk escalated*: *Malware protection missing*\n"), "{text}");
        assert!(!text.contains("Due"), "{text}");
    }

    #[test]
    fn slack_escapes_hostile_text() {
        let hostile = RiskNotice {
            title: "<!channel> & <https://evil.example|click>".into(),
            owner: Some("<@U123>".into()),
            link: Some("https://custos.example/r?a=1|<evil>".into()),
            ..notice(RiskEventKind::Opened)
        };
        let v = parse(&render(Format::Slack, "d1", &hostile).unwrap());
        let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
        let fallback = v["text"].as_str().unwrap();
        for t in [text, fallback] {
            assert!(!t.contains('<') && !t.contains('>'), "{t}");
            assert!(t.contains("&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"), "{t}");
        }
        assert!(text.contains("*Owner:* &lt;@U123&gt;"), "{text}");

        let amp =
            RiskNotice { link: Some("https://c.example/r?a=1&b=2".into()), ..notice(RiskEventKind::Opened) };
        let v = parse(&render(Format::Slack, "d1", &amp).unwrap());
        let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(text.contains("<https://c.example/r?a=1&amp;b=2|Malware protection missing>"), "{text}");
        let js = RiskNotice { link: Some("javascript:alert(1)".into()), ..notice(RiskEventKind::Opened) };
        let v = parse(&render(Format::Slack, "d1", &js).unwrap());
        assert!(!v.to_string().contains("javascript"));
    }

    #[test]
    fn slack_cuts_long_fields() {
        let long = RiskNotice { title: "é".repeat(1000), ..notice(RiskEventKind::Opened) };
        let v = parse(&render(Format::Slack, "d1", &long).unwrap());
        let text = v["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(text.contains(&format!("{}…", "é".repeat(199))), "{text}");
        assert!(!text.contains(&"é".repeat(200)));
        assert!(text.chars().count() < 3000);
        // The JSON document keeps the whole title.
        let v = parse(&render(Format::Json, "d1", &long).unwrap());
        assert_eq!(v["risk"]["title"].as_str().unwrap().chars().count(), 1000);
    }

    #[test]
    fn unrepresentable_times_are_errors() {
        for (at, due) in [(i64::MAX, None), (0, Some(i64::MIN)), (253_402_300_800, None)] {
            let n = RiskNotice { at, due, ..notice(RiskEventKind::Opened) };
            for format in [Format::Json, Format::Slack] {
                let err = render(format, "d1", &n).unwrap_err();
                assert!(matches!(err, WebhookError::Time { risk_id: 42, .. }), "{format:?} {at}: {err}");
            }
        }
    }
}
