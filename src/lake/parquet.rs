//! Deterministic Parquet: the same rows always encode to the same bytes (fixed writer settings,
//! no timestamps in metadata), so reruns can compare bytes and skip unchanged partitions.
//!
//! Files must also read through Hive's `ParquetHiveSerDe` (Hive, EMR, Glue ETL, Spark with
//! `convertMetastoreParquet=false`). parquet-rs 60 marks FLOAT/DOUBLE columns with the new
//! `IEEE_754_TOTAL_ORDER` column order (PARQUET-2249). parquet-java up to at least 1.17 does
//! not know that union member and reads it as `UNDEFINED`; Hive then compares the file's
//! column types with the same schema printed to text and parsed back (which gives the
//! default `TYPE_DEFINED_ORDER`), `PrimitiveType.equals` includes the column order, and every
//! double column is reported missing ("Group type … does not contain requested field").
//! [`hive_compatible_footer`] therefore writes the classic `TYPE_DEFINED_ORDER` for floating
//! columns. Their statistics stay exact under that order because the lake never writes NaN
//! into a column that carries statistics (see [`writer_properties_for`]).
//!
//! Hive's SerDe (2.3, the one Spark bundles) also reads decimals only from FIXED_LEN_BYTE_ARRAY,
//! while parquet-rs stores `decimal(p ≤ 18)` as INT32/INT64: [`parquet_schema`] stores every
//! decimal as FIXED_LEN_BYTE_ARRAY, the layout pyarrow, Spark and Hive write.

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter};
use parquet::basic::{ColumnOrder, Compression, Type as PhysicalType, ZstdLevel};
use parquet::basic::{LogicalType, Repetition};
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::{ColumnPath, SchemaDescriptor, Type as SchemaType};

/// Encoding and decoding errors.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// The Parquet library failed.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// An Arrow operation failed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A spilled part could not be written or read.
    #[error("spill file {0}: {1}")]
    Spill(String, #[source] std::io::Error),
    /// A stored column has another type than the table's.
    #[error("column {column:?} is stored as {stored} but the table says {expected}; columns are never retyped")]
    TypeChanged {
        /// Column name.
        column: String,
        /// Type in the stored file.
        stored: String,
        /// Type in the table schema.
        expected: String,
    },
    /// A floating column of a streamed file holds NaN (the lake's parsers never produce one).
    #[error("column {0:?} holds NaN, which the lake never writes")]
    NaN(String),
    /// The footer written by parquet-rs does not end the way [`hive_compatible_footer`] expects.
    #[error("unexpected Parquet footer layout: {0}")]
    Footer(String),
}

/// The lake's writer settings: ZSTD(3) (arrow-rs writes uncompressed by default), page statistics,
/// up to 1M rows per row group. Dictionary encoding only for strings (names, lineage): numeric
/// metrics rarely repeat enough to pay for the dictionary, and ZSTD compresses them anyway.
pub fn writer_properties(schema: &Schema) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("3 is a valid zstd level"),
        ))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20));
    for field in schema.fields() {
        if !matches!(field.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
            let column = ColumnPath::from(field.name().as_str());
            builder = builder.set_column_dictionary_enabled(column, false);
        }
    }
    builder.build()
}

/// [`writer_properties`] for one batch known in advance: a floating column that holds NaN gets
/// no statistics. parquet-rs computes float min/max over the non-NaN values plus a NaN count
/// (IEEE 754 total order); under the classic column order the footer declares, a reader that
/// ignores NaN counts would prune such a row group wrongly, so it gets nothing to prune on.
pub fn writer_properties_for(batch: &RecordBatch) -> WriterProperties {
    let nan_columns: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(_, column)| has_nan(column))
        .map(|(field, _)| field.name().as_str())
        .collect();
    if nan_columns.is_empty() {
        return writer_properties(batch.schema_ref());
    }
    let mut builder = writer_properties(batch.schema_ref()).into_builder();
    for name in nan_columns {
        builder =
            builder.set_column_statistics_enabled(ColumnPath::from(name), EnabledStatistics::None);
    }
    builder.build()
}

/// Whether a (top-level) floating column holds a NaN.
pub fn has_nan(column: &ArrayRef) -> bool {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float32Type, Float64Type};
    // A branch-free scan of the values first (it vectorizes); only when it finds a NaN do the
    // validity bits decide, since a null slot may hold any value.
    match column.data_type() {
        DataType::Float64 => {
            let array = column.as_primitive::<Float64Type>();
            array.values().iter().any(|v| v.is_nan())
                && array.iter().any(|v| v.is_some_and(f64::is_nan))
        }
        DataType::Float32 => {
            let array = column.as_primitive::<Float32Type>();
            array.values().iter().any(|v| v.is_nan())
                && array.iter().any(|v| v.is_some_and(f32::is_nan))
        }
        _ => false,
    }
}

/// The Parquet schema of a lake table: parquet-rs's mapping, except that decimals are
/// FIXED_LEN_BYTE_ARRAY of the minimal width for their precision (not INT32/INT64), which every
/// reader of the lake, Hive 2.3's SerDe included, understands.
pub fn parquet_schema(schema: &Schema) -> Result<SchemaDescriptor, ParquetError> {
    let converted = ArrowSchemaConverter::new().convert(schema)?;
    let root = converted.root_schema();
    let mut fields = Vec::with_capacity(schema.fields().len());
    for (field, leaf) in schema.fields().iter().zip(root.get_fields()) {
        let DataType::Decimal128(precision, scale) = field.data_type() else {
            fields.push(leaf.clone());
            continue;
        };
        let repetition = if field.is_nullable() {
            Repetition::OPTIONAL
        } else {
            Repetition::REQUIRED
        };
        let decimal =
            SchemaType::primitive_type_builder(field.name(), PhysicalType::FIXED_LEN_BYTE_ARRAY)
                .with_repetition(repetition)
                .with_length(decimal_width(*precision))
                .with_logical_type(Some(LogicalType::decimal(
                    i32::from(*scale),
                    i32::from(*precision),
                )))
                .with_precision(i32::from(*precision))
                .with_scale(i32::from(*scale))
                .build()?;
        fields.push(Arc::new(decimal));
    }
    let root = SchemaType::group_type_builder(root.name())
        .with_fields(fields)
        .build()?;
    Ok(SchemaDescriptor::new(Arc::new(root)))
}

/// Bytes of the smallest two's-complement integer holding every `precision`-digit number.
fn decimal_width(precision: u8) -> i32 {
    let largest = 10u128.pow(u32::from(precision)) - 1;
    let bits = 128 - largest.leading_zeros() + 1;
    bits.div_ceil(8) as i32
}

/// An [`ArrowWriter`] with the lake's settings and Parquet schema.
pub fn writer<W: Write + Send>(
    out: W,
    schema: SchemaRef,
    props: WriterProperties,
) -> Result<ArrowWriter<W>, ParquetError> {
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_parquet_schema(parquet_schema(&schema)?);
    Ok(ArrowWriter::try_new_with_options(out, schema, options)?)
}

/// Encodes one batch as a whole Parquet file (with a Hive-compatible footer).
pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, ParquetError> {
    let mut out = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let props = writer_properties_for(batch);
    let mut writer = writer(&mut out, batch.schema(), props)?;
    writer.write(batch)?;
    writer.close()?;
    let footer = footer_range(out.len(), footer_length(&out)?)?;
    hive_compatible_footer(&mut out[footer])?;
    Ok(out)
}

/// Rewrites, in place, the footer of a finished Parquet file on disk like [`encode`] does.
pub fn hive_compatible_file<F: Read + Write + Seek>(file: &mut F) -> Result<(), ParquetError> {
    let io = |e: std::io::Error| ParquetError::Spill("footer".into(), e);
    let size = file.seek(SeekFrom::End(0)).map_err(io)?;
    let size = usize::try_from(size).map_err(|_| ParquetError::Footer("file too large".into()))?;
    if size < 12 {
        return Err(ParquetError::Footer(format!(
            "{size} bytes is not a Parquet file"
        )));
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::Start((size - 8) as u64)).map_err(io)?;
    file.read_exact(&mut tail).map_err(io)?;
    let range = footer_range(size, footer_length(&tail)?)?;
    let mut footer = vec![0u8; range.len()];
    file.seek(SeekFrom::Start(range.start as u64)).map_err(io)?;
    file.read_exact(&mut footer).map_err(io)?;
    hive_compatible_footer(&mut footer)?;
    file.seek(SeekFrom::Start(range.start as u64)).map_err(io)?;
    file.write_all(&footer).map_err(io)?;
    file.flush().map_err(io)
}

/// The thrift `FileMetaData` length from a file's last 8 bytes (`<len LE u32>PAR1`).
fn footer_length(file_end: &[u8]) -> Result<usize, ParquetError> {
    let tail = file_end
        .len()
        .checked_sub(8)
        .map(|start| &file_end[start..])
        .ok_or_else(|| ParquetError::Footer("shorter than 8 bytes".into()))?;
    if &tail[4..] != b"PAR1" {
        return Err(ParquetError::Footer("no PAR1 magic at the end".into()));
    }
    Ok(u32::from_le_bytes(tail[..4].try_into().expect("4 bytes")) as usize)
}

fn footer_range(file_size: usize, length: usize) -> Result<std::ops::Range<usize>, ParquetError> {
    let end = file_size - 8;
    let start = end
        .checked_sub(length)
        .filter(|&s| s >= 4)
        .ok_or_else(|| ParquetError::Footer(format!("footer length {length} exceeds the file")))?;
    Ok(start..end)
}

/// Thrift compact field ids of the `ColumnOrder` union members (parquet.thrift).
const TYPE_ORDER: u8 = 1;
const IEEE_754_TOTAL_ORDER: u8 = 2;

/// Replaces every `IEEE_754_TOTAL_ORDER` in the thrift-encoded `FileMetaData` with
/// `TYPE_DEFINED_ORDER`, in place; then decodes the result to prove it is still the same
/// footer with the classic order on every floating column.
///
/// parquet-rs writes `column_orders` (field 7) last: one 3-byte element per leaf column
/// (`<id><<4|STRUCT, 0 (empty struct), 0 (union end)>`), then the struct's stop byte. Both
/// members are empty structs, so the swap keeps every length and offset.
pub fn hive_compatible_footer(footer: &mut [u8]) -> Result<(), ParquetError> {
    const STRUCT: u8 = 12;
    let unexpected = |what: &str| ParquetError::Footer(what.to_string());
    let before = ParquetMetaDataReader::decode_metadata(footer)?;
    let schema = before.file_metadata().schema_descr_ptr();
    let leaves = schema.num_columns();
    if before.file_metadata().column_orders().is_none() {
        return Err(unexpected("no column orders"));
    }
    let len = footer.len();
    let elements_start = len
        .checked_sub(1 + 3 * leaves)
        .ok_or_else(|| unexpected("footer shorter than its column orders"))?;
    if footer[len - 1] != 0 {
        return Err(unexpected("FileMetaData does not end with a stop byte"));
    }
    // The list header just before the elements: `size<<4|STRUCT`, or `0xF0|STRUCT` + varint.
    let mut header = vec![];
    if leaves < 15 {
        header.push(((leaves as u8) << 4) | STRUCT);
    } else {
        header.push(0xF0 | STRUCT);
        let mut n = leaves;
        loop {
            let byte = (n & 0x7F) as u8;
            n >>= 7;
            if n == 0 {
                header.push(byte);
                break;
            }
            header.push(byte | 0x80);
        }
    }
    let header_start = elements_start
        .checked_sub(header.len())
        .ok_or_else(|| unexpected("footer shorter than its column orders"))?;
    if footer[header_start..elements_start] != header[..] {
        return Err(unexpected("column orders are not the last field"));
    }
    for element in footer[elements_start..len - 1].chunks_exact_mut(3) {
        match element {
            [id, 0, 0] if *id == (IEEE_754_TOTAL_ORDER << 4 | STRUCT) => {
                *id = TYPE_ORDER << 4 | STRUCT;
            }
            [id, 0, 0] if *id >> 4 != 0 && *id & 0x0F == STRUCT => {}
            _ => return Err(unexpected("a column order is not an empty union member")),
        }
    }
    let after = ParquetMetaDataReader::decode_metadata(footer)?;
    let same = after.file_metadata().schema_descr_ptr() == schema
        && after.file_metadata().num_rows() == before.file_metadata().num_rows()
        && after.num_row_groups() == before.num_row_groups();
    let classic = (0..leaves).all(|i| {
        let order = after.file_metadata().column_order(i);
        match schema.column(i).physical_type() {
            PhysicalType::FLOAT | PhysicalType::DOUBLE => {
                matches!(order, ColumnOrder::TYPE_DEFINED_ORDER(_))
            }
            _ => order == before.file_metadata().column_order(i),
        }
    });
    if !(same && classic) {
        return Err(unexpected(
            "the rewritten footer does not decode to the same metadata",
        ));
    }
    Ok(())
}

/// Decodes only the named top-level columns (those the file has) of a Parquet file.
pub fn decode_columns(bytes: Bytes, columns: &[&str]) -> Result<Vec<RecordBatch>, ParquetError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    let indices: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| columns.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
    Ok(builder
        .with_projection(mask)
        .with_batch_size(64 * 1024)
        .build()?
        .collect::<Result<Vec<_>, _>>()?)
}

/// Decodes a whole Parquet file.
pub fn decode(bytes: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?
        .with_batch_size(64 * 1024)
        .build()?;
    Ok(reader.collect::<Result<Vec<_>, _>>()?)
}

/// Reorders `batch`'s columns to `schema` by name; columns it lacks become nulls (columns are
/// only ever added, so older files simply miss the newer ones).
pub fn align(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ParquetError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(RecordBatch::try_new(
            schema.clone(),
            batch.columns().to_vec(),
        )?);
    }
    // One name → index map per call: looking each field up by name would be quadratic in columns.
    let by_name: std::collections::HashMap<&str, usize> = batch
        .schema_ref()
        .fields()
        .iter()
        .enumerate()
        .rev() // the first of two equal names wins, as `column_by_name` does
        .map(|(i, f)| (f.name().as_str(), i))
        .collect();
    let columns = schema
        .fields()
        .iter()
        .map(
            |field| match by_name.get(field.name().as_str()).map(|&i| batch.column(i)) {
                Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
                Some(column) => Err(ParquetError::TypeChanged {
                    column: field.name().clone(),
                    stored: column.data_type().to_string(),
                    expected: field.data_type().to_string(),
                }),
                None => Ok(new_null_array(field.data_type(), batch.num_rows())),
            },
        )
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::Field;
    use parquet::file::statistics::Statistics;

    fn batch(columns: usize, with_nan: bool) -> RecordBatch {
        let mut fields = vec![
            Field::new("queue", DataType::Utf8, true),
            Field::new("contacts", DataType::Int64, true),
        ];
        let mut arrays: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![Some("a"), None, Some("b")])),
            Arc::new(Int64Array::from(vec![Some(1), Some(2), None])),
        ];
        for i in 0..columns {
            fields.push(Field::new(format!("m{i}_seconds"), DataType::Float64, true));
            let last = if with_nan { f64::NAN } else { 2.5 };
            arrays.push(Arc::new(Float64Array::from(vec![
                Some(-1.0),
                None,
                Some(last),
            ])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    fn metadata(bytes: &[u8]) -> parquet::file::metadata::ParquetMetaData {
        ParquetMetaDataReader::new()
            .parse_and_finish(&Bytes::copy_from_slice(bytes))
            .unwrap()
    }

    #[test]
    fn floating_columns_get_the_classic_column_order() {
        // 3 leaves (short list header) and 40 leaves (varint list header).
        for doubles in [1, 38] {
            let input = batch(doubles, false);
            let bytes = encode(&input).unwrap();
            let meta = metadata(&bytes);
            let file = meta.file_metadata();
            for i in 0..file.schema_descr().num_columns() {
                let order = file.column_order(i);
                assert!(
                    matches!(order, ColumnOrder::TYPE_DEFINED_ORDER(_)),
                    "{i}: {order:?}"
                );
            }
            assert_eq!(decode(Bytes::from(bytes)).unwrap(), vec![input]);
            let stats = meta.row_group(0).column(2).statistics().unwrap();
            let Statistics::Double(stats) = stats else {
                panic!("{stats:?}")
            };
            assert_eq!(
                (stats.min_opt(), stats.max_opt()),
                (Some(&-1.0), Some(&2.5))
            );
        }
    }

    #[test]
    fn decimals_are_fixed_length_byte_arrays_and_read_back_exactly() {
        use arrow::array::Decimal128Array;
        let values = Decimal128Array::from(vec![Some(123_456_789_012_345_678), None, Some(-1)])
            .with_precision_and_scale(18, 2)
            .unwrap();
        let small = Decimal128Array::from(vec![Some(1250), Some(-13), None])
            .with_precision_and_scale(5, 2)
            .unwrap();
        let schema = Schema::new(vec![
            Field::new("cost", DataType::Decimal128(18, 2), true),
            Field::new("share", DataType::Decimal128(5, 2), true),
        ]);
        let input = RecordBatch::try_new(Arc::new(schema), vec![Arc::new(values), Arc::new(small)])
            .unwrap();
        let bytes = encode(&input).unwrap();
        let meta = metadata(&bytes);
        let columns = meta.file_metadata().schema_descr();
        for (i, width) in [(0, 8), (1, 3)] {
            let column = columns.column(i);
            assert_eq!(column.physical_type(), PhysicalType::FIXED_LEN_BYTE_ARRAY);
            assert_eq!(column.type_length(), width);
        }
        assert_eq!(decode(Bytes::from(bytes)).unwrap(), vec![input]);
        assert_eq!(
            [1, 2, 9, 10, 18, 19, 38].map(decimal_width),
            [1, 1, 4, 5, 8, 9, 16]
        );
    }

    #[test]
    fn a_column_with_nan_carries_no_statistics() {
        let input = batch(1, true);
        let bytes = encode(&input).unwrap();
        let meta = metadata(&bytes);
        assert!(meta.row_group(0).column(2).statistics().is_none());
        assert!(meta.row_group(0).column(1).statistics().is_some());
        let back = decode(Bytes::from(bytes)).unwrap();
        assert!(has_nan(back[0].column(2)));
    }

    #[test]
    fn a_nan_behind_a_null_is_no_nan() {
        use arrow::buffer::NullBuffer;
        let hidden = Float64Array::new(
            vec![f64::NAN, 1.0].into(),
            Some(NullBuffer::from(vec![false, true])),
        );
        assert!(!has_nan(&(Arc::new(hidden) as ArrayRef)));
        let shown = Float64Array::new(vec![1.0, f64::NAN].into(), None);
        assert!(has_nan(&(Arc::new(shown) as ArrayRef)));
        let none = Float64Array::from(vec![Some(1.0), None]);
        assert!(!has_nan(&(Arc::new(none) as ArrayRef)));
    }

    /// One column of `rows` numbers, with repeats so that ZSTD finds matches.
    fn numbers(rows: i64) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("v", DataType::Int64, false)]);
        let values = Int64Array::from_iter_values((0..rows).map(|i| (i * 7919) % 1009));
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(values)]).unwrap()
    }

    #[test]
    fn reused_zstd_contexts_write_the_bytes_of_fresh_ones() {
        // The vendored parquet-rs lends each thread's ZSTD context to every page it compresses
        // (vendor/README.md). A one-column file encoded on a new thread compresses with a new
        // context, as upstream does; here the same files, encoded one after another on one
        // thread whose context last compressed inputs of other sizes, must be the same bytes.
        let inputs: Vec<RecordBatch> = [3, 5_000, 40, 100_000, 7, 5_000]
            .into_iter()
            .map(numbers)
            .collect();
        encode(&batch(38, false)).unwrap();
        let reused: Vec<Vec<u8>> = inputs.iter().map(|b| encode(b).unwrap()).collect();
        let fresh: Vec<Vec<u8>> = inputs
            .iter()
            .map(|b| {
                let b = b.clone();
                std::thread::spawn(move || encode(&b).unwrap())
                    .join()
                    .unwrap()
            })
            .collect();
        assert_eq!(reused, fresh);
        let meta = metadata(&reused[3]);
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
    }

    #[test]
    fn a_file_on_disk_is_rewritten_like_encode() {
        let input = batch(2, false);
        let mut raw = Vec::new();
        let mut writer = writer(&mut raw, input.schema(), writer_properties_for(&input)).unwrap();
        writer.write(&input).unwrap();
        writer.close().unwrap();
        let mut file = std::io::Cursor::new(raw);
        hive_compatible_file(&mut file).unwrap();
        assert_eq!(file.into_inner(), encode(&input).unwrap());
        let mut junk = std::io::Cursor::new(b"not a parquet file".to_vec());
        assert!(matches!(
            hive_compatible_file(&mut junk),
            Err(ParquetError::Footer(_))
        ));
    }
}
