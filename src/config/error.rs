use backstop_core::ConfigError;
use std::path::PathBuf;

/// Why a Backstop configuration file could not be turned into a stack.
///
/// Every variant that concerns a value names it by its dotted path
/// (`cache.memory.max_capacity`), so the message points at the line to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not valid TOML, or a value has the wrong type or shape.
    #[error("{}", describe_parse(.field, .message, *.line, *.column))]
    Parse {
        /// Dotted path of the offending value; empty when the TOML itself is malformed.
        field: String,
        /// What was wrong with it.
        message: String,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column of the offending text, when known.
        column: Option<usize>,
    },
    /// A key that no section knows, usually a typo; silently ignoring it would leave a
    /// limit or timeout at its default without anyone noticing.
    #[error("configuration: unknown field `{field}`{}", position(.line, .column))]
    UnknownField {
        /// Dotted path of the unknown key.
        field: String,
        /// 1-based line of the key, when known.
        line: Option<usize>,
        /// 1-based column of the key, when known.
        column: Option<usize>,
    },
    /// A section (or a key inside one) of a primitive whose Cargo feature is not compiled
    /// in: the file is meant for a build with more features.
    #[error("configuration: `{field}` needs backstop's `{feature}` feature{}", position(.line, .column))]
    FeatureDisabled {
        /// Dotted path of the key.
        field: String,
        /// The feature that would accept it.
        feature: &'static str,
        /// 1-based line of the key, when known.
        line: Option<usize>,
        /// 1-based column of the key, when known.
        column: Option<usize>,
    },
    /// Every value parsed, but one broke a rule (`must be at least 1`).
    #[error("{error}{}", position(.line, .column))]
    Invalid {
        /// The rule that broke, naming the field by its dotted path.
        error: ConfigError,
        /// 1-based line of the field (or of the table holding a defaulted field), when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
    },
    /// An environment override could not be applied, or set a value that is wrong.
    #[error("configuration: `{variable}` sets `{field}`: {message}")]
    Env {
        /// The variable, `BACKSTOP__LIMIT__MAX_KEYS`.
        variable: String,
        /// Dotted path of the key it sets.
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl From<ConfigError> for ConfigFileError {
    fn from(error: ConfigError) -> Self {
        ConfigFileError::Invalid {
            error,
            line: None,
            column: None,
        }
    }
}

impl ConfigFileError {
    /// Dotted path of the field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigFileError::Read { .. } => None,
            ConfigFileError::Parse { field, .. } if field.is_empty() => None,
            ConfigFileError::Env { field, .. } if field.is_empty() => None,
            ConfigFileError::Parse { field, .. }
            | ConfigFileError::UnknownField { field, .. }
            | ConfigFileError::FeatureDisabled { field, .. }
            | ConfigFileError::Env { field, .. } => Some(field),
            ConfigFileError::Invalid { error, .. } => Some(error.field()),
        }
    }

    /// 1-based line and column of the offending text, when the error is about the file.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ConfigFileError::Parse { line, column, .. }
            | ConfigFileError::UnknownField { line, column, .. }
            | ConfigFileError::FeatureDisabled { line, column, .. }
            | ConfigFileError::Invalid { line, column, .. } => line.zip(*column),
            ConfigFileError::Read { .. } | ConfigFileError::Env { .. } => None,
        }
    }
}

fn position(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        _ => String::new(),
    }
}

fn describe_parse(
    field: &str,
    message: &str,
    line: Option<usize>,
    column: Option<usize>,
) -> String {
    let position = position(&line, &column);
    if field.is_empty() {
        format!("configuration is not valid TOML{position}: {message}")
    } else {
        format!("configuration: `{field}` {message}{position}")
    }
}

/// 1-based line and column of a byte offset in `text`.
pub(crate) fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        assert_eq!(line_and_column("abc", 0), (1, 1));
        assert_eq!(line_and_column("a\nbé\nc", 5), (2, 3));
        assert_eq!(line_and_column("a\nb", 99), (2, 2));
    }
}
