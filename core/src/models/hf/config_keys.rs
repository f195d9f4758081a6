//! Typed reads of a HF `config.json`, shared by the loader and every architecture's
//! configuration.

use serde_json::{Map, Value};

use super::{Activation, HfError};

/// Typed access to `config.json` with transformers' defaults and errors naming the field.
pub(crate) struct ConfigKeys<'a> {
    file: &'a str,
    map: &'a Map<String, Value>,
}

impl<'a> ConfigKeys<'a> {
    pub(crate) fn new(file: &'a str, map: &'a Map<String, Value>) -> Self {
        Self { file, map }
    }

    pub(crate) fn error(&self, reason: String) -> HfError {
        HfError::file(self.file, reason)
    }

    fn field_error(&self, key: &str, expected: &str) -> HfError {
        self.error(format!(
            "field `{key}`: expected {expected}, found {}",
            self.map
                .get(key)
                .map(|v| v.to_string())
                .unwrap_or("nothing".into())
        ))
    }

    fn present(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn usize(&self, key: &str, default: Option<usize>) -> Result<usize, HfError> {
        match self.present(key) {
            Some(v) => v
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| self.field_error(key, "a non-negative integer")),
            None => default.ok_or_else(|| self.field_error(key, "a non-negative integer")),
        }
    }

    pub(crate) fn i64(&self, key: &str, default: i64) -> Result<i64, HfError> {
        match self.present(key) {
            Some(v) => v
                .as_i64()
                .ok_or_else(|| self.field_error(key, "an integer")),
            None => Ok(default),
        }
    }

    pub(crate) fn f64(&self, key: &str, default: f64) -> Result<f64, HfError> {
        match self.present(key) {
            Some(v) => v.as_f64().ok_or_else(|| self.field_error(key, "a number")),
            None => Ok(default),
        }
    }

    pub(crate) fn bool(&self, key: &str, default: bool) -> Result<bool, HfError> {
        match self.present(key) {
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.field_error(key, "true or false")),
            None => Ok(default),
        }
    }

    pub(crate) fn string(&self, key: &str, default: &str) -> Result<String, HfError> {
        match self.present(key) {
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| self.field_error(key, "a string")),
            None if default.is_empty() => Err(self.field_error(key, "a string")),
            None => Ok(default.to_string()),
        }
    }

    /// A list of strings, or one `a|b` string as older configs wrote it.
    pub(crate) fn string_list(&self, key: &str) -> Result<Vec<String>, HfError> {
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s.split('|').map(|p| p.trim().to_string()).collect()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| self.field_error(key, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(self.field_error(key, "a list of strings")),
        }
    }

    pub(crate) fn activation(&self, key: &str, default: &str) -> Result<Activation, HfError> {
        let name = self.string(key, default)?;
        Activation::from_name(&name).ok_or_else(|| {
            self.error(format!(
                "field `{key}`: activation `{name}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu, silu)"
            ))
        })
    }
}
