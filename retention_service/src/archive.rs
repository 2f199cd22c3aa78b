//! Archives: purged logs as gzip-compressed NDJSON, one file per service per UTC day, and
//! restoring such a file.
//!
//! Each line is one stored document in MongoDB's canonical extended JSON, the format of
//! `mongoexport --jsonFormat=canonical`, so a restore gives back exactly what was stored.
//! A batch is appended as a new gzip member (gzip readers read concatenated members as one
//! stream) into a copy of the file; the copy is synced, its new member read back and checked
//! against the batch, and only then renamed over the original. A crash at any point leaves
//! either the old file or the new one, never a torn one.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bson::{Bson, Document};
use flate2::read::{GzDecoder, MultiGzDecoder};
use flate2::write::GzEncoder;
use flate2::Compression;
use logagg::store::fields;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("archive {path} failed verification: {reason}")]
    Verification { path: PathBuf, reason: String },
    #[error("line {line} of {path} is not an archived document: {reason}")]
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Writes archive files under one directory.
#[derive(Debug, Clone)]
pub struct Archiver {
    directory: PathBuf,
}

impl Archiver {
    pub fn new(directory: impl Into<PathBuf>) -> Archiver {
        Archiver {
            directory: directory.into(),
        }
    }

    /// The file holding `service`'s logs of `day` (`YYYY-MM-DD`).
    pub fn file_for(&self, service: &str, day: &str) -> PathBuf {
        let service = safe_file_component(service);
        self.directory
            .join(&service)
            .join(format!("{service}-{day}.ndjson.gz"))
    }

    /// Appends `documents` to their service-day files and verifies each. Blocking: run it on
    /// a blocking thread. Returns the files written.
    pub fn append(&self, documents: &[Document]) -> Result<Vec<PathBuf>, ArchiveError> {
        let mut groups: BTreeMap<PathBuf, Vec<&Document>> = BTreeMap::new();
        for document in documents {
            let service = document.get_str(fields::SERVICE).unwrap_or("_unknown");
            let day = document
                .get_datetime(fields::TIMESTAMP)
                .map(|time| time.to_chrono().format("%Y-%m-%d").to_string())
                .unwrap_or_else(|_| "undated".to_owned());
            groups
                .entry(self.file_for(service, &day))
                .or_default()
                .push(document);
        }
        for (path, group) in &groups {
            append_verified(path, group)?;
        }
        Ok(groups.into_keys().collect())
    }
}

/// Service names are validated at ingest (letters, digits, `_-.`, no empty dot parts), but a
/// stored document may predate that: anything else is replaced so no name can leave the
/// archive directory.
fn safe_file_component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '_' | '-') {
                character
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "_unknown".to_owned()
    } else {
        cleaned
    }
}

fn append_verified(path: &Path, documents: &[&Document]) -> Result<(), ArchiveError> {
    let io = |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    };
    let directory = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(directory).map_err(io)?;
    let staging = path.with_extension("gz.partial");
    let existing_len = if path.exists() {
        fs::copy(path, &staging).map_err(io)?
    } else {
        File::create(&staging).map_err(io)?;
        0
    };
    let mut lines = Vec::with_capacity(documents.len() * 256);
    for document in documents {
        let json = Bson::Document((*document).clone()).into_canonical_extjson();
        serde_json::to_writer(&mut lines, &json).map_err(|error| io(error.into()))?;
        lines.push(b'\n');
    }
    let file = OpenOptions::new().append(true).open(&staging).map_err(io)?;
    let mut encoder = GzEncoder::new(file, Compression::fast());
    encoder.write_all(&lines).map_err(io)?;
    let file = encoder.finish().map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);

    verify_appended(&staging, existing_len, documents)?;
    fs::rename(&staging, path).map_err(io)?;
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(io)?;
    Ok(())
}

/// Reads the member written at `offset` back from disk: it must hold exactly `documents`'
/// ids, in order, each line a parseable document.
fn verify_appended(path: &Path, offset: u64, documents: &[&Document]) -> Result<(), ArchiveError> {
    let io = |source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let reader = BufReader::new(GzDecoder::new(file));
    let mut count = 0;
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|error| ArchiveError::Verification {
            path: path.to_owned(),
            reason: format!("unreadable after {index} lines: {error}"),
        })?;
        let document = parse_line(&line).map_err(|reason| ArchiveError::Verification {
            path: path.to_owned(),
            reason: format!("line {index}: {reason}"),
        })?;
        let expected = documents
            .get(index)
            .and_then(|expected| expected.get("_id"));
        if expected != document.get("_id") {
            return Err(ArchiveError::Verification {
                path: path.to_owned(),
                reason: format!("line {index} holds another document than was written"),
            });
        }
        count += 1;
    }
    if count != documents.len() {
        return Err(ArchiveError::Verification {
            path: path.to_owned(),
            reason: format!("{count} records read back, {} written", documents.len()),
        });
    }
    Ok(())
}

fn parse_line(line: &str) -> Result<Document, String> {
    let json: serde_json::Value = serde_json::from_str(line).map_err(|error| error.to_string())?;
    match Bson::try_from(json).map_err(|error| error.to_string())? {
        Bson::Document(document) => Ok(document),
        _ => Err("not a JSON object".to_owned()),
    }
}

/// Reads an archive file: every member, every line, as stored documents. Blocking.
pub fn read_archive(path: &Path) -> Result<Vec<Document>, ArchiveError> {
    let file = File::open(path).map_err(|source| ArchiveError::Io {
        path: path.to_owned(),
        source,
    })?;
    read_documents(path, MultiGzDecoder::new(file))
}

fn read_documents(path: &Path, reader: impl Read) -> Result<Vec<Document>, ArchiveError> {
    let mut documents = Vec::new();
    for (index, line) in BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(|source| ArchiveError::Io {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let document = parse_line(&line).map_err(|reason| ArchiveError::BadLine {
            path: path.to_owned(),
            line: index + 1,
            reason,
        })?;
        documents.push(document);
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;
    use chrono::{TimeZone, Utc};

    fn log(id: &str, service: &str, day: u32) -> Document {
        doc! {
            "_id": id,
            "ts": bson::DateTime::from_chrono(Utc.with_ymd_and_hms(2026, 10, day, 8, 0, 0).unwrap()),
            "service": service,
            "severity": "info",
            "message": format!("m {id}"),
            "attrs": { "n": 7_i64, "x": 1.5, "small": 3_i32 },
        }
    }

    fn scratch() -> PathBuf {
        let directory = std::env::temp_dir().join(format!(
            "logagg-archive-test-{}",
            uuid::Uuid::now_v7().simple()
        ));
        fs::create_dir_all(&directory).unwrap();
        directory
    }

    #[test]
    fn batches_append_to_one_file_per_service_day_and_read_back_exactly() {
        let directory = scratch();
        let archiver = Archiver::new(&directory);
        let first = vec![log("a", "web", 1), log("b", "web", 2), log("c", "auth", 1)];
        let second = vec![log("d", "web", 1)];
        let written = archiver.append(&first).unwrap();
        assert_eq!(written.len(), 3);
        archiver.append(&second).unwrap();
        let web_day_one = read_archive(&archiver.file_for("web", "2026-10-01")).unwrap();
        assert_eq!(web_day_one, vec![first[0].clone(), second[0].clone()]);
        assert_eq!(
            read_archive(&archiver.file_for("auth", "2026-10-01")).unwrap(),
            vec![first[2].clone()]
        );
        let leftovers: Vec<_> = fs::read_dir(directory.join("web"))
            .unwrap()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().to_string_lossy().ends_with(".partial"))
            .collect();
        assert!(leftovers.is_empty());
        fs::remove_dir_all(directory).unwrap();
    }

    #[test]
    fn hostile_service_names_stay_inside_the_directory() {
        let archiver = Archiver::new("/archive");
        let path = archiver.file_for("../../etc", "2026-10-01");
        assert!(path.starts_with("/archive/"));
        assert!(!path.to_string_lossy().contains(".."));
    }

    #[test]
    fn a_corrupt_line_is_reported_with_its_number() {
        let directory = scratch();
        let path = directory.join("bad.ndjson.gz");
        let mut encoder = GzEncoder::new(File::create(&path).unwrap(), Compression::fast());
        encoder.write_all(b"{\"_id\":\"a\"}\nnot json\n").unwrap();
        encoder.finish().unwrap();
        let error = read_archive(&path).unwrap_err();
        assert!(
            matches!(error, ArchiveError::BadLine { line: 2, .. }),
            "{error}"
        );
        fs::remove_dir_all(directory).unwrap();
    }
}
