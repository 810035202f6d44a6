//! Duplicate keys in a model file's JSON: serde's maps keep the last value of a repeated key,
//! where another reader may keep the first, so the same bytes could read as two different
//! models. Every object of the container header, and of the `model` and `crc32` metadata
//! values, must have distinct keys
//! ([docs/FORMAT.md](../../docs/FORMAT.md#what-a-reader-must-reject)).

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Walks any JSON value, failing on an object with a repeated key.
struct Distinct;

impl<'de> DeserializeSeed<'de> for Distinct {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Distinct {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Distinct)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(A::Error::custom(format!("duplicate key `{key}`")));
            }
            map.next_value_seed(Distinct)?;
        }
        Ok(())
    }
}

/// `Err` with serde_json's message (naming the key and its position) when some object in
/// `json` repeats a key, or when `json` is not JSON.
pub(crate) fn distinct_keys(json: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    Distinct
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::distinct_keys;

    #[test]
    fn repeated_keys_at_any_depth_are_found() {
        assert!(
            distinct_keys(br#"{"a": 1, "b": [{"c": null, "d": -0.5}], "e": {"a": "x"}}"#).is_ok()
        );
        let e = distinct_keys(br#"{"a": 1, "b": 2, "a": 3}"#).unwrap_err();
        assert!(e.contains("duplicate key `a`"), "{e}");
        assert!(distinct_keys(br#"{"x": [1, {"y": 1, "y": 1}]}"#).is_err());
        assert!(distinct_keys(br#"{"m": {"k": "1", "k": "2"}}"#).is_err());
        assert!(distinct_keys(b"{\"a\": 1} trailing").is_err());
    }
}
