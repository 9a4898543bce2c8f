//! The read side as a trait, so the query engine sees hot (RocksDB) and cold (Parquet) series
//! through one interface. The store implements it; tiering will too; the server merges them.

use collabstream_common::{Labels, Sample, SeriesId, TimeRange};

use crate::error::Result;
use crate::matcher::Matcher;

/// One series and its samples in a time range, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesData {
    pub id: SeriesId,
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

impl SeriesData {
    pub(crate) fn new(id: SeriesId, labels: Labels, samples: Vec<(i64, f64)>) -> Self {
        let samples = samples.into_iter().map(|(t, v)| Sample::new(t, v)).collect();
        Self { id, labels, samples }
    }
}

/// Raw events, for export and SQL.
pub trait EventRead: Send + Sync {
    /// Events with event time in `range`, oldest first, at most `limit`.
    fn events(&self, range: TimeRange, limit: usize) -> Result<Vec<collabstream_proto::v1::Event>>;
}

impl EventRead for crate::Store {
    fn events(&self, range: TimeRange, limit: usize) -> Result<Vec<collabstream_proto::v1::Event>> {
        crate::Store::events(self, range, limit)
    }
}

/// Selected series, streamed in ascending id order (ids are assigned in creation order by
/// every replica alike, so hot and cold sources stream in the same order and merge without
/// sorting). A series comes as one or more consecutive parts, each oldest first and each later
/// than the one before; a series with no samples in the range does not come at all.
pub trait SeriesCursor: Send {
    fn next_part(&mut self) -> Result<Option<SeriesData>>;
}

/// A cursor over parts already in memory (in the order given), for sources that hold them.
#[derive(Debug)]
pub struct VecCursor(std::vec::IntoIter<SeriesData>);

impl VecCursor {
    /// `parts` must be in the order a cursor streams: ascending id, each series' parts in time
    /// order.
    pub fn new(parts: Vec<SeriesData>) -> Self {
        Self(parts.into_iter())
    }
}

impl SeriesCursor for VecCursor {
    fn next_part(&mut self) -> Result<Option<SeriesData>> {
        Ok(self.0.find(|p| !p.samples.is_empty()))
    }
}

/// Every series of `cursor`, its parts joined, in the cursor's order.
pub fn whole_series(cursor: &mut dyn SeriesCursor) -> Result<Vec<SeriesData>> {
    let mut out: Vec<SeriesData> = Vec::new();
    while let Some(part) = cursor.next_part()? {
        match out.last_mut() {
            Some(last) if last.id == part.id => last.samples.extend(part.samples),
            _ => out.push(part),
        }
    }
    Ok(out)
}

/// What a query engine needs from storage: the one way PromQL, export and the series and
/// label APIs read, hot or cold.
pub trait SeriesRead: Send + Sync {
    /// Series matching every matcher with samples in `range`, streamed (see [`SeriesCursor`]).
    /// Sources prune by the matchers and by time; readers bound what they hold as parts come.
    fn select<'a>(&'a self, matchers: &[Matcher], range: TimeRange) -> Result<Box<dyn SeriesCursor + 'a>>;
    /// Label sets of the series matching every matcher with samples in `range`, sorted.
    /// Listings may count a series whose samples are near the range but not in it (block
    /// granularity, as Prometheus's); `TimeRange::ALL` lists every series.
    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>>;
    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>>;
    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>>;
}

impl SeriesRead for crate::Store {
    fn select<'a>(&'a self, matchers: &[Matcher], range: TimeRange) -> Result<Box<dyn SeriesCursor + 'a>> {
        Ok(Box::new(crate::Store::cursor(self, matchers, range)))
    }

    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>> {
        crate::Store::series(self, matchers, range)
    }

    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        crate::Store::label_names(self, matchers, range)
    }

    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>> {
        crate::Store::label_values(self, name, matchers, range)
    }
}
