//! [`export_samples`] and [`export_events`]: one block of the hot store's samples as a
//! [`SamplesFile`] or its events as an [`EventsFile`], and where in the object store it belongs.

use collabstream_common::{METRIC_NAME, TimeRange};
use collabstream_store::{Matcher, SeriesRead, Store};

use crate::events_file::EventsFile;
use crate::samples_file::{FileSummary, SamplesFile};
use crate::series_index::SeriesIndex;

/// The samples of `range` (one block) in file order: metrics ascending, read metric by metric
/// through the seam so that no more than a part of a series is held besides the writer's
/// batch. `None` when the block holds no samples.
pub fn export_samples(
    source: &dyn SeriesRead,
    range: TimeRange,
) -> Result<Option<(Vec<u8>, FileSummary, SeriesIndex)>, String> {
    let metrics = source.label_values(METRIC_NAME, &[], range).map_err(|e| e.to_string())?;
    let mut file = SamplesFile::new()?;
    for metric in metrics {
        let mut cursor =
            source.select(&[Matcher::equal(METRIC_NAME, &metric)], range).map_err(|e| e.to_string())?;
        while let Some(part) = cursor.next_part().map_err(|e| e.to_string())? {
            file.append(part.id, &part.labels, &part.samples)?;
        }
    }
    file.finish()
}

/// The hot store's events of `range` (one block) as an [`EventsFile`], in time order, a row
/// group's worth held at a time besides the file. `None` when the block holds no events.
pub fn export_events(store: &Store, range: TimeRange) -> Result<Option<(Vec<u8>, FileSummary)>, String> {
    let mut file = EventsFile::new()?;
    let mut failed = None;
    store
        .scan_hot_events(range, |e| match file.append(e) {
            Ok(()) => true,
            Err(why) => {
                failed = Some(why);
                false
            }
        })
        .map_err(|e| e.to_string())?;
    if let Some(why) = failed {
        return Err(why);
    }
    file.finish()
}

/// Where the [`SeriesIndex`] of the object named `object` (by [`object_name`]) goes:
/// `index/<table>/…/<block start ms>-<token>-<checksum>.idx`, apart from the table's files,
/// which engines read every file of a partition of.
pub fn index_name(object: &str) -> String {
    format!("index/{}.idx", object.strip_suffix(".parquet").unwrap_or(object))
}

/// `samples/date=YYYY-MM-DD/hour=HH/<block start ms>-<token>-<checksum>.parquet`: Hive-style
/// partitions of the block's start (UTC); the cluster's object token (`ColdView::object_token`,
/// left out when empty), so that a cluster tells its own objects from another's under the same
/// prefix; and a name that differs whenever the content does, so that a retried upload of the
/// same block overwrites nothing another attempt committed.
pub fn object_name(table: &str, block_start_ms: i64, token: &str, checksum: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(block_start_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let token = if token.is_empty() { String::new() } else { format!("{token}-") };
    format!(
        "{table}/date={:04}-{:02}-{:02}/hour={:02}/{block_start_ms}-{token}{checksum:016x}.parquet",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour()
    )
}

/// The object token in a name made by [`object_name`] (or [`index_name`]); `None` for a name
/// without one (written before tokens, or not by us).
pub fn object_token(path: &str) -> Option<&str> {
    let name = path.rsplit('/').next()?;
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let mut parts = stem.rsplitn(3, '-');
    let (_checksum, token, _start) = (parts.next()?, parts.next()?, parts.next()?);
    (token.len() == 8 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_named_by_the_hour_their_block_starts_in() {
        // 2024-11-28T08:00:00Z
        let name = object_name("samples", 1_732_780_800_000, "0badcafe", 0xab);
        assert_eq!(name, "samples/date=2024-11-28/hour=08/1732780800000-0badcafe-00000000000000ab.parquet");
        assert_eq!(
            index_name(&name),
            "index/samples/date=2024-11-28/hour=08/1732780800000-0badcafe-00000000000000ab.idx"
        );
        assert_eq!(object_token(&name), Some("0badcafe"));
        assert_eq!(object_token(&index_name(&name)), Some("0badcafe"));
        let untokened = object_name("samples", 1_732_780_800_000, "", 0xab);
        assert_eq!(untokened, "samples/date=2024-11-28/hour=08/1732780800000-00000000000000ab.parquet");
        assert_eq!(object_token(&untokened), None);
        assert_eq!(object_token("samples/date=2024-11-28/hour=08/other.parquet"), None);
        assert_eq!(object_token("samples/x/1-NOTAHEX!-ab.parquet"), None);
    }
}
