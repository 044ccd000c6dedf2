//! [`assert_fields!`]: several named fields of one value checked at once.

/// Asserts named fields of one value (a stats snapshot, usually) against expected values,
/// and on failure names every field that differs, with its value and the expected one,
/// instead of printing two anonymous tuples.
///
/// ```
/// #[derive(Debug)]
/// struct Stats { hits: u64, misses: u64 }
///
/// let stats = Stats { hits: 3, misses: 1 };
/// backstop_testkit::assert_fields!(stats, hits: 3, misses: 1);
/// // With a message after a `;`, as `assert!` takes one.
/// backstop_testkit::assert_fields!(stats, hits: 3; "after {} calls", 4);
/// ```
#[macro_export]
macro_rules! assert_fields {
    ($value:expr, $($field:ident: $expected:expr),+ $(,)?) => {
        $crate::assert_fields!($value, $($field: $expected),+; "")
    };
    ($value:expr, $($field:ident: $expected:expr),+ $(,)?; $($message:tt)+) => {{
        let value = &$value;
        let mut differ: Vec<String> = Vec::new();
        $(
            let expected = $expected;
            if value.$field != expected {
                differ.push(format!(
                    "`{}` is {:?}, expected {:?}",
                    stringify!($field),
                    value.$field,
                    expected
                ));
            }
        )+
        assert!(
            differ.is_empty(),
            "{}: {} {}",
            stringify!($value),
            differ.join("; "),
            format_args!($($message)+)
        );
    }};
}
