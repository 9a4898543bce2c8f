//! Encoding of openraft's types (log entries, votes, RPC messages) with bincode.

use serde::Serialize;
use serde::de::DeserializeOwned;

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::error::EncodeError> {
    bincode::serde::encode_to_vec(value, config())
}

/// [`encode`] into a buffer of `capacity` bytes: a log entry is its command plus a few dozen
/// bytes, and a buffer grown by doubling from empty touches fresh pages at every step.
pub fn encode_sized<T: Serialize>(
    value: &T,
    capacity: usize,
) -> Result<Vec<u8>, bincode::error::EncodeError> {
    let mut out = Vec::with_capacity(capacity);
    bincode::serde::encode_into_std_write(value, &mut out, config())?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, config()).map(|(v, _)| v)
}
