//! Cold blocks read back for the series the store's index resolves answer exactly as the hot
//! store did before they moved: the same series, in the same (id) order, with the same samples, for every kind of
//! matcher and for ranges inside one block, across two and past the data.

mod common;

use collabstream_common::TimeRange;
use std::sync::Arc;

use collabstream_store::{
    Error, MatchOp, Matcher, SeriesData, SeriesRead, Store, VecCursor, merge_cursors, whole_series,
};
use collabstream_tiering::{ColdFile, ColdRead, ObjectStoreConfig, Objects, sorted};
use common::{BLOCK, HOUR, store_of_2000, store_with_three_hours, tier_blocks, upload};

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).expect("matcher")
}

/// What `files` hold of the series `sel` selects in `range`, by the ids the store's index
/// resolves (the path a node takes).
fn read(
    cold: &ColdRead,
    files: &Files,
    store: &Store,
    sel: &[Matcher],
    range: TimeRange,
) -> Result<Vec<SeriesData>, Error> {
    cold.with_files(files.clone()).select_known(&store.series_labels(sel), range)
}

type Files = Arc<Vec<ColdFile>>;

#[test]
fn cold_blocks_answer_like_the_hot_store() {
    cold_blocks_answer_like_the_hot_store_with(true);
}

#[test]
fn cold_blocks_without_an_index_answer_like_the_hot_store() {
    cold_blocks_answer_like_the_hot_store_with(false);
}

fn cold_blocks_answer_like_the_hot_store_with(with_index: bool) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_three_hours(&dir.path().join("store"));
    let config = ObjectStoreConfig {
        url: format!("file://{}", dir.path().join("objects").display()),
        ..Default::default()
    };
    let objects = Objects::open(&config, dir.path()).expect("objects");
    let everything = TimeRange::new(BLOCK - 2 * HOUR, BLOCK + 4 * HOUR);
    let files = sorted(runtime.block_on(tier_blocks(&store, &objects, everything, with_index)));
    assert_eq!(files.len(), 3, "half an hour, a whole block, half an hour");
    let cold = ColdRead::new(objects.clone(), runtime.handle().clone(), 1_000_000);

    let selectors = [
        vec![],
        vec![Matcher::equal("__name__", "node_load1")],
        vec![m(MatchOp::Regex, "__name__", "node_.*|up")],
        vec![
            Matcher::equal("__name__", "http_requests_total"),
            m(MatchOp::Regex, "instance", "host-[13]:.*"),
        ],
        vec![m(MatchOp::NotEqual, "instance", "host-0:9100")],
        vec![m(MatchOp::NotRegex, "__name__", "up")],
        vec![Matcher::equal("__name__", "no_such_metric")],
        vec![Matcher::equal("job", "other")],
    ];
    let ranges = [
        everything,
        TimeRange::new(BLOCK - HOUR / 2, BLOCK - 1), // the first file only
        TimeRange::new(BLOCK + 10 * 60_000, BLOCK + 70 * 60_000), // inside the second
        TimeRange::new(BLOCK - 60_000, BLOCK + 60_000), // across the boundary
        TimeRange::new(BLOCK + 3 * HOUR, BLOCK + 5 * HOUR), // past the data
        TimeRange::new(BLOCK + 60_000, BLOCK),       // empty
    ];
    let mut compared = 0;
    for sel in &selectors {
        for &range in &ranges {
            let hot =
                bits(whole_series(&mut *SeriesRead::select(&store, sel, range).expect("hot")).expect("hot"));
            let got = bits(read(&cold, &files, &store, sel, range).expect("cold"));
            assert!(got == hot, "{sel:?} over {range:?}: {} series cold, {} hot", got.len(), hot.len());
            compared += usize::from(!hot.is_empty());
            // Listings are exact to the file here, to the block in the hot store (and only
            // for stored chunks): they agree where the range holds data.
            if !hot.is_empty() {
                let listed = cold.with_files(files.clone()).list_known(&store.series_labels(sel), range);
                assert_eq!(listed.expect("listing"), store.series(sel, range).expect("series"), "{sel:?}");
            }
        }
    }
    assert!(compared >= 20, "only {compared} non-empty comparisons");
    // Each file's footer (and index) was fetched once, then served from the cache.
    let (hits, misses) = cold.footer_cache();
    assert_eq!(misses, 3);
    // Through indexes, a series read again comes decoded from the cache, its file not opened.
    assert!(if with_index { cold.decoded_cache().0 > 20 } else { hits > 20 }, "{hits} footer hits");
    let (index_hits, index_misses) = cold.index_cache();
    assert_eq!(index_misses, if with_index { 3 } else { 0 });
    assert!(!with_index || index_hits > 50, "{index_hits} index hits");

    // Files outside the range, or without the metric, are not even opened.
    let pruned = ColdRead::new(objects.clone(), runtime.handle().clone(), 1_000_000);
    let one_file = TimeRange::new(BLOCK - HOUR / 2, BLOCK - 1);
    assert!(!read(&pruned, &files, &store, &[], one_file).expect("read").is_empty());
    assert_eq!(pruned.footer_cache(), (0, 1));
    let no_metric = [Matcher::equal("__name__", "no_such_metric")];
    assert!(read(&pruned, &files, &store, &no_metric, everything).expect("read").is_empty());
    assert_eq!(pruned.footer_cache(), (0, 1));

    // A block listed twice (a manifest that went wrong) still reads as the hot store does.
    let mut twice = files.as_ref().clone();
    twice.push(files[1].clone());
    let twice = sorted(twice);
    let hot =
        bits(whole_series(&mut *SeriesRead::select(&store, &[], everything).expect("hot")).expect("hot"));
    assert!(bits(read(&cold, &twice, &store, &[], everything).expect("read")) == hot, "a block listed twice");

    // A selection larger than the bound fails as a hot one would, instead of holding it all.
    let small = ColdRead::new(objects.clone(), runtime.handle().clone(), 100);
    let err = read(&small, &files, &store, &[], everything).map(|_| ()).expect_err("over the bound");
    assert!(matches!(err, Error::TooManySamples { limit: 100 }), "{err}");

    // What was read is served from the caches (a second read of the same files fetches
    // nothing): through an index, the series decoded (a read of a few series keeps them);
    // without, the pages.
    let (page_hits, page_misses) = cold.range_cache();
    let (decoded_hits, _) = cold.decoded_cache();
    assert!(bits(read(&cold, &files, &store, &[], everything).expect("read")) == hot);
    if with_index {
        assert_eq!(cold.decoded_cache().0, decoded_hits + 3 * 9, "9 series in each of 3 files");
    } else {
        assert!(cold.range_cache().0 > page_hits);
        assert_eq!(cold.decoded_cache(), (0, 0), "no index, no decoded series");
    }
    assert_eq!(cold.range_cache().1, page_misses, "nothing fetched again");
    // ...and a file gone from the store, read by a node that has not cached it: an error that
    // says which, and that a retry may help.
    let first = files[0].path.clone();
    std::fs::remove_file(dir.path().join("objects").join(&first)).expect("remove");
    let fresh = ColdRead::new(objects.clone(), runtime.handle().clone(), 1_000_000);
    let err = read(&fresh, &files, &store, &[], everything).map(|_| ()).expect_err("unreadable");
    assert!(matches!(&err, Error::Unavailable(why) if why.contains(&first)), "{err}");
    assert_eq!(err.code(), collabstream_common::ErrorCode::Unavailable);
}

/// A series as (id, labels, samples with values as bits), so that stale markers (NaN) compare
/// equal.
type Exact = (u64, String, Vec<(i64, u64)>);

fn bits(series: Vec<SeriesData>) -> Vec<Exact> {
    series
        .into_iter()
        .map(|s| {
            let samples = s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect();
            (s.id.0, format!("{:?}", s.labels), samples)
        })
        .collect()
}

/// Hot and cold merged (cold first): while a block is in both tiers (between its upload and
/// the hot copy's removal) a query sees every sample once.
#[test]
fn a_block_in_both_tiers_is_seen_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_three_hours(&dir.path().join("store"));
    let config = ObjectStoreConfig {
        url: format!("file://{}", dir.path().join("objects").display()),
        ..Default::default()
    };
    let objects = Objects::open(&config, dir.path()).expect("objects");
    let everything = TimeRange::new(BLOCK - 2 * HOUR, BLOCK + 4 * HOUR);
    let cold = ColdRead::new(objects.clone(), runtime.handle().clone(), 1_000_000);
    // Only the block after the boundary moves.
    let files =
        sorted(runtime.block_on(tier_blocks(&store, &objects, TimeRange::new(BLOCK, BLOCK + 1), true)));
    for sel in [vec![], vec![Matcher::equal("__name__", "up")]] {
        for range in [everything, TimeRange::new(BLOCK - 60_000, BLOCK + 60_000)] {
            let hot =
                bits(whole_series(&mut *SeriesRead::select(&store, &sel, range).expect("hot")).expect("hot"));
            let cold_part = VecCursor::new(read(&cold, &files, &store, &sel, range).expect("cold"));
            let hot_part = SeriesRead::select(&store, &sel, range).expect("hot");
            let mut merged = merge_cursors(vec![Box::new(cold_part), hot_part]).expect("merge");
            let both = bits(whole_series(&mut *merged).expect("merged"));
            assert!(both == hot, "{sel:?} over {range:?}");
        }
    }
}

/// A block of 2,000 series (about a dozen pages per column): series read by id come back whole
/// from the pages the page index picks, for one series, a few spread out, and all.
#[test]
fn series_read_by_id_skip_pages_and_lose_nothing() {
    for with_index in [true, false] {
        series_read_by_id_skip_pages_and_lose_nothing_with(with_index);
    }
}

fn series_read_by_id_skip_pages_and_lose_nothing_with(with_index: bool) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_of_2000(&dir.path().join("store"), |_| "m");
    let config = ObjectStoreConfig {
        url: format!("file://{}", dir.path().join("objects").display()),
        ..Default::default()
    };
    let objects = Objects::open(&config, dir.path()).expect("objects");
    let block = TimeRange::new(BLOCK, BLOCK + 2 * HOUR - 1);
    let files = sorted(runtime.block_on(tier_blocks(&store, &objects, block, with_index)));
    // Several pages of series ids, or the page index would have nothing to skip.
    let path = dir.path().join("objects").join(&files[0].path);
    let reader = parquet::file::serialized_reader::SerializedFileReader::new_with_options(
        std::fs::File::open(path).expect("file"),
        parquet::file::serialized_reader::ReadOptionsBuilder::new().with_page_index().build(),
    )
    .expect("parquet");
    let offsets = parquet::file::reader::FileReader::metadata(&reader).offset_index().expect("page index");
    assert!(offsets[0][3].page_locations().len() >= 4, "{} pages", offsets[0][3].page_locations().len());
    let cold = ColdRead::new(objects.clone(), runtime.handle().clone(), 10_000_000);
    // One series fetches a fraction of the bytes all of them do: pages are skipped.
    let fetched = |sel: &[Matcher]| {
        let fresh = ColdRead::new(objects.clone(), runtime.handle().clone(), 10_000_000);
        let got = fresh.with_files(files.clone()).select_known(&store.series_labels(sel), block);
        assert!(!got.expect("read").is_empty());
        fresh.fetched_bytes()
    };
    let (one, all) =
        (fetched(&[Matcher::equal("instance", "i1234")]), fetched(&[Matcher::equal("__name__", "m")]));
    assert!(one * 3 < all, "one series fetched {one} bytes, all {all} (index: {with_index})");
    for sel in [
        vec![Matcher::equal("instance", "i1234")],
        vec![m(MatchOp::Regex, "instance", "i(7|700|1999|42)")],
        vec![Matcher::equal("__name__", "m")],
    ] {
        for range in [block, TimeRange::new(BLOCK + HOUR, BLOCK + HOUR + 60_000)] {
            let hot =
                bits(whole_series(&mut *SeriesRead::select(&store, &sel, range).expect("hot")).expect("hot"));
            let known = store.series_labels(&sel);
            let got = cold.with_files(files.clone()).select_known(&known, range).expect("cold");
            assert!(bits(got) == hot, "{sel:?} over {range:?}");
            assert!(!hot.is_empty());
        }
    }
}

/// A file that holds the metric but none of the wanted series is not opened when it has an
/// index of its own (its index says so), and is when it has none (its footer must say so).
#[test]
fn a_file_without_the_wanted_series_is_not_opened() {
    use collabstream_proto::v1;
    use prost::Message;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_three_hours(&dir.path().join("store"));
    // `up` on a new instance, in the last half hour only: the third file.
    let late = v1::TimeSeries {
        labels: vec![
            v1::Label { name: "__name__".into(), value: "up".into() },
            v1::Label { name: "instance".into(), value: "host-9:9100".into() },
        ],
        samples: (0..60)
            .map(|k| v1::Sample { timestamp_ms: BLOCK + 2 * HOUR + k * 15_000, value: 1.0 })
            .collect(),
    };
    let cmd = v1::Command {
        leader_time_ms: 0,
        payload: Some(v1::command::Payload::Write(
            v1::WriteRequest { series: vec![late], ..Default::default() }.into(),
        )),
    };
    store.log().append([(2, cmd.encode_to_vec().as_slice())]).expect("log");
    store.apply(2, &cmd).expect("apply");
    let everything = TimeRange::new(BLOCK - 2 * HOUR, BLOCK + 4 * HOUR);
    let sel = [Matcher::equal("instance", "host-9:9100")];
    let hot =
        bits(whole_series(&mut *SeriesRead::select(&store, &sel, everything).expect("hot")).expect("hot"));
    assert_eq!(hot.len(), 1);
    for (with_index, opened) in [(true, 1), (false, 3)] {
        let objects = Objects::open(
            &ObjectStoreConfig {
                url: format!("file://{}", dir.path().join(format!("objects-{with_index}")).display()),
                ..Default::default()
            },
            dir.path(),
        )
        .expect("objects");
        let files = sorted(runtime.block_on(tier_blocks(&store, &objects, everything, with_index)));
        assert_eq!(files.len(), 3);
        let cold = ColdRead::new(objects, runtime.handle().clone(), 1_000_000);
        assert!(bits(read(&cold, &files, &store, &sel, everything).expect("read")) == hot);
        assert_eq!(cold.footer_cache().1, opened, "footers fetched (index: {with_index})");
        // A listing through the indexes opens no file at all.
        let listing = ColdRead::new(cold.objects().clone(), runtime.handle().clone(), 1_000_000);
        let listed = listing.with_files(files.clone()).list_known(&store.series_labels(&sel), everything);
        assert_eq!(listed.expect("listing"), store.series(&sel, everything).expect("series"));
        assert_eq!(listing.footer_cache().1, if with_index { 0 } else { 3 }, "listing (index: {with_index})");
        if with_index {
            // An index that does not match the manifest (size or checksum) is not trusted: the
            // files are read by their statistics, with the same answer.
            let mut wrong = files.as_ref().clone();
            for f in &mut wrong {
                f.index.as_mut().expect("an index").checksum ^= 1;
            }
            let wary = ColdRead::new(cold.objects().clone(), runtime.handle().clone(), 1_000_000);
            assert!(bits(read(&wary, &sorted(wrong), &store, &sel, everything).expect("read")) == hot);
            assert_eq!(wary.footer_cache().1, 3, "every file opened: no index trusted");
        }
    }
}

/// Row groups of 1,000 rows under 2,000 series of 120 samples: series cross row groups, and
/// reads through the index select rows across them.
#[test]
fn rows_read_through_the_index_cross_row_groups() {
    use collabstream_tiering::SamplesFile;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_of_2000(&dir.path().join("store"), |i| if i % 3 == 0 { "a" } else { "b" });
    let block = TimeRange::new(BLOCK, BLOCK + 2 * HOUR - 1);
    let mut file = SamplesFile::with_row_group_rows(1000).expect("file");
    for metric in ["a", "b"] {
        for s in whole_series(
            &mut *SeriesRead::select(&store, &[Matcher::equal("__name__", metric)], block).expect("hot"),
        )
        .expect("hot")
        {
            file.append(s.id, &s.labels, &s.samples).expect("append");
        }
    }
    let (bytes, summary, index) = file.finish().expect("finish").expect("rows");
    let meta =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).expect("parquet");
    assert_eq!(parquet::file::reader::FileReader::metadata(&meta).num_row_groups(), 240);
    let objects = Objects::open(
        &ObjectStoreConfig {
            url: format!("file://{}", dir.path().join("objects").display()),
            ..Default::default()
        },
        dir.path(),
    )
    .expect("objects");
    let files = sorted(vec![runtime.block_on(upload(&objects, BLOCK, bytes, summary, Some(index)))]);
    for sel in [
        vec![Matcher::equal("instance", "i8")],
        vec![m(MatchOp::Regex, "instance", "i(7|8|9|10|11|700|1999)")],
        vec![Matcher::equal("__name__", "a")],
        vec![],
    ] {
        for range in [block, TimeRange::new(BLOCK + HOUR, BLOCK + HOUR + 60_000)] {
            // A fresh reader each time, and the same one again (the decoded series then).
            let cold = ColdRead::new(objects.clone(), runtime.handle().clone(), 10_000_000);
            let hot =
                bits(whole_series(&mut *SeriesRead::select(&store, &sel, range).expect("hot")).expect("hot"));
            for _ in 0..2 {
                let got = cold
                    .with_files(files.clone())
                    .select_known(&store.series_labels(&sel), range)
                    .expect("cold");
                assert!(bits(got) == hot, "{sel:?} over {range:?}");
            }
            assert_eq!(cold.footer_cache().1, 1);
        }
    }
}
