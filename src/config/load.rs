//! Reading configuration out of TOML text: the whole file, one named table of a larger
//! file, or the application's own struct with Backstop's sections inside; environment
//! overrides merged before anything is checked; every error placed at a line and column.

use super::BackstopConfig;
use super::error::{ConfigFileError, line_and_column};
use backstop_core::config::ConfigError;
use serde::de::DeserializeOwned;
use std::borrow::Cow;
use std::cell::RefCell;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Why [`BackstopConfig`]'s `Deserialize` refused a value that parsed.
///
/// A serde error carries only a message; the loader takes this record back (matched by the
/// message) to name the field precisely and find its line, however deep the section sits.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// A rule broke; the field is relative to the Backstop sections.
    Rule(ConfigError),
    /// A key no section knows, relative to the Backstop sections.
    Unknown(String),
    /// A section whose Cargo feature is off.
    FeatureOff {
        /// Dotted path of the key, relative to the Backstop sections.
        field: String,
        /// The feature that would enable it.
        feature: &'static str,
    },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Rule(error) => error.fmt(f),
            Refusal::Unknown(field) => write!(f, "unknown field `{field}`"),
            Refusal::FeatureOff { field, feature } => {
                write!(f, "`{field}` needs backstop's `{feature}` feature")
            }
        }
    }
}

thread_local! {
    // Deserialization is synchronous on one thread, so the refusal raised deep inside it
    // is still here when the loader sees the error come out.
    static REFUSAL: RefCell<Option<(String, Refusal)>> = const { RefCell::new(None) };
}

/// Records `refusal` for the loader and turns it into the deserializer's error.
pub(crate) fn refuse<E: serde::de::Error>(refusal: Refusal) -> E {
    let message = refusal.to_string();
    REFUSAL.with(|slot| *slot.borrow_mut() = Some((message.clone(), refusal)));
    E::custom(message)
}

/// Takes the recorded refusal back if it is the one behind `message`.
fn take_refusal(message: &str) -> Option<Refusal> {
    REFUSAL.with(|slot| {
        slot.borrow_mut()
            .take()
            .filter(|(recorded, _)| message.contains(recorded.as_str()))
            .map(|(_, refusal)| refusal)
    })
}

/// Loads a configuration from TOML text with the options a deployment needs: a named table
/// of a larger file and environment overrides.
///
/// Environment variables in the conventional shape override the file before anything is
/// checked: the prefix (`BACKSTOP` unless [`env_prefix`](Self::env_prefix) says otherwise),
/// then each key, separated by double underscores. `BACKSTOP__LIMIT__MAX_KEYS=5000` sets
/// `max_keys` in `[limit]`; a value is read as TOML (`5000`, `true`, `[1, 2]`) and otherwise
/// as a string (`250ms`, `redis://cache:6379`). With [`table`](Self::table) the keys are
/// relative to that table. An error about an overridden value names the variable.
///
/// ```
/// use backstop::config::ConfigLoader;
///
/// let file = r#"
/// [server]
/// port = 8080
///
/// [backstop.limit]
/// max_keys = 100
/// "#;
/// let config = ConfigLoader::new()
///     .table("backstop")
///     .vars([("BACKSTOP__LIMIT__MAX_KEYS", "5000")])
///     .load_str(file)?;
/// assert_eq!(config.limit.unwrap().max_keys, Some(5000));
///
/// let error = ConfigLoader::new()
///     .table("backstop")
///     .vars([("BACKSTOP__LIMIT__MAX_KEYS", "0")])
///     .load_str(file)
///     .unwrap_err();
/// assert_eq!(error.to_string(), "configuration: `BACKSTOP__LIMIT__MAX_KEYS` sets `backstop.limit.max_keys`: must be at least 1");
/// # Ok::<_, backstop::config::ConfigFileError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    table: Option<String>,
    prefix: String,
    vars: Vec<(String, String)>,
}

impl Default for ConfigLoader {
    fn default() -> Self {
        Self::new()
    }
}

/// One environment override: the variable, the keys it names, its value.
struct Override {
    variable: String,
    path: Vec<String>,
    value: String,
}

impl ConfigLoader {
    /// Reads the whole text as Backstop's sections, with no environment overrides.
    pub fn new() -> Self {
        Self {
            table: None,
            prefix: "BACKSTOP".to_string(),
            vars: Vec::new(),
        }
    }

    /// Reads Backstop's sections from this table of a larger file (dotted for a nested
    /// table, `"app.backstop"`); other tables belong to the application and are not
    /// looked at. A missing table is an empty configuration.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = Some(name.into());
        self
    }

    /// The prefix of override variables (`BACKSTOP` by default).
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Applies the process environment's override variables.
    pub fn env(self) -> Self {
        self.vars(std::env::vars())
    }

    /// Applies these variables as if they were the environment (variables without the
    /// prefix are ignored).
    pub fn vars<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.vars
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Parses, overrides and validates `text` into a [`BackstopConfig`].
    pub fn load_str(&self, text: &str) -> Result<BackstopConfig, ConfigFileError> {
        self.deserialize_str(text)
    }

    /// Reads `path` and loads it as [`load_str`](Self::load_str) does.
    pub fn load_file(&self, path: impl AsRef<Path>) -> Result<BackstopConfig, ConfigFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        self.load_str(&text)
    }

    /// Deserializes the application's own type — a struct with a `BackstopConfig` field —
    /// with the same guarantees for Backstop's sections: unknown keys refused, rules
    /// checked, every error at its line and column.
    ///
    /// ```
    /// use backstop::config::{BackstopConfig, ConfigFileError, ConfigLoader};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct App {
    ///     port: u16,
    ///     backstop: BackstopConfig,
    /// }
    ///
    /// let app: App = ConfigLoader::new().deserialize_str("port = 8080\n[backstop.dedup]\nttl = \"5s\"\n")?;
    /// assert!(app.backstop.dedup.is_some());
    ///
    /// let error = ConfigLoader::new()
    ///     .deserialize_str::<App>("port = 8080\n[backstop.dedup]\nmax_entries = 0\n")
    ///     .err()
    ///     .unwrap();
    /// assert_eq!(error.field(), Some("backstop.dedup.max_entries"));
    /// assert!(error.to_string().ends_with("(line 3, column 1)"), "{error}");
    /// # Ok::<_, ConfigFileError>(())
    /// ```
    pub fn deserialize_str<T: DeserializeOwned>(&self, text: &str) -> Result<T, ConfigFileError> {
        let overrides = self.overrides()?;
        let mut root = DeTable::parse(text).map_err(|error| ConfigFileError::Parse {
            field: String::new(),
            message: error.message().trim().to_string(),
            line: error.span().map(|s| line_and_column(text, s.start).0),
            column: error.span().map(|s| line_and_column(text, s.start).1),
        })?;
        let base: Vec<String> = match &self.table {
            Some(table) => table.split('.').map(str::to_string).collect(),
            None => Vec::new(),
        };
        let mut doc = match &self.table {
            None => root,
            Some(table) => {
                let spans = root.clone();
                let doc = take_table(&mut root, &base);
                if doc.span().start == usize::MAX {
                    let (line, column) = match locate(spans.get_ref(), &base) {
                        Some(span) => {
                            let (line, column) = line_and_column(text, span.start);
                            (Some(line), Some(column))
                        }
                        None => (None, None),
                    };
                    return Err(ConfigFileError::Parse {
                        field: table.clone(),
                        message: "must be a table".to_string(),
                        line,
                        column,
                    });
                }
                doc
            }
        };
        for o in &overrides {
            apply(&mut doc, o, &base)?;
        }
        let spans = doc.clone();
        let located = Located {
            text,
            base: &base,
            spans: &spans,
            overrides: &overrides,
        };
        REFUSAL.with(|slot| slot.borrow_mut().take());
        serde_path_to_error::deserialize(toml::de::Deserializer::from(doc))
            .map_err(|error| located.error(error))
    }

    fn overrides(&self) -> Result<Vec<Override>, ConfigFileError> {
        let head = format!("{}__", self.prefix);
        let mut overrides = Vec::new();
        for (variable, value) in &self.vars {
            let Some(rest) = variable.strip_prefix(&head) else {
                continue;
            };
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigFileError::Env {
                    variable: variable.clone(),
                    field: String::new(),
                    message: "names an empty key (three or more underscores in a row, or a trailing `__`)".to_string(),
                });
            }
            overrides.push(Override {
                variable: variable.clone(),
                path,
                value: value.clone(),
            });
        }
        // A deeper key wins over a whole table set by a shorter variable only if applied
        // after it; sorting by depth makes the result independent of the environment's order.
        overrides.sort_by(|a, b| a.path.len().cmp(&b.path.len()).then(a.path.cmp(&b.path)));
        Ok(overrides)
    }
}

/// Removes the table at `path` from `root`; an absent table is an empty one.
fn take_table<'i>(root: &mut Spanned<DeTable<'i>>, path: &[String]) -> Spanned<DeTable<'i>> {
    let mut table = root.get_mut();
    let mut span = 0..0;
    for (i, segment) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        if last {
            return match table.remove(segment.as_str()) {
                Some(value) => {
                    let span = value.span();
                    match value.into_inner() {
                        DeValue::Table(t) => Spanned::new(span, t),
                        // Not a table: an empty one stands in, and the caller refuses it.
                        _ => Spanned::new(usize::MAX..usize::MAX, DeTable::new()),
                    }
                }
                None => Spanned::new(span, DeTable::new()),
            };
        }
        match table
            .get_mut(segment.as_str())
            .map(|v| (v.span(), v.get_mut()))
        {
            Some((s, DeValue::Table(inner))) => {
                span = s;
                table = inner;
            }
            _ => return Spanned::new(span, DeTable::new()),
        }
    }
    Spanned::new(span, DeTable::new())
}

/// Writes one override into the document, creating the tables on its way.
fn apply<'i>(
    doc: &mut Spanned<DeTable<'i>>,
    o: &'i Override,
    base: &[String],
) -> Result<(), ConfigFileError> {
    let error = |message: String| ConfigFileError::Env {
        variable: o.variable.clone(),
        field: base
            .iter()
            .chain(&o.path)
            .cloned()
            .collect::<Vec<_>>()
            .join("."),
        message,
    };
    let mut table = doc.get_mut();
    let (last, parents) = o
        .path
        .split_last()
        .expect("a variable names at least one key");
    for (i, segment) in parents.iter().enumerate() {
        let key = Spanned::new(0..0, Cow::Borrowed(segment.as_str()));
        let value = table
            .entry(key)
            .or_insert_with(|| Spanned::new(0..0, DeValue::Table(DeTable::new())));
        match value.get_mut() {
            DeValue::Table(inner) => table = inner,
            _ => {
                return Err(error(format!(
                    "`{}` is a value, not a table",
                    o.path[..=i].join(".")
                )));
            }
        }
    }
    let value = match DeValue::parse(&o.value) {
        Ok(value) => value.into_inner(),
        Err(_) => DeValue::String(Cow::Borrowed(o.value.as_str())),
    };
    table.insert(
        Spanned::new(0..0, Cow::Borrowed(last.as_str())),
        Spanned::new(0..0, value),
    );
    Ok(())
}

/// Everything needed to turn a deserialization error into one that names its field,
/// line and column, or the variable that set it.
struct Located<'a, 'i> {
    text: &'a str,
    base: &'a [String],
    spans: &'a Spanned<DeTable<'i>>,
    overrides: &'a [Override],
}

impl Located<'_, '_> {
    fn error(&self, error: serde_path_to_error::Error<toml::de::Error>) -> ConfigFileError {
        let at: Vec<String> = error
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let inner = error.into_inner();
        let message = inner.message().trim().to_string();
        match take_refusal(&message) {
            Some(Refusal::Rule(rule)) => {
                let path = self.join(&at, rule.field());
                let rule = match self.full(&at) {
                    prefix if prefix.is_empty() => rule,
                    prefix => rule.within(&prefix),
                };
                let env_message = strip_rule(&rule.to_string());
                self.place(&path, env_message, |line, column| {
                    ConfigFileError::Invalid {
                        error: rule,
                        line,
                        column,
                    }
                })
            }
            Some(Refusal::Unknown(field)) => {
                let path = self.join(&at, &field);
                let field = self.full(&path);
                let env_message = "is not a known field".into();
                self.place(&path, env_message, |line, column| {
                    ConfigFileError::UnknownField {
                        field,
                        line,
                        column,
                    }
                })
            }
            Some(Refusal::FeatureOff { field, feature }) => {
                let path = self.join(&at, &field);
                let field = self.full(&path);
                let env_message = format!("needs backstop's `{feature}` feature");
                self.place(&path, env_message, |line, column| {
                    ConfigFileError::FeatureDisabled {
                        field,
                        feature,
                        line,
                        column,
                    }
                })
            }
            None => {
                if let Some(o) = self.overridden(&at) {
                    return self.env_error(o, &at, message);
                }
                let span = inner.span().or_else(|| locate(self.spans.get_ref(), &at));
                let (line, column) = self.position(span);
                ConfigFileError::Parse {
                    field: self.full(&at),
                    message,
                    line,
                    column,
                }
            }
        }
    }

    /// `at` (where the Backstop sections sit) followed by a dotted field inside them.
    fn join(&self, at: &[String], field: &str) -> Vec<String> {
        at.iter()
            .cloned()
            .chain(
                field
                    .split('.')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
            )
            .collect()
    }

    /// The dotted name in the file: the loader's table, then the path inside it.
    fn full(&self, path: &[String]) -> String {
        self.base
            .iter()
            .chain(path)
            .cloned()
            .collect::<Vec<_>>()
            .join(".")
    }

    fn overridden(&self, path: &[String]) -> Option<&Override> {
        self.overrides
            .iter()
            .rev()
            .find(|o| path.starts_with(&o.path))
    }

    /// The error built at the field's position or, when an override set the field, the
    /// override's error saying `env_message`.
    fn place(
        &self,
        path: &[String],
        env_message: String,
        build: impl FnOnce(Option<usize>, Option<usize>) -> ConfigFileError,
    ) -> ConfigFileError {
        if let Some(o) = self.overridden(path) {
            return self.env_error(o, path, env_message);
        }
        let (line, column) = self.position(locate(self.spans.get_ref(), path));
        build(line, column)
    }

    fn env_error(&self, o: &Override, path: &[String], message: String) -> ConfigFileError {
        ConfigFileError::Env {
            variable: o.variable.clone(),
            field: self.full(path),
            message,
        }
    }

    fn position(&self, span: Option<Range<usize>>) -> (Option<usize>, Option<usize>) {
        match span {
            Some(span) => {
                let (line, column) = line_and_column(self.text, span.start);
                (Some(line), Some(column))
            }
            None => (None, None),
        }
    }
}

/// "invalid configuration: `x` must be at least 1" → "must be at least 1".
fn strip_rule(message: &str) -> String {
    message
        .splitn(3, '`')
        .nth(2)
        .map_or(message, str::trim)
        .to_string()
}

/// The span of the deepest key of `path` written in the file: the field itself, or the
/// table that would hold it when the field was left to its default.
fn locate(table: &DeTable<'_>, path: &[String]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (key, value) = table.get_key_value(first.as_str())?;
    let deeper = match value.get_ref() {
        DeValue::Table(inner) => locate(inner, rest),
        DeValue::Array(items) => rest.split_first().and_then(|(index, rest)| {
            let item = items.get(index.parse::<usize>().ok()?)?;
            match item.get_ref() {
                DeValue::Table(inner) => locate(inner, rest).or(Some(item.span())),
                _ => Some(item.span()),
            }
        }),
        _ => None,
    };
    Some(deeper.unwrap_or_else(|| key.span()))
}

/// `cache.memory.max_capcity`: the keys leading to a value, without serde's markers for
/// `Option` and newtype wrappers, which mean nothing to someone editing the file.
pub(crate) fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    let (parent, segment) = match path {
        Path::Root => return String::new(),
        Path::Seq { parent, index } => (parent, index.to_string()),
        Path::Map { parent, key } => (parent, key.clone()),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => {
            return dotted(parent);
        }
    };
    match dotted(parent) {
        prefix if prefix.is_empty() => segment,
        prefix => format!("{prefix}.{segment}"),
    }
}
