//! [`merge_cursors`]: several sources' cursors seen as one (the cold tier's files and the hot
//! store). Every source streams in id order, so the merge is a k-way merge by id that never
//! sorts; a series present in more than one source is merged by timestamp, the later source
//! winning at equal timestamps (list the hot store last: it holds the newest word on a sample).

use collabstream_common::{Labels, Sample};

use crate::error::Result;
use crate::head::merge_sorted;
use crate::read::{SeriesCursor, SeriesData};

/// The cursors of several sources (oldest tier first) as one.
pub fn merge_cursors<'a>(mut cursors: Vec<Box<dyn SeriesCursor + 'a>>) -> Result<Box<dyn SeriesCursor + 'a>> {
    if cursors.len() == 1 {
        return Ok(cursors.remove(0));
    }
    let next = cursors.iter_mut().map(|c| c.next_part()).collect::<Result<Vec<_>>>()?;
    Ok(Box::new(MergedCursor { cursors, next }))
}

struct MergedCursor<'a> {
    cursors: Vec<Box<dyn SeriesCursor + 'a>>,
    /// Each cursor's next part, read ahead.
    next: Vec<Option<SeriesData>>,
}

impl MergedCursor<'_> {
    fn advance(&mut self, i: usize) -> Result<Option<SeriesData>> {
        let part = self.cursors[i].next_part()?;
        Ok(std::mem::replace(&mut self.next[i], part))
    }
}

impl SeriesCursor for MergedCursor<'_> {
    fn next_part(&mut self) -> Result<Option<SeriesData>> {
        let Some(id) = self.next.iter().flatten().map(|p| p.id).min() else { return Ok(None) };
        let holding: Vec<usize> =
            (0..self.next.len()).filter(|&i| self.next[i].as_ref().is_some_and(|p| p.id == id)).collect();
        if let [only] = holding[..] {
            return self.advance(only);
        }
        // In several sources: all of its parts, merged by time (one part; a series held by two
        // tiers at once is the rare case of a block being moved).
        let mut labels: Option<Labels> = None;
        let mut merged: Vec<Sample> = Vec::new();
        for i in holding {
            let mut samples = Vec::new();
            while self.next[i].as_ref().is_some_and(|p| p.id == id) {
                let part = self.advance(i)?.expect("a part was read ahead");
                labels.get_or_insert(part.labels);
                samples.extend(part.samples);
            }
            merged = merge_sorted(&merged, &samples);
        }
        Ok(Some(SeriesData { id, labels: labels.expect("one part at least"), samples: merged }))
    }
}

#[cfg(test)]
mod tests {
    use collabstream_common::{SeriesId, TimeRange};

    use super::*;
    use crate::read::{VecCursor, whole_series};

    /// A source's cursor over parts in memory (in cursor order), kept to `range`.
    fn source(parts: &[SeriesData], range: TimeRange) -> Box<dyn SeriesCursor> {
        let parts = parts
            .iter()
            .map(|p| SeriesData {
                samples: p.samples.iter().copied().filter(|s| range.contains(s.timestamp_ms)).collect(),
                ..p.clone()
            })
            .collect();
        Box::new(VecCursor::new(parts))
    }

    fn part(id: u64, samples: &[(i64, f64)]) -> SeriesData {
        let labels = Labels::from_pairs(&[("__name__", &format!("m{id}"))]).unwrap();
        SeriesData {
            id: SeriesId(id),
            labels,
            samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
        }
    }

    fn got(cold: &[SeriesData], hot: &[SeriesData], range: TimeRange) -> Vec<(u64, Vec<(i64, f64)>)> {
        let mut cursor = merge_cursors(vec![source(cold, range), source(hot, range)]).unwrap();
        let mut parts = Vec::new();
        while let Some(p) = cursor.next_part().unwrap() {
            parts.push(p);
        }
        let ids: Vec<_> = parts.iter().map(|p| p.id).collect();
        assert!(ids.windows(2).all(|w| w[0] <= w[1]), "ids in order: {ids:?}");
        whole_series(&mut VecCursor::new(parts))
            .unwrap()
            .into_iter()
            .map(|s| (s.id.0, s.samples.iter().map(|x| (x.timestamp_ms, x.value)).collect()))
            .collect()
    }

    #[test]
    fn sources_merge_by_id_and_by_time_the_later_source_winning() {
        // Cold: series 1 and 3 (3 in two parts), series 4 only cold. Hot: 1 (later samples and
        // one repeated timestamp with a newer value), 2 only hot, 3 overlapping.
        let cold = [
            part(1, &[(10, 1.0), (20, 2.0)]),
            part(3, &[(10, 3.0)]),
            part(3, &[(20, 3.5)]),
            part(4, &[(5, 4.0)]),
        ];
        let hot = [part(1, &[(20, 2.5), (30, 3.0)]), part(2, &[(15, 2.0)]), part(3, &[(15, 3.2), (25, 3.7)])];
        assert_eq!(
            got(&cold, &hot, TimeRange::ALL),
            vec![
                (1, vec![(10, 1.0), (20, 2.5), (30, 3.0)]),
                (2, vec![(15, 2.0)]),
                (3, vec![(10, 3.0), (15, 3.2), (20, 3.5), (25, 3.7)]),
                (4, vec![(5, 4.0)]),
            ]
        );
        // A range that leaves a source without samples of a series.
        assert_eq!(
            got(&cold, &hot, TimeRange::new(25, 40)),
            vec![(1, vec![(30, 3.0)]), (3, vec![(25, 3.7)])]
        );
    }
}
