//! A block of the hot store exported as Parquet: our reader, pyarrow and DuckDB (PyPI, installed
//! by `scripts/install-deps.sh`) all get back exactly the store's samples of that block.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{BLOCK, HOUR, Rows, expected, store_with_three_hours};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, TimestampMillisecondType, UInt64Type};
use collabstream_common::TimeRange;
use collabstream_tiering::{ObjectStoreConfig, Objects, export_samples, object_name, samples_schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::reader::{FileReader, SerializedFileReader};

fn read_back(bytes: &[u8]) -> Rows {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::copy_from_slice(bytes))
        .expect("a Parquet file")
        .build()
        .expect("reader");
    let mut rows = Rows::new();
    for batch in reader {
        let batch = batch.expect("batch");
        assert_eq!(batch.schema(), samples_schema());
        let metric = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Utf8).expect("cast");
        let metric = metric.as_string::<i32>();
        let labels = batch.column(1).as_map();
        let ids = batch.column(2).as_primitive::<UInt64Type>();
        let times = batch.column(3).as_primitive::<TimestampMillisecondType>();
        let values = batch.column(4).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let entry = labels.value(i);
            let (k, v) = (entry.column(0).as_string::<i32>(), entry.column(1).as_string::<i32>());
            let map = (0..entry.len()).map(|j| (k.value(j).to_string(), v.value(j).to_string())).collect();
            rows.push((
                metric.value(i).to_string(),
                map,
                ids.value(i),
                times.value(i),
                values.value(i).to_bits(),
            ));
        }
    }
    rows
}

#[tokio::test]
async fn a_block_reads_back_the_same_in_our_reader_pyarrow_and_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_with_three_hours(&dir.path().join("store"));
    let block = TimeRange::new(BLOCK, BLOCK + 2 * HOUR - 1);
    let want = expected(&store, block);
    assert_eq!(want.len(), 9 * 480, "two hours of 9 series at 15 s");

    let (bytes, summary, index) = export_samples(&store, block).expect("export").expect("a non-empty block");
    // Its index names every series at the rows the file holds it.
    let ids: Vec<u64> = {
        let mut ids: Vec<u64> = want.iter().map(|r| r.2).collect();
        ids.dedup();
        ids.sort_unstable();
        ids
    };
    let rows = index.rows_of(&ids);
    assert_eq!(rows.len(), 9);
    for (id, at) in &rows {
        assert!(want[at.start as usize..at.end as usize].iter().all(|r| r.2 == *id), "series {id}");
    }
    assert_eq!(rows.iter().map(|(_, r)| r.end - r.start).sum::<u64>(), want.len() as u64);
    assert_eq!(read_back(&bytes), want);
    assert_eq!((summary.rows, summary.series), (want.len() as u64, 9));
    assert_eq!((summary.min_time, summary.max_time), (BLOCK, BLOCK + 2 * HOUR - 15_000));
    assert_eq!(summary.metrics, ["http_requests_total", "node_load1", "up"]);
    // The file declares its order and carries the page index readers prune with.
    let file = SerializedFileReader::new(bytes::Bytes::copy_from_slice(&bytes)).expect("file");
    let rg = file.metadata().row_group(0);
    let sorted: Vec<i32> =
        rg.sorting_columns().expect("sorting columns").iter().map(|c| c.column_idx).collect();
    assert_eq!(sorted, [0, 3, 4]);
    assert!(
        rg.columns().iter().all(|c| c.column_index_offset().is_some() && c.offset_index_offset().is_some())
    );
    // An empty block has no file.
    assert!(export_samples(&store, TimeRange::new(0, 1_000)).expect("export").is_none());

    // To the local object store, verified, at its documented path.
    let objects_root = dir.path().join("objects");
    let config =
        ObjectStoreConfig { url: format!("file://{}", objects_root.display()), ..Default::default() };
    let objects = Objects::open(&config, dir.path()).expect("objects");
    let checksum = xxhash_rust::xxh3::xxh3_64(&bytes);
    let name = objects.path(&object_name("samples", BLOCK, "0badcafe", checksum));
    let stored = objects.put_verified(&name, bytes.clone().into()).await.expect("upload");
    assert_eq!((stored.size, stored.checksum), (bytes.len() as u64, checksum));
    assert!(objects_root.join(&name).is_file(), "{name}");

    // Engines that aren't ours: the same rows (values compared bit for bit, the stale NaN too).
    // (NaN payloads are compared only by our reader: other engines need not keep them.)
    let script = r#"
import json, math, struct, sys
import duckdb, pyarrow.dataset as ds
root = sys.argv[1]
def bits(v): return 2**64 - 1 if math.isnan(v) else struct.unpack("<Q", struct.pack("<d", v))[0]
t = ds.dataset(root + "/samples", format="parquet", partitioning="hive").to_table()
cols = [t.column(c).to_pylist() for c in ("metric", "labels", "series_id")]
times = t.column("timestamp").cast("int64").to_pylist()
values, dates, hours = (t.column(c).to_pylist() for c in ("value", "date", "hour"))
pa_rows = [[m, dict(l), i, ts, bits(v), str(d), int(h)] for m, l, i, ts, v, d, h in zip(*cols, times, values, dates, hours)]
con = duckdb.connect()
q = f"SELECT metric, map_keys(labels), map_values(labels), series_id, epoch_ms(timestamp), value, date, hour FROM read_parquet('{root}/samples/**/*.parquet', hive_partitioning = 1) ORDER BY metric, series_id, timestamp"
duck_rows = [[m, dict(zip(k, v)), i, ts, bits(x), str(d), int(h)] for m, k, v, i, ts, x, d, h in con.execute(q).fetchall()]
print(json.dumps({"pyarrow": pa_rows, "duckdb": duck_rows}))
"#;
    let out =
        Command::new("python3").arg("-c").arg(script).arg(&objects_root).output().expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let nan_as_max = |bits: u64| if f64::from_bits(bits).is_nan() { u64::MAX } else { bits };
    let want: Rows = want.into_iter().map(|(m, l, i, t, v)| (m, l, i, t, nan_as_max(v))).collect();
    for engine in ["pyarrow", "duckdb"] {
        let rows: Vec<_> = got[engine]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                assert_eq!(
                    (r[5].as_str(), r[6].as_i64()),
                    (Some("2024-11-28"), Some(8)),
                    "{engine}: partitions"
                );
                let labels: BTreeMap<String, String> = serde_json::from_value(r[1].clone()).expect("labels");
                let field = |i: usize| r[i].as_u64().expect("a number");
                (r[0].as_str().expect("metric").to_string(), labels, field(2), field(3) as i64, field(4))
            })
            .collect();
        assert!(rows == want, "{engine}: {} rows, {} expected", rows.len(), want.len());
    }
}
