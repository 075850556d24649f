//! A JSON document with a key twice in one object is refused before it is
//! read. RFC 8259 leaves such a document's meaning to the reader: serde's
//! typed reading refuses a repeated field it knows but skips one it does
//! not, other tools keep the first or the last. An imported catalog must
//! mean the same to Custos as to the auditor's OSCAL tools, so no object
//! anywhere in it may repeat a key (fuzzing found a catalog that read
//! differently once re-printed).

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// Fails with "duplicate field `KEY` at line L column C" at the first key
/// an object repeats; otherwise as `serde_json` fails on the text.
pub(super) fn check(bytes: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<UniqueKeys>(bytes).map(|_| ())
}

/// Any JSON value whose objects, at every depth, have distinct keys.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Walk)
    }
}

struct Walk;

impl<'de> Visitor<'de> for Walk {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate field `{key}`")));
            }
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn a_repeated_key_at_any_depth_is_refused_where_it_repeats() {
        assert!(check(br#"{"a": [1, {"b": null, "c": "x"}], "b": true}"#).is_ok());
        let e = check(b"{\"a\": [{\"t\": 1,\n \"t\": 2}]}").unwrap_err().to_string();
        assert!(e.starts_with("duplicate field `t`") && e.contains("line 2"), "{e}");
        // The same key spelled with an escape is the same key.
        let e = check(br#"{"title": 1, "titl\u0065": 2}"#).unwrap_err().to_string();
        assert!(e.starts_with("duplicate field `title`"), "{e}");
        assert!(check(b"{\"a\": ").is_err());
    }
}
