//! Splits a CSV byte stream into chunks that end on record boundaries, so chunks can be parsed
//! in parallel while the input is still streaming. Quote-aware: a newline inside a quoted field
//! (an agent name with a line break, say) is not a boundary.

/// Accumulates bytes and hands out record-aligned chunks of about `target` bytes.
#[derive(Debug)]
pub struct RecordChunker {
    buf: Vec<u8>,
    scanned: usize,
    in_quotes: bool,
    boundary: usize,
    target: usize,
    lines_emitted: u64,
}

/// A record-aligned piece of the input.
#[derive(Debug)]
pub struct Chunk {
    /// The bytes, ending after a newline (except possibly the last chunk).
    pub bytes: Vec<u8>,
    /// 1-based line number of the first byte in the file.
    pub first_line: u64,
}

impl RecordChunker {
    /// A chunker that emits chunks of at least `target` bytes (except the last).
    pub fn new(target: usize) -> Self {
        RecordChunker {
            buf: Vec::new(),
            scanned: 0,
            in_quotes: false,
            boundary: 0,
            target,
            lines_emitted: 0,
        }
    }

    /// Adds input; returns a chunk when enough whole records are buffered.
    pub fn push(&mut self, data: &[u8]) -> Option<Chunk> {
        self.buf.extend_from_slice(data);
        for pos in memchr::memchr2_iter(b'"', b'\n', &self.buf[self.scanned..]) {
            let at = self.scanned + pos;
            if self.buf[at] == b'"' {
                // An escaped quote ("") toggles twice, which leaves the state unchanged.
                self.in_quotes = !self.in_quotes;
            } else if !self.in_quotes {
                self.boundary = at + 1;
            }
        }
        self.scanned = self.buf.len();
        if self.boundary >= self.target {
            let rest = self.buf.split_off(self.boundary);
            let bytes = std::mem::replace(&mut self.buf, rest);
            self.scanned -= self.boundary;
            self.boundary = 0;
            return Some(self.emit(bytes));
        }
        None
    }

    /// The remaining bytes, if any.
    pub fn finish(mut self) -> Option<Chunk> {
        let bytes = std::mem::take(&mut self.buf);
        (!bytes.is_empty()).then(|| self.emit(bytes))
    }

    fn emit(&mut self, bytes: Vec<u8>) -> Chunk {
        let first_line = self.lines_emitted + 1;
        self.lines_emitted += bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        Chunk { bytes, first_line }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], target: usize, piece: usize) -> Vec<Chunk> {
        let mut chunker = RecordChunker::new(target);
        let mut out: Vec<Chunk> = input
            .chunks(piece)
            .filter_map(|p| chunker.push(p))
            .collect();
        out.extend(chunker.finish());
        out
    }

    #[test]
    fn chunks_end_on_record_boundaries_outside_quotes() {
        let input =
            b"Agent,Agent Name\na,\"Line one\nline two\"\nb,\"say \"\"hi\"\"\nok\"\nc,plain\n";
        for target in 1..input.len() + 2 {
            for piece in 1..8 {
                let chunks = split_all(input, target, piece);
                let joined: Vec<u8> = chunks.iter().flat_map(|c| c.bytes.clone()).collect();
                assert_eq!(joined, input);
                for c in &chunks {
                    let mut rdr = csv::ReaderBuilder::new()
                        .has_headers(false)
                        .flexible(true)
                        .from_reader(&c.bytes[..]);
                    for rec in rdr.byte_records() {
                        let rec = rec.unwrap();
                        assert!(
                            rec.len() == 2,
                            "record split inside quotes: {rec:?} (target {target})"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn first_line_counts_every_newline_before_the_chunk() {
        let input = b"h\n1\n2\n3\n4\n";
        let chunks = split_all(input, 4, 2);
        assert!(chunks.len() > 2);
        assert_eq!(chunks[0].first_line, 1);
        let mut line = 1;
        for chunk in &chunks {
            assert_eq!(chunk.first_line, line);
            line += chunk.bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
}
