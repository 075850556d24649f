//! JSON facts and parameters as CEL values, and CEL values described for
//! a reason.

use super::*;

/// A JSON value as CEL sees it. Written out rather than through
/// `cel::to_value`, which turns every non-negative JSON integer into an
/// unsigned one; CEL's arithmetic does not mix `uint` with the `int`
/// literals and parameters of the rules.
pub(super) fn to_cel(v: &Json) -> cel::Value {
    match v {
        Json::Null => cel::Value::Null,
        Json::Bool(b) => cel::Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => cel::Value::Int(i),
            (None, Some(u)) => cel::Value::UInt(u),
            (None, None) => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => cel::Value::String(Arc::new(s.clone())),
        Json::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Json::Object(m) => map_to_cel(m),
    }
}

pub(super) fn map_to_cel(m: &Map<String, Json>) -> cel::Value {
    let map: HashMap<String, cel::Value> = m.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
    cel::Value::from(map)
}

/// A short description of a non-boolean result, for the reason.
pub(super) fn describe(v: &cel::Value) -> String {
    match v {
        cel::Value::Null => "null".into(),
        cel::Value::Int(i) => format!("the int {i}"),
        cel::Value::UInt(u) => format!("the uint {u}"),
        cel::Value::Float(f) => format!("the double {f}"),
        cel::Value::String(s) => format!("the string {s:?}"),
        cel::Value::List(l) => format!("a list of {}", l.len()),
        cel::Value::Map(_) => "a map".into(),
        _ => "a value".into(),
    }
}
