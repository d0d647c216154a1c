//! Strict JSON parsing for records: like `serde_json::from_slice::<Value>`, except that an
//! object with the same key twice is an error naming the key's path (`spec.image`), where
//! serde_json would silently keep the last value. A record whose `name` appears twice must
//! not pick a VM by accident.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::RefCell;
use std::fmt;

/// Why a text is not a strict JSON value.
#[derive(Debug, thiserror::Error)]
pub enum StrictError {
    #[error("the key {path:?} appears twice")]
    Duplicate { path: String },
    #[error(transparent)]
    Json(serde_json::Error),
}

/// Parses `bytes` as one JSON value, refusing duplicate keys at any depth.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictError> {
    let dup: RefCell<Option<Vec<String>>> = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Seed { dup: &dup }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(v) => Ok(v),
        Err(e) => match dup.into_inner() {
            Some(mut path) => {
                path.reverse();
                Err(StrictError::Duplicate {
                    path: path.join("."),
                })
            }
            None => Err(StrictError::Json(e)),
        },
    }
}

/// Deserializes a `Value`; on a duplicate key it records the key's path (innermost first,
/// each enclosing level adding its own key or index as the error unwinds).
#[derive(Clone, Copy)]
struct Seed<'a> {
    dup: &'a RefCell<Option<Vec<String>>>,
}

impl Seed<'_> {
    fn push(&self, part: String) {
        if let Some(p) = self.dup.borrow_mut().as_mut() {
            p.push(part);
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            match seq.next_element_seed(self) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => return Ok(Value::Array(out)),
                Err(e) => {
                    self.push(out.len().to_string());
                    return Err(e);
                }
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                *self.dup.borrow_mut() = Some(vec![key]);
                return Err(de::Error::custom("duplicate key"));
            }
            match map.next_value_seed(self) {
                Ok(v) => {
                    out.insert(key, v);
                }
                Err(e) => {
                    self.push(key);
                    return Err(e);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_serde_json_without_duplicates() {
        for text in [
            r#"{"v":1,"a":[1,-2,3.5,true,null,"x",{"b":{}}],"c":"é\u0001"}"#,
            "[]",
            "\"s\"",
            "18446744073709551615",
            "-9223372036854775808",
            "1e300",
        ] {
            let want: Value = serde_json::from_str(text).unwrap();
            assert_eq!(from_slice(text.as_bytes()).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn duplicates_name_their_path() {
        let e = from_slice(br#"{"name":"a","name":"b"}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"the key "name" appears twice"#);
        let e = from_slice(br#"{"spec":{"image":"a","image":"b"}}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"the key "spec.image" appears twice"#);
        let e = from_slice(br#"{"x":[{"a":1},{"b":1,"b":2}]}"#).unwrap_err();
        assert_eq!(e.to_string(), r#"the key "x.1.b" appears twice"#);
        // The same key in sibling objects is fine.
        assert!(from_slice(br#"{"a":{"k":1},"b":{"k":1}}"#).is_ok());
    }

    #[test]
    fn syntax_errors_stay_serde_errors() {
        assert!(matches!(
            from_slice(b"{\"a\":1} x"),
            Err(StrictError::Json(_))
        ));
        assert!(matches!(from_slice(b"{nope"), Err(StrictError::Json(_))));
    }
}
