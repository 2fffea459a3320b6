//! A CSV file held as text cells, with the line number of every row, so that a bad value is
//! reported as `file: line N, column C: ...` (bad input, exit status 2).

use crate::error::input_error;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A CSV file read whole: header, rows of text cells, and each row's line in the file.
#[derive(Clone, Debug)]
pub struct Table {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    /// Column names, trimmed.
    pub header: Vec<String>,
    /// Rows of cells, trimmed; every row has as many cells as the header.
    pub rows: Vec<Vec<String>>,
    /// The 1-based line of each row in the file.
    pub lines: Vec<u64>,
}

impl Table {
    /// Read `path`. A missing file, a file that is not CSV, or a row whose cell count differs
    /// from the header's is an input error naming the file (and the line).
    pub fn read(path: &Path) -> Result<Table> {
        let bytes = std::fs::read(path)
            .map_err(|e| input_error(format!("{}: cannot read: {e}", path.display())))?;
        Self::parse(path, &bytes)
    }

    /// Parse CSV bytes that came from `path`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Table> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .from_reader(bytes);
        let header: Vec<String> = rdr
            .headers()
            .map_err(|e| bad_csv(path, bytes, &e))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if header.iter().all(|h| h.is_empty()) {
            crate::bail_input!(
                "{}: line 1: empty header, expected CSV column names",
                path.display()
            );
        }
        let mut rows = Vec::new();
        let mut lines = Vec::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| bad_csv(path, bytes, &e))?;
            // csv does not count blank lines; count newlines before the record instead.
            let line = rec.position().map_or(0, |p| line_at(bytes, p.byte()));
            if rec.len() == 1 && rec[0].trim().is_empty() {
                continue; // a blank line
            }
            if rec.len() != header.len() {
                crate::bail_input!(
                    "{}: line {line}: {} fields, expected {} like the header ({})",
                    path.display(),
                    rec.len(),
                    header.len(),
                    header.join(",")
                );
            }
            rows.push(rec.iter().map(|c| c.trim().to_string()).collect());
            lines.push(line);
        }
        Ok(Table {
            path: path.to_path_buf(),
            header,
            rows,
            lines,
        })
    }

    /// Index of column `name`.
    pub fn col(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// Index of column `name`, or an input error saying the file lacks it.
    pub fn need(&self, name: &str) -> Result<usize> {
        self.col(name).ok_or_else(|| {
            input_error(format!(
                "{}: line 1: no column `{name}` in the header ({})",
                self.path.display(),
                self.header.join(",")
            ))
        })
    }

    /// The number in row `r`, column `c`: `None` for an empty cell, an input error naming the
    /// file, line and column for text that is not a number. `nan`/`inf` are accepted (a
    /// diverged loss is recorded that way).
    pub fn num(&self, r: usize, c: usize) -> Result<Option<f64>> {
        let cell = &self.rows[r][c];
        if cell.is_empty() {
            return Ok(None);
        }
        cell.parse::<f64>().map(Some).map_err(|_| {
            input_error(format!(
                "{}: line {}, column `{}`: {cell:?} is not a number",
                self.path.display(),
                self.lines[r],
                self.header[c]
            ))
        })
    }

    /// Column `name` as numbers (`None` for empty cells); `None` when the column is absent.
    pub fn column(&self, name: &str) -> Result<Option<Vec<Option<f64>>>> {
        match self.col(name) {
            None => Ok(None),
            Some(c) => (0..self.rows.len())
                .map(|r| self.num(r, c))
                .collect::<Result<Vec<_>>>()
                .map(Some),
        }
    }
}

/// 1-based line number of byte offset `at`.
fn line_at(bytes: &[u8], at: u64) -> u64 {
    let mut end = (at as usize).min(bytes.len());
    // csv reports a record as starting where the blank lines before it start.
    while end < bytes.len() && (bytes[end] == b'\n' || bytes[end] == b'\r') {
        end += 1;
    }
    1 + bytes[..end].iter().filter(|b| **b == b'\n').count() as u64
}

fn bad_csv(path: &Path, bytes: &[u8], e: &csv::Error) -> anyhow::Error {
    let line = e.position().map_or(String::new(), |p| {
        format!("line {}: ", line_at(bytes, p.byte()))
    });
    input_error(format!("{}: {line}not valid CSV: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_empty_cells_and_line_numbers() {
        let t = Table::parse(Path::new("e.csv"), b"a,b\n1,\n\n2.5,x\n").unwrap();
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.lines, vec![2, 4]);
        assert_eq!(t.num(0, 0).unwrap(), Some(1.0));
        assert_eq!(t.num(0, 1).unwrap(), None);
        let e = t.num(1, 1).unwrap_err().to_string();
        assert!(e.contains("e.csv: line 4, column `b`"), "{e}");
        assert!(crate::is_input_error(&t.num(1, 1).unwrap_err()));
    }

    #[test]
    fn ragged_rows_name_the_line() {
        let e = Table::parse(Path::new("x.csv"), b"a,b\n1,2\n3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.csv: line 3: 1 fields, expected 2"), "{e}");
    }
}
