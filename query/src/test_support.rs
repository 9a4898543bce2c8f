//! A series source for unit tests that need no data.

use std::time::Duration;

use collabstream_common::{Labels, TimeRange};
use collabstream_store::{Matcher, SeriesData, SeriesRead};

/// An empty source whose reads take the given time (zero for none), to hold query slots.
pub(crate) struct Slow(pub Duration);

impl SeriesRead for Slow {
    fn select(&self, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<SeriesData>> {
        std::thread::sleep(self.0);
        Ok(Vec::new())
    }
    fn series(&self, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<Labels>> {
        Ok(Vec::new())
    }
    fn label_names(&self, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<String>> {
        Ok(Vec::new())
    }
    fn label_values(&self, _: &str, _: &[Matcher], _: TimeRange) -> collabstream_store::Result<Vec<String>> {
        Ok(Vec::new())
    }
}
