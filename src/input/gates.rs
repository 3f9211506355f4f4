//! Verification gates as the user writes them, the same way in a task (`verify`), a
//! role's front matter and `[verify] commands` / `[merge] verify`: a list of shell
//! command lines that must exit 0, one command line, or `"auto"` (the project's own
//! test command, found from its files when the gates run). An empty list means no
//! gate (a task can so turn off its role's gates).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The gates a task, role or config section names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateSpec {
    /// The project's own test command, detected from its files.
    Auto,
    /// These command lines, run with `sh -c` one after the other.
    Commands(Vec<String>),
}

impl GateSpec {
    /// Reads a TOML value: `"auto"`, one command line, or a list of them. The error
    /// says what is wrong with the value (callers name the file and the key).
    pub fn from_toml(v: &toml::Value) -> Result<GateSpec, String> {
        let spec = match v {
            toml::Value::String(s) if s.trim() == "auto" => GateSpec::Auto,
            toml::Value::String(s) => GateSpec::Commands(vec![s.clone()]),
            toml::Value::Array(items) => GateSpec::Commands(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("expected \"auto\" or a list of shell command lines")?,
            ),
            _ => return Err("expected \"auto\" or a list of shell command lines".into()),
        };
        spec.check()?;
        Ok(spec)
    }

    /// Every command must be a non-empty line of text.
    pub fn check(&self) -> Result<(), String> {
        let GateSpec::Commands(cmds) = self else {
            return Ok(());
        };
        for (i, c) in cmds.iter().enumerate() {
            if c.trim().is_empty() {
                return Err(format!(
                    "gate {} is an empty command; write the shell command line it runs, such as \"cargo test --quiet\"",
                    i + 1
                ));
            }
            if c.contains('\0') {
                return Err(format!("gate {} contains a NUL byte", i + 1));
            }
        }
        Ok(())
    }
}

impl Serialize for GateSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GateSpec::Auto => s.serialize_str("auto"),
            GateSpec::Commands(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for GateSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        let spec = match Raw::deserialize(d)? {
            Raw::One(s) if s.trim() == "auto" => GateSpec::Auto,
            Raw::One(s) => GateSpec::Commands(vec![s]),
            Raw::Many(v) => GateSpec::Commands(v),
        };
        spec.check().map_err(serde::de::Error::custom)?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = |s: &str| GateSpec::from_toml(&toml::from_str::<toml::Table>(s).unwrap()["v"]);
        assert_eq!(t("v = \"auto\""), Ok(GateSpec::Auto));
        assert_eq!(
            t("v = \"make test\""),
            Ok(GateSpec::Commands(vec!["make test".into()]))
        );
        assert_eq!(t("v = []"), Ok(GateSpec::Commands(vec![])));
        assert!(t("v = [\"a\", \"  \"]")
            .unwrap_err()
            .contains("gate 2 is an empty"));
        assert!(t("v = 3").is_err());
        let j: GateSpec = serde_json::from_str("[\"x\"]").unwrap();
        assert_eq!(serde_json::to_string(&j).unwrap(), "[\"x\"]");
        assert!(serde_json::from_str::<GateSpec>("[\"\"]").is_err());
    }
}
