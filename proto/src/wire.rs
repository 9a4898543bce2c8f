//! The protobuf wire format, read in place and written by hand, for the hot paths that must
//! not build owned messages: applying log entries ([`crate::log_view`]) and turning
//! remote-write bodies into log writes ([`crate::prompb_view`]).

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed message: {0}")]
pub struct ViewError(pub(crate) &'static str);

pub(crate) const WIRE_VARINT: u8 = 0;
pub(crate) const WIRE_FIXED64: u8 = 1;
pub(crate) const WIRE_LEN: u8 = 2;
pub(crate) const WIRE_FIXED32: u8 = 5;

pub(crate) fn utf8(b: &[u8]) -> Result<&str, ViewError> {
    std::str::from_utf8(b).map_err(|_| ViewError("a string field is not UTF-8"))
}

/// The protobuf wire format, read forward over a slice.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn varint(&mut self) -> Result<u64, ViewError> {
        let mut v = 0u64;
        for (i, b) in self.0.iter().enumerate().take(10) {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(v);
            }
        }
        Err(ViewError("a varint is truncated or too long"))
    }

    /// The next field's number and wire type, or `None` at the end.
    pub(crate) fn key(&mut self) -> Result<Option<(u32, u8)>, ViewError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| ViewError("a field number is out of range"))?;
        if field == 0 {
            return Err(ViewError("field number 0"));
        }
        Ok(Some((field, (k & 7) as u8)))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ViewError> {
        if n > self.0.len() {
            return Err(ViewError("a field runs past the end of its message"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], ViewError> {
        let n = usize::try_from(self.varint()?).map_err(|_| ViewError("a length is out of range"))?;
        self.take(n)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, ViewError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    pub(crate) fn skip(&mut self, wire: u8) -> Result<(), ViewError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            _ => Err(ViewError("an unsupported wire type (groups are not used here)")),
        }
    }
}

/// A `Label { name = 1; value = 2 }` message (the same in our API and in remote write) as
/// borrowed bytes.
pub(crate) fn read_label(buf: &[u8]) -> Result<(&[u8], &[u8]), ViewError> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut l = Reader(buf);
    while let Some((f, w)) = l.key()? {
        match (f, w) {
            (1, WIRE_LEN) => name = l.bytes()?,
            (2, WIRE_LEN) => value = l.bytes()?,
            _ => l.skip(w)?,
        }
    }
    Ok((name, value))
}

/// Appends a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the key of field `field` with wire type `wire`.
pub(crate) fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// Appends a length-delimited field.
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_key(out, field, WIRE_LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a `Label { name = 1; value = 2 }` as field 1 of its series, as prost encodes it
/// (name and value must be non-empty: prost leaves empty strings out).
pub(crate) fn put_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    put_key(out, 1, WIRE_LEN);
    put_varint(out, (bytes_field_len(name.len()) + bytes_field_len(value.len())) as u64);
    put_bytes(out, 1, name);
    put_bytes(out, 2, value);
}

/// The encoded size of a length-delimited field with a one-byte key.
pub(crate) fn bytes_field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_with_their_lengths() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(Reader(&out).varint().unwrap(), v);
        }
    }
}
