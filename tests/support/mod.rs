//! Helpers shared by the workspace's test crates; each crate includes this module and uses
//! only part of it.
#![allow(dead_code)]

/// The field the refusal of `text` names, or `None` for a refusal that names none.
///
/// Panics when `text` loads: every caller hands it a broken file.
#[cfg(feature = "config")]
pub(crate) fn refused_field(text: &str) -> Option<String> {
    backstop::config::BackstopConfig::from_toml_str(text)
        .unwrap_err()
        .field()
        .map(str::to_string)
}

#[cfg(feature = "pool")]
mod connections;
// Unused in the test crates that drive no pool, like the rest of this module.
#[cfg(feature = "pool")]
#[allow(unused_imports)]
pub(crate) use connections::Connections;
