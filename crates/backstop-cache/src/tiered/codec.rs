//! How values are stored in byte-oriented tiers: MessagePack, LZ4 above a size threshold.

use serde::{Serialize, de::DeserializeOwned};

use crate::TierError;

const PLAIN: u8 = 0;
const LZ4: u8 = 1;

/// Encodes values as MessagePack and compresses those larger than a threshold with LZ4.
///
/// The first byte of every encoded value says which form follows, so the threshold can
/// change without invalidating what is already stored.
///
/// ```
/// use backstop_cache::ValueCodec;
///
/// let codec = ValueCodec::new().compress_above(64);
/// let answer = "all work and no play ".repeat(20);
/// let bytes = codec.encode(&answer).unwrap();
/// assert!(bytes.len() < answer.len());
/// assert_eq!(codec.decode::<String>(&bytes).unwrap(), answer);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueCodec {
    compress_above: Option<usize>,
}

impl ValueCodec {
    /// MessagePack without compression.
    pub fn new() -> Self {
        Self {
            compress_above: None,
        }
    }

    /// Compresses encoded values longer than `bytes` with LZ4.
    pub fn compress_above(mut self, bytes: usize) -> Self {
        self.compress_above = Some(bytes);
        self
    }

    /// Encodes `value`.
    pub fn encode<V: Serialize + ?Sized>(&self, value: &V) -> Result<Vec<u8>, TierError> {
        let packed = rmp_serde::to_vec(value).map_err(|e| TierError::Codec(e.to_string()))?;
        match self.compress_above {
            Some(threshold) if packed.len() > threshold => {
                let mut out = vec![LZ4];
                out.extend_from_slice(&lz4_flex::compress_prepend_size(&packed));
                Ok(out)
            }
            _ => {
                let mut out = Vec::with_capacity(packed.len() + 1);
                out.push(PLAIN);
                out.extend_from_slice(&packed);
                Ok(out)
            }
        }
    }

    /// Decodes bytes written by [`encode`](Self::encode), whatever its threshold was.
    pub fn decode<V: DeserializeOwned>(&self, bytes: &[u8]) -> Result<V, TierError> {
        let (form, body) = bytes
            .split_first()
            .ok_or_else(|| TierError::Codec("empty value".to_string()))?;
        match *form {
            PLAIN => rmp_serde::from_slice(body).map_err(|e| TierError::Codec(e.to_string())),
            LZ4 => {
                let packed = lz4_flex::decompress_size_prepended(body)
                    .map_err(|e| TierError::Codec(e.to_string()))?;
                rmp_serde::from_slice(&packed).map_err(|e| TierError::Codec(e.to_string()))
            }
            other => Err(TierError::Codec(format!("unknown value form {other}"))),
        }
    }
}

impl Default for ValueCodec {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_stay_plain_and_large_ones_compress() {
        let codec = ValueCodec::new().compress_above(32);
        let small = codec.encode("hi").unwrap();
        assert_eq!(small[0], PLAIN);
        let large = codec.encode(&"x".repeat(1000)).unwrap();
        assert_eq!(large[0], LZ4);
        assert!(large.len() < 100);
        assert_eq!(codec.decode::<String>(&large).unwrap(), "x".repeat(1000));
    }

    #[test]
    fn a_codec_reads_what_another_threshold_wrote() {
        let writer = ValueCodec::new().compress_above(0);
        let reader = ValueCodec::new();
        let bytes = writer.encode(&vec![1u32, 2, 3]).unwrap();
        assert_eq!(reader.decode::<Vec<u32>>(&bytes).unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn corrupt_bytes_are_an_error_not_a_panic() {
        let codec = ValueCodec::new();
        assert!(matches!(
            codec.decode::<String>(&[]),
            Err(TierError::Codec(_))
        ));
        assert!(matches!(
            codec.decode::<String>(&[9, 1]),
            Err(TierError::Codec(_))
        ));
        assert!(matches!(
            codec.decode::<String>(&[LZ4, 255, 255, 255, 127, 0]),
            Err(TierError::Codec(_))
        ));
        assert!(matches!(
            codec.decode::<u64>(&[PLAIN, 0xc1]),
            Err(TierError::Codec(_))
        ));
    }
}
