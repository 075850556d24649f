//! A rule of `nft -j list ruleset` written back in nft's own syntax
//! (`tcp dport 0-65535 accept`, `jump allowall`), so a finding names the
//! rule the way an administrator reads it in `nft list ruleset`.
//! Best effort and for people only: nothing is decided from this text.

use serde_json::Value;

/// The rule's expressions as one line of nft syntax.
pub fn render_rule(exprs: &[Value]) -> String {
    let parts: Vec<String> = exprs.iter().filter_map(statement).collect();
    let text = parts.join(" ");
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

fn statement(e: &Value) -> Option<String> {
    let (k, body) = e.as_object()?.iter().next()?;
    Some(match k.as_str() {
        "match" => {
            let op = body.get("op").and_then(Value::as_str).unwrap_or("==");
            let l = expr(body.get("left").unwrap_or(&Value::Null));
            let r = expr(body.get("right").unwrap_or(&Value::Null));
            match op {
                "==" | "in" => format!("{l} {r}"),
                _ => format!("{l} {op} {r}"),
            }
        }
        "counter" => return None,
        "jump" | "goto" => format!("{k} {}", body.get("target").and_then(Value::as_str).unwrap_or("?")),
        "vmap" => format!(
            "{} vmap {}",
            expr(body.get("key").unwrap_or(&Value::Null)),
            expr(body.get("data").unwrap_or(&Value::Null))
        ),
        "dnat" | "redirect" => {
            let addr = body.get("addr").map(expr).unwrap_or_default();
            let port = body.get("port").map(|p| format!(":{}", expr(p))).unwrap_or_default();
            format!("{k} to {addr}{port}")
        }
        "xt" => format!("xt {}", body.get("name").and_then(Value::as_str).unwrap_or("?")),
        "mangle" => format!(
            "{} set {}",
            expr(body.get("key").unwrap_or(&Value::Null)),
            expr(body.get("value").unwrap_or(&Value::Null))
        ),
        _ if body.is_null() => k.clone(),
        _ => k.clone(),
    })
}

fn expr(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(expr).collect::<Vec<_>>().join(","),
        Value::Object(o) => {
            let Some((k, b)) = o.iter().next() else { return String::new() };
            let field = |name: &str| b.get(name).map(expr).unwrap_or_default();
            match k.as_str() {
                "payload" if b.get("base").is_some() => {
                    format!("@{},{},{}", field("base"), field("offset"), field("len"))
                }
                "payload" => format!("{} {}", field("protocol"), field("field")),
                "meta" => format!("meta {}", field("key")),
                "ct" => format!("ct {}", field("key")),
                "fib" => format!("fib {} {}", field("flags").replace(',', " . "), field("result")),
                "prefix" => format!("{}/{}", field("addr"), field("len")),
                "range" => match b.as_array().map(Vec::as_slice) {
                    Some([lo, hi]) => format!("{}-{}", expr(lo), expr(hi)),
                    _ => "range".into(),
                },
                "set" => match b {
                    Value::Array(items) => {
                        format!("{{ {} }}", items.iter().map(map_elem).collect::<Vec<_>>().join(", "))
                    }
                    other => expr(other),
                },
                "concat" => b
                    .as_array()
                    .map(|a| a.iter().map(expr).collect::<Vec<_>>().join(" . "))
                    .unwrap_or_default(),
                "&" => b
                    .as_array()
                    .map(|a| a.iter().map(expr).collect::<Vec<_>>().join(" & "))
                    .unwrap_or_default(),
                "elem" => field("val"),
                other => other.to_string(),
            }
        }
    }
}

/// A set element, or a `key : verdict` pair of a map.
fn map_elem(v: &Value) -> String {
    match v.as_array().map(Vec::as_slice) {
        Some([k, verdict]) if verdict.is_object() => {
            format!("{} : {}", expr(k), statement(verdict).unwrap_or_default())
        }
        _ => expr(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_back_in_nft_syntax() {
        let r: Vec<Value> = serde_json::from_str(
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"range": [0, 65535]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]"#,
        )
        .unwrap();
        assert_eq!(render_rule(&r), "tcp dport 0-65535 accept");
        let j: Vec<Value> = serde_json::from_str(r#"[{"jump": {"target": "allowall"}}]"#).unwrap();
        assert_eq!(render_rule(&j), "jump allowall");
        let ct: Vec<Value> = serde_json::from_str(
            r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"accept": null}]"#,
        )
        .unwrap();
        assert_eq!(render_rule(&ct), "ct state established,related accept");
    }
}
