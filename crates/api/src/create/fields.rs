//! Reading one JSON object field by field: each reader knows the field's full path
//! (`model_params.element_list`), treats `null` as absent, and refuses a value of the
//! wrong type with a message naming the field.

use serde_json::{Map, Value};

use crate::error::FieldError;

pub(super) fn err(param: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError::new(param, message)
}

/// `a`, `a or b`, `a, b or c`.
pub(super) fn or_list<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} or {}", init.join(", "), last.as_ref())
        }
    }
}

/// One JSON object and the path it sits at (`""` for the body, `model_params.`...).
#[derive(Clone)]
pub(super) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub prefix: String,
}

impl<'a> Obj<'a> {
    pub fn new(map: &'a Map<String, Value>, prefix: &str) -> Self {
        Self { map, prefix: prefix.to_owned() }
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The value, with `null` read as absent.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// A string of at most `max` characters (not bytes).
    pub fn string(&self, key: &str, max: usize) -> Result<Option<String>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) if s.chars().count() > max => {
                Err(err(self.path(key), format!("{key} is limited to {max} characters.")))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(err(self.path(key), format!("{key} must be a string."))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(err(self.path(key), format!("{key} must be true or false."))),
        }
    }

    /// One of `allowed`, by its wire spelling.
    pub fn choice<T: Copy>(
        &self,
        key: &str,
        allowed: &[T],
        show: impl Fn(T) -> &'static str,
    ) -> Result<Option<T>, FieldError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        let found = v.as_str().and_then(|s| allowed.iter().copied().find(|a| show(*a) == s));
        found.map(Some).ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|a| show(*a)).collect();
            err(self.path(key), format!("{key} must be {}.", or_list(&names)))
        })
    }

    pub fn object(&self, key: &str) -> Result<Option<Obj<'a>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Obj { map: m, prefix: format!("{}{key}.", self.prefix) })),
            Some(_) => Err(err(self.path(key), format!("{key} must be an object."))),
        }
    }

    pub fn array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(_) => Err(err(self.path(key), format!("{key} must be an array."))),
        }
    }
}

/// Every `<<<kind_N>>>` in `text` must have 1 <= N <= `count`.
pub(super) fn check_refs(text: &str, kind: &str, count: usize, param: &str, what: &str) -> Result<(), FieldError> {
    let open = format!("<<<{kind}_");
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(">>>") else { break };
        match after[..end].parse::<usize>() {
            Ok(n) if (1..=count).contains(&n) => {}
            _ => {
                return Err(err(
                    param,
                    format!("<<<{kind}_{}>>> does not name one of the {what} ({count} given).", &after[..end]),
                ));
            }
        }
        rest = &after[end..];
    }
    Ok(())
}
