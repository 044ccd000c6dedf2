//! The shared shape of configuration errors: which field, which rule.
//!
//! Every Backstop config validates once, when it is built, and reports the first broken
//! rule as a [`ConfigError`] naming the field path and the rule, so a bad file or builder
//! call is a clear typed error rather than a panic deep inside a hot path.
//!
//! ```
//! use backstop_core::config::{ConfigError, Validate, ensure};
//!
//! struct PoolConfig { min_idle: usize, max_size: usize }
//!
//! impl Validate for PoolConfig {
//!     fn validate(&self) -> Result<(), ConfigError> {
//!         ensure(self.max_size > 0, "max_size", "must be at least 1")?;
//!         ensure(self.min_idle <= self.max_size, "min_idle", "must not exceed max_size")
//!     }
//! }
//!
//! let error = PoolConfig { min_idle: 8, max_size: 4 }.validate().unwrap_err();
//! assert_eq!(error.field(), "min_idle");
//! assert_eq!(error.within("pools.llm_primary").to_string(),
//!            "invalid configuration: `pools.llm_primary.min_idle` must not exceed max_size");
//! ```

use std::borrow::Cow;
use std::time::Duration;

/// A configuration value broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{field}` {rule}")]
pub struct ConfigError {
    field: String,
    rule: Cow<'static, str>,
}

impl ConfigError {
    /// `field` broke `rule`; the rule reads as the end of a sentence ("must be at least 1").
    pub fn new(field: impl Into<String>, rule: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// The dotted path of the offending field, such as `cache.l1.capacity`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The rule the field broke.
    pub fn rule(&self) -> &str {
        &self.rule
    }

    /// Prefixes the field path with the section that holds it, for nested configs.
    pub fn within(mut self, section: &str) -> Self {
        if !section.is_empty() {
            self.field = format!("{section}.{}", self.field);
        }
        self
    }
}

/// Returns `Err(ConfigError::new(field, rule))` unless `condition` holds.
pub fn ensure(
    condition: bool,
    field: &str,
    rule: impl Into<Cow<'static, str>>,
) -> Result<(), ConfigError> {
    if condition {
        Ok(())
    } else {
        Err(ConfigError::new(field, rule))
    }
}

/// The longest duration any Backstop config accepts (a TTL, a timeout, a window): one
/// year. Longer values are almost always a unit mistake, and bounding them keeps every
/// deadline computation far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `Err` naming `field` unless `value` is at most [`MAX_DURATION`].
///
/// ```
/// use backstop_core::config::{ensure_duration, MAX_DURATION};
/// use std::time::Duration;
///
/// assert!(ensure_duration("ttl", Duration::from_secs(60)).is_ok());
/// let error = ensure_duration("ttl", MAX_DURATION * 2).unwrap_err();
/// assert_eq!(error.rule(), "must be at most 365d");
/// ```
pub fn ensure_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
    ensure_duration_at_most(field, value, MAX_DURATION)
}

/// `Err` naming `field` unless `value` is greater than zero and at most [`MAX_DURATION`]:
/// the rule of every timeout, interval and window, which a zero would turn off or spin.
///
/// ```
/// use backstop_core::config::ensure_positive_duration;
/// use std::time::Duration;
///
/// assert!(ensure_positive_duration("wait", Duration::from_secs(1)).is_ok());
/// let error = ensure_positive_duration("wait", Duration::ZERO).unwrap_err();
/// assert_eq!(error.rule(), "must be greater than zero");
/// ```
pub fn ensure_positive_duration(field: &str, value: Duration) -> Result<(), ConfigError> {
    ensure_duration(field, value)?;
    ensure(!value.is_zero(), field, "must be greater than zero")
}

/// `Err` naming `field` unless `value` is at most `max`.
pub fn ensure_duration_at_most(
    field: &str,
    value: Duration,
    max: Duration,
) -> Result<(), ConfigError> {
    ensure(
        value <= max,
        field,
        format!("must be at most {}", crate::duration::format(max)),
    )
}

/// `Err` naming `field` unless `value` is at most `max`, the documented upper bound of a
/// size or count (so no allocation is ever proportional to an unbounded setting).
///
/// ```
/// use backstop_core::config::ensure_at_most;
///
/// assert!(ensure_at_most("max_size", 64, 1 << 16).is_ok());
/// assert_eq!(
///     ensure_at_most("max_size", 1 << 40, 1 << 16).unwrap_err().rule(),
///     "must be at most 65536"
/// );
/// ```
pub fn ensure_at_most(field: &str, value: u64, max: u64) -> Result<(), ConfigError> {
    ensure(value <= max, field, format!("must be at most {max}"))
}

/// `Err` naming `field` unless `count` (the length of a list, a capacity, a batch size, a
/// number of samples kept) is at least `min` and at most `max`, its documented bound.
///
/// ```
/// use backstop_core::config::ensure_count;
///
/// assert!(ensure_count("targets", 3, 1, 64).is_ok());
/// assert_eq!(ensure_count("targets", 0, 1, 64).unwrap_err().rule(), "must be at least 1");
/// assert_eq!(ensure_count("targets", 65, 1, 64).unwrap_err().rule(), "must be at most 64");
/// ```
pub fn ensure_count(field: &str, count: usize, min: usize, max: usize) -> Result<(), ConfigError> {
    ensure(count >= min, field, format!("must be at least {min}"))?;
    ensure_at_most(field, count as u64, max as u64)
}

/// A configuration that can check its own rules.
pub trait Validate {
    /// `Ok` when every rule holds, otherwise the first broken one.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Builder setters that each set fields of the builder and return it.
///
/// Invoked inside the `impl` of a builder. The first token says where the fields are:
/// the name of the configuration type when the builder holds it in a field named `config`
/// (the setters write `self.config.field`), or `self` when the fields are the builder's own
/// (a configuration with chained setters, a builder without a separate config). Each entry
/// is one of:
///
/// - `field: Type`: a setter named for the field, setting it to the argument;
/// - `field: Some(Type)`: the field is an `Option` and the setter turns it on;
/// - `name(arg: Type, …) { field = value, … }`: a setter of another name or arguments,
///   setting each listed field to its expression of the arguments.
///
/// With a configuration type named, a `field` entry without doc comments is documented as
/// "See \[`Config::field`\]."; doc comments written on an entry replace that line (and every
/// setter of a `self` builder carries its own). Every setter is `#[must_use]`.
///
/// ```
/// use std::time::Duration;
///
/// #[derive(Debug, Default)]
/// pub struct ServerConfig {
///     /// Most requests served at once.
///     pub max_requests: usize,
///     /// How long a request may take (none by default).
///     pub timeout: Option<Duration>,
/// }
///
/// #[derive(Debug, Default)]
/// pub struct ServerBuilder {
///     config: ServerConfig,
/// }
///
/// impl ServerBuilder {
///     backstop_core::config_setters! {
///         ServerConfig;
///         max_requests: usize,
///         /// Bounds each request; see [`ServerConfig::timeout`].
///         timeout: Some(Duration),
///     }
/// }
///
/// let builder = ServerBuilder::default()
///     .max_requests(64)
///     .timeout(Duration::from_secs(5));
/// assert_eq!(builder.config.max_requests, 64);
/// assert_eq!(builder.config.timeout, Some(Duration::from_secs(5)));
/// ```
///
/// Fields on the builder itself, with a setter of its own shape:
///
/// ```
/// #[derive(Debug, Default)]
/// pub struct Plan {
///     name: String,
///     min: u32,
///     max: u32,
/// }
///
/// impl Plan {
///     backstop_core::config_setters! {
///         self;
///         /// Names the plan.
///         with_name(name: impl Into<String>) { name = name.into() }
///         /// Sets both bounds.
///         with_bounds(min: u32, max: u32) { min = min, max = max }
///     }
/// }
///
/// let plan = Plan::default().with_name("nightly").with_bounds(1, 8);
/// assert_eq!((plan.name.as_str(), plan.min, plan.max), ("nightly", 1, 8));
/// ```
#[macro_export]
macro_rules! config_setters {
    (self; $($entries:tt)*) => {
        $crate::config_setters!(@entry [self]; $($entries)*);
    };
    ($config:ident; $($entries:tt)*) => {
        $crate::config_setters!(@entry [config $config]; $($entries)*);
    };
    (@entry $target:tt;) => {};
    (@entry $target:tt; $(#[$doc:meta])* $field:ident: Some($ty:ty) $(, $($rest:tt)*)?) => {
        $crate::config_setters!(
            @docs $target $field [$(#[$doc])*] $field($field: $ty) { $field = Some($field) }
        );
        $crate::config_setters!(@entry $target; $($($rest)*)?);
    };
    (@entry $target:tt; $(#[$doc:meta])* $field:ident: $ty:ty $(, $($rest:tt)*)?) => {
        $crate::config_setters!(
            @docs $target $field [$(#[$doc])*] $field($field: $ty) { $field = $field }
        );
        $crate::config_setters!(@entry $target; $($($rest)*)?);
    };
    (
        @entry $target:tt;
        $(#[$doc:meta])*
        $name:ident($($arg:ident: $ty:ty),+ $(,)?) { $($field:ident = $value:expr),+ $(,)? }
        $($rest:tt)*
    ) => {
        $crate::config_setters!(
            @setter $target [$(#[$doc])*] $name($($arg: $ty),+) { $($field = $value),+ }
        );
        $crate::config_setters!(@entry $target; $($rest)*);
    };
    (@docs [config $config:ident] $field:ident [] $($setter:tt)*) => {
        $crate::config_setters!(
            @setter [config $config]
            [#[doc = concat!("See [`", stringify!($config), "::", stringify!($field), "`].")]]
            $($setter)*
        );
    };
    (@docs $target:tt $field:ident [$($doc:tt)*] $($setter:tt)*) => {
        $crate::config_setters!(@setter $target [$($doc)*] $($setter)*);
    };
    (
        @setter [config $config:ident] [$(#[$doc:meta])*]
        $name:ident($($arg:ident: $ty:ty),+) { $($field:ident = $value:expr),+ }
    ) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, $($arg: $ty),+) -> Self {
            $(self.config.$field = $value;)+
            self
        }
    };
    (
        @setter [self] [$(#[$doc:meta])*]
        $name:ident($($arg:ident: $ty:ty),+) { $($field:ident = $value:expr),+ }
    ) => {
        $(#[$doc])*
        #[must_use]
        pub fn $name(mut self, $($arg: $ty),+) -> Self {
            $(self.$field = $value;)+
            self
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_builds_a_dotted_path() {
        let error = ConfigError::new("capacity", "must be at least 1")
            .within("l1")
            .within("cache");
        assert_eq!(error.field(), "cache.l1.capacity");
        assert_eq!(error.rule(), "must be at least 1");
        assert_eq!(
            error.to_string(),
            "invalid configuration: `cache.l1.capacity` must be at least 1"
        );
    }

    #[test]
    fn empty_section_leaves_the_path_alone() {
        assert_eq!(ConfigError::new("ttl", "r").within("").field(), "ttl");
    }

    #[test]
    fn ensure_passes_or_names_the_field() {
        assert_eq!(ensure(true, "x", "never"), Ok(()));
        assert_eq!(
            ensure(false, "x", format!("must be below {}", 3)),
            Err(ConfigError::new("x", "must be below 3"))
        );
    }
}
