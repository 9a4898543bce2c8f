//! The durable form of a label set in the `series` column family.

use collabstream_common::{Label, Labels};

use crate::error::{Error, Result};
use crate::varint::{Reader, put_u64};

pub(crate) fn encode<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_u64(&mut out, pairs.len() as u64);
    for (n, v) in pairs {
        put_u64(&mut out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        put_u64(&mut out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Labels> {
    let corrupt = || Error::Corrupt { what: "series" };
    let mut r = Reader::new(bytes);
    let n = r.u64().ok_or_else(corrupt)? as usize;
    if n > bytes.len() {
        return Err(corrupt());
    }
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let name = string(&mut r).ok_or_else(corrupt)?;
        let value = string(&mut r).ok_or_else(corrupt)?;
        labels.push(Label { name, value });
    }
    Ok(Labels::from_sorted_unchecked(labels))
}

fn string(r: &mut Reader<'_>) -> Option<String> {
    let len = r.u64()? as usize;
    String::from_utf8(r.bytes(len)?.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let l = Labels::from_pairs(&[("__name__", "up"), ("job", "ü")]).unwrap();
        let bytes = encode(l.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        assert_eq!(decode(&bytes).unwrap(), l);
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
    }
}
