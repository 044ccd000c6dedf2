//! Any text either fails to parse or parses to a duration whose formatting parses back
//! to the same value; nothing panics.
#![no_main]

use backstop_core::duration::{format, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(duration) = parse(text) {
        assert_eq!(parse(&format(duration)), Ok(duration));
    }
});
