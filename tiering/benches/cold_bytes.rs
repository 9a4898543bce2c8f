//! Cold bytes per sample (`cargo bench -p collabstream-tiering --bench cold_bytes`): the
//! node-exporter workload of `collabstream bench` (20,000 series × 480 scrapes at 15 s, two
//! hours, one block) applied to a store, exported as one samples file, and its size divided by
//! the samples it holds, labels included. Also: the hot store's size for the same data after a
//! checkpoint and a full compaction, and the time to export and to read the block back cold.
//! `BENCH_SERIES` and `BENCH_SCRAPES` scale it.

use std::time::Instant;

use collabstream_common::TimeRange;
use collabstream_proto::v1;
use collabstream_store::{Store, StoreConfig};
use collabstream_tiering::{
    ColdFile, ColdRead, IndexObject, ObjectStoreConfig, Objects, export_samples, index_name, object_name,
    sorted,
};
use collabstream_workload::NodeExporter;
use prost::Message;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let Ok(meta) = e.metadata() else { continue };
        total += if meta.is_dir() { dir_size(&e.path()) } else { meta.len() };
    }
    total
}

fn main() {
    // `cargo test --benches` runs this without --bench: keep it small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let series = env_usize("BENCH_SERIES", if quick { 500 } else { 20_000 });
    let scrapes = env_usize("BENCH_SCRAPES", if quick { 40 } else { 480 });
    // 2024-11-28T08:00:00Z: one 2 h block holds every scrape.
    let start = 1_732_780_800_000i64;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store"), StoreConfig::default()).expect("open");
    let mut workload = NodeExporter::new(series, 42);
    let mut index = 0u64;
    let mut samples = 0usize;
    for i in 0..scrapes {
        for write in workload.scrape(start + i as i64 * 15_000, 15.0, 2_000) {
            samples += write.series.iter().map(|s| s.samples.len()).sum::<usize>();
            let cmd =
                v1::Command { leader_time_ms: 0, payload: Some(v1::command::Payload::Write(write.into())) };
            index += 1;
            store.log().append([(index, cmd.encode_to_vec().as_slice())]).expect("log");
            store.apply(index, &cmd).expect("apply");
        }
    }
    let block = TimeRange::new(start, start + 2 * 3_600_000 - 1);

    let t = Instant::now();
    let (bytes, summary, index) = export_samples(&store, block).expect("export").expect("a block");
    let index = index.encode();
    let export = t.elapsed();
    assert_eq!(summary.rows as usize, samples, "every sample is in the block");

    store.checkpoint().expect("checkpoint");
    store.log().purge(u64::MAX - 1).expect("purge");
    store.compact().expect("compact");
    let hot = dir_size(&dir.path().join("store"));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = ObjectStoreConfig {
        url: format!("file://{}", dir.path().join("objects").display()),
        ..Default::default()
    };
    let objects = Objects::open(&config, dir.path()).expect("objects");
    let name = object_name("samples", start, "0badcafe", xxhash_rust::xxh3::xxh3_64(&bytes));
    let stored_index = runtime
        .block_on(objects.put_verified(&objects.path(&index_name(&name)), index.clone().into()))
        .expect("upload");
    let stored =
        runtime.block_on(objects.put_verified(&objects.path(&name), bytes.clone().into())).expect("upload");
    let cold = ColdRead::new(objects, runtime.handle().clone(), usize::MAX);
    let files = sorted(vec![ColdFile {
        path: stored.path,
        size: stored.size,
        summary,
        index: Some(IndexObject {
            path: stored_index.path,
            size: stored_index.size,
            checksum: stored_index.checksum,
        }),
    }]);
    let t = Instant::now();
    let read: usize = cold
        .with_files(files)
        .select_known(&store.series_labels(&[]), block)
        .expect("read")
        .iter()
        .map(|s| s.samples.len())
        .sum();
    let read_time = t.elapsed();
    assert_eq!(read, samples);

    println!("{series} node-exporter series × {scrapes} scrapes = {samples} samples, one block");
    println!("| measure | result |");
    println!("|---|---:|");
    println!(
        "| cold file and its series index, bytes/sample (labels included) | {:.3} |",
        (bytes.len() + index.len()) as f64 / samples as f64
    );
    println!("| … of which the series index (its own object) | {:.3} |", index.len() as f64 / samples as f64);
    println!(
        "| hot store after checkpoint + full compaction, bytes/sample | {:.3} |",
        hot as f64 / samples as f64
    );
    let file =
        parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(bytes.clone())).expect("file");
    let meta = parquet::file::reader::FileReader::metadata(&file);
    let mut by_column = std::collections::BTreeMap::<String, i64>::new();
    for rg in meta.row_groups() {
        for c in rg.columns() {
            *by_column.entry(c.column_path().string()).or_default() += c.compressed_size();
        }
    }
    for (column, size) in by_column {
        println!("| … of which `{column}` | {:.3} |", size as f64 / samples as f64);
    }
    println!("| export of the block (samples/s) | {:.0} |", samples as f64 / export.as_secs_f64());
    println!(
        "| cold read of the whole block (samples/s) | {:.0} |",
        samples as f64 / read_time.as_secs_f64()
    );
}
