//! How deeply a JSON text nests, measured before it is parsed.
//!
//! The server reads a payload three ways: in full, with the facts skipped,
//! and with the facts kept as text. serde_json's recursion limit guards
//! only the first; skipping and raw values nest without limit. Facts the
//! ingest path accepted that the policy could not parse later would turn
//! into "no facts" and a misleading reason, so every reading is held to one
//! depth, checked here.

/// Most levels of arrays and objects a payload may nest. A record nests
/// four levels before a check's facts; real facts add three or four more.
pub const MAX_JSON_DEPTH: usize = 64;

/// The deepest nesting of `[`/`{` in `json`, ignoring brackets inside
/// strings. The text need not be valid JSON: parsing judges that.
pub fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_brackets_outside_strings_only() {
        assert_eq!(nesting_depth(b"1"), 0);
        assert_eq!(nesting_depth(br#"{"a": [1, {"b": []}]}"#), 4);
        assert_eq!(nesting_depth(br#"{"a": "[[[[{{{{", "b": "\"[[["}"#), 1);
        assert_eq!(nesting_depth(br#"["\\", [[]]]"#), 3, "an escaped backslash ends the escape");
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(nesting_depth(deep.as_bytes()), 500);
    }
}
