//! Series sources for unit tests: one without data, one holding a few series in memory.

use std::time::Duration;

use collabstream_common::{Labels, Sample, SeriesId, TimeRange};
use collabstream_store::{Matcher, SeriesCursor, SeriesData, SeriesRead, VecCursor};

/// An empty source whose reads take the given time (zero for none), to hold query slots.
pub(crate) struct Slow(pub Duration);

impl SeriesRead for Slow {
    fn select<'a>(
        &'a self,
        _: &[Matcher],
        _: TimeRange,
    ) -> collabstream_store::Result<Box<dyn SeriesCursor + 'a>> {
        std::thread::sleep(self.0);
        Ok(Box::new(VecCursor::new(Vec::new())))
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

/// One series for [`Mem::new`]: labels as name-value pairs, samples as (ms, value).
pub(crate) type MemSeries<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

/// Series held in memory; ids follow the order given.
pub(crate) struct Mem(Vec<(Labels, Vec<(i64, f64)>)>);

impl Mem {
    pub fn new(series: &[MemSeries<'_>]) -> Self {
        Self(
            series
                .iter()
                .map(|(labels, points)| (Labels::from_pairs(labels).expect("valid labels"), points.to_vec()))
                .collect(),
        )
    }
}

impl SeriesRead for Mem {
    fn select<'a>(
        &'a self,
        matchers: &[Matcher],
        range: TimeRange,
    ) -> collabstream_store::Result<Box<dyn SeriesCursor + 'a>> {
        let mut out = Vec::new();
        for (i, (labels, points)) in self.0.iter().enumerate() {
            if !matchers.iter().all(|m| m.matches(labels.get(&m.name).unwrap_or(""))) {
                continue;
            }
            let samples: Vec<_> =
                points.iter().filter(|p| range.contains(p.0)).map(|&(t, v)| Sample::new(t, v)).collect();
            if !samples.is_empty() {
                out.push(SeriesData { id: SeriesId(i as u64), labels: labels.clone(), samples });
            }
        }
        Ok(Box::new(VecCursor::new(out)))
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
