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

/// What a query engine needs from storage.
pub trait SeriesRead: Send + Sync {
    /// Series matching every matcher with their samples in `range`, sorted by labels. Fails
    /// with [`Error::TooManySamples`](crate::Error::TooManySamples) as soon as more than
    /// `max_samples` would be returned, so a wide selector never loads everything first.
    fn select(&self, matchers: &[Matcher], range: TimeRange, max_samples: usize) -> Result<Vec<SeriesData>>;
    /// Label sets of the series matching every matcher with samples in `range`, sorted.
    /// Listings may count a series whose samples are near the range but not in it (block
    /// granularity, as Prometheus's); `TimeRange::ALL` lists every series.
    fn series(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<Labels>>;
    fn label_names(&self, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>>;
    fn label_values(&self, name: &str, matchers: &[Matcher], range: TimeRange) -> Result<Vec<String>>;
}

impl SeriesRead for crate::Store {
    fn select(&self, matchers: &[Matcher], range: TimeRange, max_samples: usize) -> Result<Vec<SeriesData>> {
        crate::Store::select_limited(self, matchers, range, max_samples)
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
