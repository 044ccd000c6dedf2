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

/// A pool manager whose connections are the number 7 and always recycle.
#[cfg(feature = "pool")]
pub(crate) struct Connections;

#[cfg(feature = "pool")]
impl backstop::pool::Manager for Connections {
    type Type = u32;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u32, std::io::Error> {
        Ok(7)
    }

    async fn recycle(
        &self,
        _: &mut u32,
        _: &backstop::pool::Metrics,
    ) -> backstop::pool::RecycleResult<std::io::Error> {
        Ok(())
    }
}
