//! Keys that stay correct in a Redis Cluster.
//!
//! Redis Cluster hashes only the part of a key between the first `{` and the next `}`
//! (the hash tag) when there is one, and a script or `MGET` may touch only keys of one
//! slot. Backstop puts every key of one script under the same tag, derived from the
//! user's key by [`hash_tag`]: an escaped form no key can break. A user key holding a
//! brace, an empty key or a non-printable byte would otherwise end the tag early, leave
//! it empty (Redis then hashes the whole key, so the keys of one script land in different
//! slots: `CROSSSLOT`) or produce a key another user key also produces.

use std::borrow::Cow;

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// The hash tag for `key`: the key itself when it is non-empty and every byte is printable
/// ASCII other than `{`, `}` and `%`; otherwise `%XX` escapes for those bytes, and `%` for
/// the empty key.
///
/// The mapping is injective (two different keys never share a tag) and the tag is never
/// empty and never holds a brace, so `prefix:{tag}:suffix` keys of one user key always
/// share one slot.
///
/// ```
/// use backstop_redis::key::hash_tag;
///
/// assert_eq!(hash_tag("user-42"), "user-42");
/// assert_eq!(hash_tag("a}b"), "a%7Db");
/// assert_eq!(hash_tag(""), "%");
/// assert_eq!(hash_tag("100%"), "100%25");
/// ```
pub fn hash_tag(key: &str) -> Cow<'_, str> {
    hash_tag_bytes(key.as_bytes())
}

/// [`hash_tag`] for a binary key; bytes outside printable ASCII are `%XX`-escaped.
pub fn hash_tag_bytes(key: &[u8]) -> Cow<'_, str> {
    if key.is_empty() {
        return Cow::Borrowed("%");
    }
    if key.iter().all(|&b| plain(b)) {
        // Every byte is printable ASCII, so this is valid UTF-8.
        return match std::str::from_utf8(key) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => Cow::Owned(escape(key)),
        };
    }
    Cow::Owned(escape(key))
}

fn plain(byte: u8) -> bool {
    byte.is_ascii_graphic() && !matches!(byte, b'{' | b'}' | b'%')
}

fn escape(key: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(key.len() + 8);
    for &byte in key {
        if plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    out
}

/// `prefix:{tag}:suffix`, the layout of every multi-key script's keys: all keys made for
/// one `key` share its [`hash_tag`] and so one cluster slot.
///
/// ```
/// use backstop_redis::key::{slot, tagged};
///
/// let lease = tagged("dedup", "job {7}", "lease");
/// let result = tagged("dedup", "job {7}", "result");
/// assert_eq!(lease, "dedup:{job%20%7B7%7D}:lease");
/// assert_eq!(slot(lease.as_bytes()), slot(result.as_bytes()));
/// ```
pub fn tagged(prefix: &str, key: &str, suffix: &str) -> String {
    let tag = hash_tag(key);
    let mut out = String::with_capacity(prefix.len() + tag.len() + suffix.len() + 4);
    out.push_str(prefix);
    out.push_str(":{");
    out.push_str(&tag);
    out.push_str("}:");
    out.push_str(suffix);
    out
}

/// The cluster slot of a full Redis key, with Redis's hash-tag rule (CRC16/XMODEM of the
/// tag, or of the whole key when it has no non-empty tag, modulo [`SLOTS`]).
///
/// ```
/// use backstop_redis::key::slot;
///
/// assert_eq!(slot(b"foo"), 12_182); // CLUSTER KEYSLOT foo
/// assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
/// ```
pub fn slot(key: &[u8]) -> u16 {
    crc16(tag_of(key).unwrap_or(key)) % SLOTS
}

fn tag_of(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let close = key[open + 1..].iter().position(|&b| b == b'}')?;
    (close > 0).then(|| &key[open + 1..open + 1 + close])
}

fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// Whether `text` is safe as the fixed part of a key ahead of a hash tag: no braces (they
/// would move the tag off the user key) and no `SCAN … MATCH` glob characters.
pub fn is_safe_prefix(text: &str) -> bool {
    !text.contains(['{', '}', '*', '?', '[', ']', '\\'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        assert_eq!(slot(b"foo"), 12_182);
        assert_eq!(slot(b"bar"), 5_061);
        assert_eq!(slot(b"{foo}bar"), 12_182);
        assert_eq!(slot(b"{}foo"), slot(b"{}foo"));
        assert_eq!(slot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % SLOTS);
        assert_eq!(slot(b"foo{{bar}}zap"), crc16(b"{bar") % SLOTS);
    }

    #[test]
    fn hostile_keys_keep_one_slot() {
        for key in [
            "", "}", "{", "}{", "{}", "a}b{c", "%", "%7D", "\u{0}", "é", " ",
        ] {
            let first = tagged("p", key, "0");
            let second = tagged("p", key, "1");
            assert_eq!(
                slot(first.as_bytes()),
                slot(second.as_bytes()),
                "{key:?}: {first} / {second}"
            );
            assert_eq!(tag_of(first.as_bytes()), Some(hash_tag(key).as_bytes()));
        }
    }

    proptest! {
        #[test]
        fn tags_are_injective_and_brace_free(a in proptest::collection::vec(any::<u8>(), 0..12),
                                             b in proptest::collection::vec(any::<u8>(), 0..12)) {
            let (ta, tb) = (hash_tag_bytes(&a), hash_tag_bytes(&b));
            prop_assert!(!ta.is_empty());
            let braces = ['{', '}'];
            prop_assert!(!ta.contains(braces));
            prop_assert_eq!(ta == tb, a == b);
        }

        #[test]
        fn every_key_of_one_user_key_shares_a_slot(key in ".*", s1 in "[a-z0-9]{0,6}", s2 in "[a-z0-9]{0,6}") {
            let first = tagged("app:limit", &key, &s1);
            let second = tagged("app:limit", &key, &s2);
            prop_assert_eq!(slot(first.as_bytes()), slot(second.as_bytes()));
        }
    }
}
