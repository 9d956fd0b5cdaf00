//! CSV records of an in-memory chunk, read with `csv_core` exactly as `csv::Reader` reads them
//! (RFC 4180 quoting, `\r`, `\n` or `\r\n` line ends, blank lines skipped, rows of any width).
//!
//! `csv::ReaderBuilder::from_reader` builds its state machine every time, which costs more than
//! parsing a 20-row report (a year of reports spent a sixth of its instructions there). Here the
//! machines are built once and reused, reset, from a small pool. (Not cloned: csv-core 0.1's
//! `Clone` for its DFA copies only the transition table, and a clone reads every byte as a
//! record end.)

use std::ops::Index;
use std::sync::Mutex;

use csv_core::ReadRecordResult;

/// One record: its fields' bytes and where it starts in the chunk.
#[derive(Debug, Clone)]
pub struct Record {
    fields: Vec<u8>,
    ends: Vec<usize>,
    len: usize,
    start: usize,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            fields: vec![0; 1024],
            ends: vec![0; 64],
            len: 0,
            start: 0,
        }
    }
}

impl Record {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Byte offset in the chunk where reading this record began (before any blank lines it
    /// skipped), as `csv::ByteRecord::position` gives it.
    pub fn position(&self) -> usize {
        self.start
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len).map(|i| &self[i])
    }
}

impl Index<usize> for Record {
    type Output = [u8];

    #[inline]
    fn index(&self, i: usize) -> &[u8] {
        assert!(i < self.len, "field {i} of a record of {}", self.len);
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.fields[start..self.ends[i]]
    }
}

/// Built state machines not in use (one per chunk parsed at once, at most).
static MACHINES: Mutex<Vec<csv_core::Reader>> = Mutex::new(Vec::new());

/// Reads the records of one chunk.
pub struct Records<'a> {
    core: Option<csv_core::Reader>,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Records<'a> {
    /// A reader at the start of `input`, with csv's default dialect.
    pub fn new(input: &'a [u8]) -> Self {
        let pooled = MACHINES.lock().map(|mut pool| pool.pop()).unwrap_or(None);
        let core = match pooled {
            Some(mut core) => {
                core.reset();
                core
            }
            None => csv_core::Reader::new(),
        };
        Records {
            core: Some(core),
            input,
            pos: 0,
        }
    }

    /// Bytes of the chunk consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads the next record into `record`; `false` at the end of the chunk.
    pub fn read(&mut self, record: &mut Record) -> bool {
        record.start = self.pos;
        record.len = 0;
        let (mut out, mut ends) = (0, 0);
        let core = self.core.as_mut().expect("present until dropped");
        loop {
            let (result, nin, nout, nend) = core.read_record(
                &self.input[self.pos..],
                &mut record.fields[out..],
                &mut record.ends[ends..],
            );
            self.pos += nin;
            out += nout;
            ends += nend;
            match result {
                // The rest of the input is empty: the next call says so and ends the record.
                ReadRecordResult::InputEmpty => continue,
                ReadRecordResult::OutputFull => {
                    let grown = record.fields.len().max(1) * 2;
                    record.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = record.ends.len().max(1) * 2;
                    record.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    record.len = ends;
                    return true;
                }
                ReadRecordResult::End => return false,
            }
        }
    }
}

impl Drop for Records<'_> {
    fn drop(&mut self) {
        if let (Some(core), Ok(mut pool)) = (self.core.take(), MACHINES.lock()) {
            pool.push(core);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `csv::Reader` (the reference) reads: each record's fields and position.
    fn with_csv(input: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(input);
        reader
            .byte_records()
            .map(|r| {
                let r = r.expect("a byte slice reads");
                let at = r.position().expect("records have positions").byte();
                (at, r.iter().map(<[u8]>::to_vec).collect())
            })
            .collect()
    }

    fn with_records(input: &[u8]) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut records = Records::new(input);
        // A tiny record buffer, so growing it is exercised too.
        let mut record = Record {
            fields: vec![0; 1],
            ends: vec![0; 1],
            ..Record::default()
        };
        let mut out = Vec::new();
        while records.read(&mut record) {
            out.push((
                record.position() as u64,
                record.iter().map(<[u8]>::to_vec).collect(),
            ));
        }
        out
    }

    #[test]
    fn reads_quotes_line_ends_and_blank_lines_like_csv() {
        let input = b"a,\"b,\"\"c\"\"\nd\",e\r\n\r\n\nf\rg,,\n\"unterminated";
        assert_eq!(with_records(input), with_csv(input));
        assert_eq!(with_records(b""), with_csv(b""));
        // A reused machine starts afresh, even after a chunk that ended inside quotes.
        assert_eq!(with_records(b"x,y\n"), with_csv(b"x,y\n"));
    }

    proptest! {
        #[test]
        fn reads_any_bytes_like_csv(input in proptest::collection::vec(
            prop_oneof![Just(b','), Just(b'"'), Just(b'\r'), Just(b'\n'), Just(b' '), Just(b'a'), Just(0xff)],
            0..200,
        )) {
            prop_assert_eq!(with_records(&input), with_csv(&input));
        }
    }
}
