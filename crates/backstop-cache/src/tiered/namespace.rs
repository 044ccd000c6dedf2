//! Which Redis key namespaces are safe: one that could match keys outside itself would
//! let invalidation delete another application's data.

use backstop_core::config::{ConfigError, ensure};

/// Checks a Redis key namespace, reporting `field` when it is refused: not empty (every
/// key of the database would be "in" it), no glob character (a `SCAN … MATCH` would reach
/// keys outside it) and no unbalanced brace (a hash tag would span the namespace and the
/// caller's key). `RedisTierConfig` runs it; configs that hold a namespace for later run
/// it at validation.
///
/// ```
/// use backstop_cache::validate_redis_namespace;
///
/// assert!(validate_redis_namespace("ns", "{app}:cache:").is_ok());
/// assert_eq!(validate_redis_namespace("ns", "").unwrap_err().field(), "ns");
/// assert!(validate_redis_namespace("ns", "app:*").is_err());
/// ```
pub fn validate_redis_namespace(field: &str, namespace: &str) -> Result<(), ConfigError> {
    ensure(
        !namespace.is_empty(),
        field,
        "must not be empty (it is what keeps invalidation inside this cache's keys)",
    )?;
    ensure(
        !namespace.contains(['*', '?', '[', ']', '\\']),
        field,
        "must not contain the glob characters `*`, `?`, `[`, `]` or `\\`",
    )?;
    let mut open = false;
    for c in namespace.chars() {
        match c {
            '{' if open => return Err(ConfigError::new(field, "must not nest `{`")),
            '{' => open = true,
            '}' if !open => return Err(ConfigError::new(field, "has a `}` without `{`")),
            '}' => open = false,
            _ => {}
        }
    }
    ensure(!open, field, "has a `{` without `}`")
}
