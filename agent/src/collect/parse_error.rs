//! Why a collector could not read the text a host gave it, as a value.
//!
//! A message alone flattens the file, the command or the pf anchor that was
//! read and the line the parser stopped at into text, which a caller or a
//! test can only pick apart again. A [`ParseError`] keeps them as fields.
//! Its message is built from those fields only when it is shown, and reads
//! as the collectors' reasons always have: it becomes the `reason` of signed
//! evidence, which recorded cases compare and auditors read.
//!
//! A parser handed bare text often does not know where the text came from;
//! it answers with the reason (and the line, when it knows it), and the
//! caller that read the text names its [`Input`].

use super::firewall::pf::rule_name;

/// What a parser was reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file on the host, by path.
    File(String),
    /// What a command printed, by the command line the message names.
    Command(String),
    /// The rules of a pf anchor, by path (`""`: the main rule set); each
    /// line is one rule.
    PfAnchor(String),
}

/// Text a collector could not read: where it came from when the message
/// names it, the 1-based line when the failure is on one, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", message(.input.as_ref(), *.line, .reason))]
pub struct ParseError {
    /// What was read; `None` when the caller names it in its own words.
    pub input: Option<Input>,
    /// The line of that input where the failure is. Shown only with the
    /// input: a line number alone tells a reader nothing.
    pub line: Option<usize>,
    /// What is wrong, in words (for a command, what it printed or failed
    /// to print: "printed no Status line").
    pub reason: String,
}

impl ParseError {
    /// An error with its reason only.
    pub fn new(reason: impl Into<String>) -> Self {
        ParseError { input: None, line: None, reason: reason.into() }
    }

    /// The same error, read from the file at `path`.
    pub fn in_file(self, path: impl Into<String>) -> Self {
        ParseError { input: Some(Input::File(path.into())), ..self }
    }

    /// The same error, read from what `command` printed.
    pub fn in_command(self, command: impl Into<String>) -> Self {
        ParseError { input: Some(Input::Command(command.into())), ..self }
    }

    /// The same error, in the rules of the pf anchor at `path`.
    pub fn in_pf_anchor(self, path: impl Into<String>) -> Self {
        ParseError { input: Some(Input::PfAnchor(path.into())), ..self }
    }

    /// The same error, on the 1-based `line`.
    pub fn at_line(self, line: usize) -> Self {
        ParseError { line: Some(line), ..self }
    }
}

impl From<String> for ParseError {
    fn from(reason: String) -> Self {
        ParseError::new(reason)
    }
}

impl From<&str> for ParseError {
    fn from(reason: &str) -> Self {
        ParseError::new(reason)
    }
}

/// The message: the words the reasons have always used, which recorded
/// cases compare.
fn message(input: Option<&Input>, line: Option<usize>, reason: &str) -> String {
    match (input, line) {
        (None, _) => reason.to_string(),
        (Some(Input::File(path)), None) => format!("{path}: {reason}"),
        (Some(Input::File(path)), Some(n)) => format!("{path} line {n}: {reason}"),
        (Some(Input::Command(command)), None) => format!("{command} {reason}"),
        (Some(Input::Command(command)), Some(n)) => format!("{command} output line {n}: {reason}"),
        (Some(Input::PfAnchor(path)), Some(n)) => format!("{} is {reason}", rule_name(path, n)),
        (Some(Input::PfAnchor(path)), None) if path.is_empty() => format!("the main rule set: {reason}"),
        (Some(Input::PfAnchor(path)), None) => format!("anchor {path}: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_what_the_fields_hold() {
        assert_eq!(ParseError::new("no <plist> element").to_string(), "no <plist> element");
        let e = ParseError::new("no <on-access> element").in_file("/opt/x/SAV_status.xml");
        assert_eq!(e.to_string(), "/opt/x/SAV_status.xml: no <on-access> element");
        let e = ParseError::new("printed no Status line").in_command("lic -s");
        assert_eq!(e.to_string(), "lic -s printed no Status line");
        let e = ParseError::new("unexpected line \"x\"").in_command("iptables-save").at_line(3);
        assert_eq!(e.to_string(), "iptables-save output line 3: unexpected line \"x\"");
        let e = ParseError::new("a translation rule (`rdr`)").in_pf_anchor("a/b").at_line(2);
        assert_eq!(e.to_string(), "rule 2 of anchor a/b is a translation rule (`rdr`)");
        assert_eq!(ParseError::new("x").in_pf_anchor("").at_line(1).to_string(), "rule 1 is x");
        assert_eq!(ParseError::new("x").at_line(4).to_string(), "x", "a line alone is not shown");
    }
}
