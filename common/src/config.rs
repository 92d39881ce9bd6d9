//! The layered configuration loading of janus-proxy and janus-sentinel: built-in defaults →
//! the file (TOML or YAML, by its extension) → `PREFIX__SECTION__KEY` environment variables.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

/// Builds the layered configuration: `defaults`, then `file` (if any; an error if it does not
/// exist), then the variables of `env` named `{env_prefix}__SECTION__KEY` (values parsed as
/// numbers / booleans where they look so; the keys in `list_keys` are comma-separated lists).
/// The caller deserializes (and validates) the result. Errors are messages for the operator.
pub fn load_layered<T: Serialize>(
    defaults: &T,
    file: Option<&Path>,
    env_prefix: &str,
    list_keys: &[&str],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<config::Config, String> {
    let mut builder = config::Config::builder()
        .add_source(config::Config::try_from(defaults).map_err(|e| e.to_string())?);
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        builder = builder.add_source(config::File::from(path));
    }
    let wanted = format!("{env_prefix}__");
    let env: HashMap<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&wanted))
        .collect();
    let mut environment = config::Environment::with_prefix(env_prefix)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .list_separator(",");
    for key in list_keys {
        environment = environment.with_list_parse_key(key);
    }
    builder = builder.add_source(environment.source(Some(env)));
    builder.build().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Section {
        port: u16,
        names: Vec<String>,
        on: bool,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Conf {
        section: Section,
    }

    fn defaults() -> Conf {
        Conf {
            section: Section {
                port: 1,
                names: vec!["a".into()],
                on: false,
            },
        }
    }

    #[test]
    fn defaults_then_file_then_environment() {
        let dir = std::env::temp_dir().join(format!("jc-common-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[section]\nport = 2\non = true\n").unwrap();

        let only_defaults: Conf = load_layered(&defaults(), None, "T", &[], Vec::new())
            .unwrap()
            .try_deserialize()
            .unwrap();
        assert_eq!(only_defaults, defaults());

        let layered: Conf = load_layered(
            &defaults(),
            Some(&file),
            "T",
            &["section.names"],
            [
                ("T__SECTION__PORT", "3"),
                ("T__SECTION__NAMES", "x,y"),
                ("OTHER__SECTION__PORT", "4"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .unwrap()
        .try_deserialize()
        .unwrap();
        assert_eq!(
            layered.section,
            Section {
                port: 3,
                names: vec!["x".into(), "y".into()],
                on: true
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_file_is_an_error() {
        let err = load_layered(
            &defaults(),
            Some(Path::new("/nonexistent/jc.toml")),
            "T",
            &[],
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(err, "config file /nonexistent/jc.toml does not exist");
    }
}
