//! The last few samples of a series, as the forecasters, the forecast error and the burst hold
//! keep them.

use std::collections::VecDeque;

/// Appends `value` to `samples`, dropping the oldest once `keep` are held, so the memory of a
/// running policy stays bounded by its setting (`keep` is at least 1).
pub(crate) fn push_recent<T>(samples: &mut VecDeque<T>, keep: usize, value: T) {
    if samples.len() >= keep {
        samples.pop_front();
    }
    samples.push_back(value);
}
