//! Helpers the macOS backends share: a small parser for XML property lists
//! (`pwpolicy`, `system_profiler -xml`, `Info.plist`) and readers for the
//! old-style output of `defaults read`. Pure apart from the calls through the
//! host.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::collect::ParseError;
use crate::host::Host;

/// A small parser for XML property lists (the tags Apple tools print:
/// `dict`, `array`, `key`, `string`, `integer`, `real`, `true`, `false`,
/// `date`, `data`), into JSON values. Dates and data stay strings. `Err`
/// says what is wrong; the caller names the file or command it read.
pub fn parse_plist(text: &str) -> Result<Value, ParseError> {
    let start = text.find("<plist").ok_or("no <plist> element")?;
    let mut p = Cursor { s: &text[start..], pos: 0 };
    let open = p.next_tag()?.ok_or("empty plist")?;
    if !open.name.eq("plist") || open.closing {
        return Err(ParseError::new("no <plist> element"));
    }
    if open.empty {
        return Ok(Value::Null);
    }
    let tag = p.next_tag()?.ok_or("plist has no value")?;
    if tag.name == "plist" && tag.closing {
        return Ok(Value::Null);
    }
    p.value(tag, 0).map_err(ParseError::from)
}

struct Tag<'a> {
    name: &'a str,
    closing: bool,
    empty: bool,
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "lt" => Some('<'),
            "gt" => Some('>'),
            "amp" => Some('&'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

impl<'a> Cursor<'a> {
    /// The next element tag, skipping text, comments and declarations.
    fn next_tag(&mut self) -> Result<Option<Tag<'a>>, String> {
        loop {
            let Some(i) = self.s[self.pos..].find('<') else { return Ok(None) };
            let at = self.pos + i;
            let rest = &self.s[at..];
            if rest.starts_with("<!--") {
                let end = rest.find("-->").ok_or("unterminated comment")?;
                self.pos = at + end + 3;
                continue;
            }
            let end = rest.find('>').ok_or("unterminated tag")?;
            self.pos = at + end + 1;
            let inner = &rest[1..end];
            if inner.starts_with('?') || inner.starts_with('!') {
                continue;
            }
            let closing = inner.starts_with('/');
            let empty = inner.ends_with('/');
            let body = inner.trim_start_matches('/').trim_end_matches('/');
            let name = body.split_whitespace().next().unwrap_or("");
            return Ok(Some(Tag { name, closing, empty }));
        }
    }

    /// Text up to the closing tag of `name`.
    fn text_until(&mut self, name: &str) -> Result<String, String> {
        let close = format!("</{name}>");
        let i = self.s[self.pos..].find(&close).ok_or_else(|| format!("unterminated <{name}>"))?;
        let text = unescape(&self.s[self.pos..self.pos + i]);
        self.pos += i + close.len();
        Ok(text)
    }

    fn value(&mut self, tag: Tag<'a>, depth: usize) -> Result<Value, String> {
        if depth > 64 {
            return Err("plist nested too deeply".into());
        }
        if tag.closing {
            return Err(format!("unexpected </{}>", tag.name));
        }
        match (tag.name, tag.empty) {
            ("true", _) => Ok(Value::Bool(true)),
            ("false", _) => Ok(Value::Bool(false)),
            ("dict", true) => Ok(Value::Object(Map::new())),
            ("array", true) => Ok(Value::Array(Vec::new())),
            ("string" | "date" | "data", true) => Ok(Value::String(String::new())),
            ("string" | "date", false) => Ok(Value::String(self.text_until(tag.name)?)),
            ("data", false) => {
                Ok(Value::String(self.text_until("data")?.split_whitespace().collect::<Vec<_>>().concat()))
            }
            ("integer", false) => {
                let t = self.text_until("integer")?;
                t.trim().parse::<i64>().map(Value::from).map_err(|_| format!("bad integer {t:?}"))
            }
            ("real", false) => {
                let t = self.text_until("real")?;
                Ok(t.trim().parse::<f64>().ok().map(Value::from).unwrap_or(Value::Null))
            }
            ("array", false) => {
                let mut items = Vec::new();
                loop {
                    let t = self.next_tag()?.ok_or("unterminated <array>")?;
                    if t.closing && t.name == "array" {
                        return Ok(Value::Array(items));
                    }
                    items.push(self.value(t, depth + 1)?);
                }
            }
            ("dict", false) => {
                let mut map = Map::new();
                loop {
                    let t = self.next_tag()?.ok_or("unterminated <dict>")?;
                    if t.closing && t.name == "dict" {
                        return Ok(Value::Object(map));
                    }
                    if t.name != "key" || t.closing {
                        return Err(format!("<{}> where a <key> was expected", t.name));
                    }
                    let key = if t.empty { String::new() } else { self.text_until("key")? };
                    let v = self.next_tag()?.ok_or("dict key without value")?;
                    map.insert(key, self.value(v, depth + 1)?);
                }
            }
            (other, _) => Err(format!("unsupported plist element <{other}>")),
        }
    }
}

/// Net change of nesting depth in a line of `defaults read` output,
/// ignoring brackets inside quoted strings.
fn depth_change(line: &str) -> i32 {
    let (mut d, mut quoted, mut escaped) = (0, false, false);
    for c in line.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '{' | '(' if !quoted => d += 1,
            '}' | ')' if !quoted => d -= 1,
            _ => {}
        }
    }
    d
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(s).replace("\\\"", "\"")
}

/// Parses the top-level scalar keys of `defaults read DOMAIN` output (the
/// old-style property list `{ Key = value; ... }`); nested arrays and
/// dictionaries are skipped. `None` when the text is not such a dictionary.
pub fn parse_defaults(text: &str) -> Option<BTreeMap<String, String>> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    if lines.next()? != "{" {
        return None;
    }
    let mut out = BTreeMap::new();
    let mut depth = 1;
    for line in lines {
        if depth == 1
            && let Some((key, value)) = line.split_once(" = ")
            && let Some(value) = value.strip_suffix(';')
        {
            out.insert(unquote(key), unquote(value));
            continue;
        }
        depth += depth_change(line);
        if depth <= 0 {
            return Some(out);
        }
    }
    // No closing brace: cut-off output, which must not read as "key absent".
    None
}

/// A boolean as `defaults read` prints it (`1`/`0`, or `YES`/`true` as written).
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" => Some(true),
        "0" | "no" | "false" => Some(false),
        _ => None,
    }
}

/// Reads a domain with `defaults read`: `Ok(None)` when it does not exist.
pub fn read_domain(
    host: &dyn Host,
    domain: &str,
    raw: &mut String,
) -> Result<Option<BTreeMap<String, String>>, String> {
    match host.run("defaults", &["read", domain]) {
        Ok(out) if out.success() => {
            raw.push_str(&out.stdout);
            parse_defaults(&out.stdout)
                .map(Some)
                .ok_or_else(|| format!("defaults read {domain} printed no dictionary"))
        }
        Ok(out) if out.stderr.contains("does not exist") => Ok(None),
        Ok(out) => Err(format!("defaults read {domain} exited with {:?}: {}", out.code, out.stderr.trim())),
        Err(e) => Err(format!("defaults: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_values_and_quoted_brackets_are_skipped() {
        let text = "{\n    AutomaticCheckEnabled = 1;\n    LastAttemptSystemVersion = \"14.2.1 (23C71)\";\n    \
                    PrimaryLanguages =     (\n        \"en-GB\",\n        en\n    );\n    \
                    RecommendedUpdates =     (\n        {\n            Identifier = \"X\";\n        }\n    );\n    \
                    SkipLocalCDN = 0;\n}\n";
        let d = parse_defaults(text).unwrap();
        assert_eq!(d["AutomaticCheckEnabled"], "1");
        assert_eq!(d["LastAttemptSystemVersion"], "14.2.1 (23C71)");
        assert_eq!(d["SkipLocalCDN"], "0");
        assert!(!d.contains_key("Identifier"));
        assert!(parse_defaults("Domain x does not exist").is_none());
        assert!(parse_defaults("{\n    AutomaticCheckEnabled = 1;\n").is_none(), "cut off");
    }
}
