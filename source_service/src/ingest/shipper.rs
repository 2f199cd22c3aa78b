//! The shipper: `source_service ship --file PATH --format clf --service web` tails a log
//! file (or reads stdin) and publishes each line as a record, with publisher confirms.
//!
//! Its offset (file identity and byte position) is saved in `--state-dir` only after the
//! broker confirmed every line before it, so a restart resumes where confirmed lines end:
//! nothing is skipped. A line's record id is `<file generation>-<byte offset>`: a crash
//! between a confirm and the save re-sends a few lines, which store once, while identical
//! lines at different offsets are different records. The generation is minted when the
//! shipper starts a file from its beginning (first sight, rotation, truncation) and saved
//! before any of its lines is sent, so a reused inode or a truncated file never reuses ids.
//! Rotation is followed: when the path names a new file, the old one is read to its end
//! first, then the new one from its start, while the old one is read on until it has been
//! quiet for `rotate_wait` (a writer may append to it until it reopens the path; Fluent
//! Bit's `rotate_wait` has the same role); a truncated file is read again from the start.
//! Lines that do not parse go to the dead-letter queue with the reason, not into the void.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use lapin::BasicProperties;
use logagg::broker;
use logagg::formats::{parse_line, LineContext, LineFormat};
use logagg::parse::record_body;
use logagg::publisher::{GiveUp, Outgoing, Resender, Settled};
use logagg::record::positioned_id;
use logagg::runtime::{Declare, LazyChannel};
use logagg::settings::Settings;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Lines published per confirm round at most.
const BATCH_LINES: usize = 1_000;

#[derive(Debug, Clone)]
pub struct ShipOptions {
    /// The file to tail; `None` reads stdin to its end.
    pub path: Option<PathBuf>,
    pub format: LineFormat,
    pub service: Option<String>,
    pub state_dir: PathBuf,
    /// Keep waiting for new lines at the end of the file (`false`: stop at the end).
    pub follow: bool,
    pub poll: Duration,
    /// How long a rotated-away file is read on after it last grew.
    pub rotate_wait: Duration,
}

/// What a shipping run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShipReport {
    pub shipped: u64,
    pub dead_lettered: u64,
}

/// Where reading stands: which file (device, inode and generation) and how far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    device: u64,
    inode: u64,
    /// Minted when reading of this file began at its start; the origin of its lines' ids.
    /// Empty in state files written before ids had it: such a file is read on with a new one.
    #[serde(default)]
    generation: String,
    offset: u64,
}

impl Position {
    /// The start of the file with this device and inode, under a new generation.
    fn start_of(device: u64, inode: u64) -> Position {
        Position {
            device,
            inode,
            generation: new_generation(),
            offset: 0,
        }
    }
}

/// A fresh origin for record ids: a UUID, unique per file read from its start (and per run
/// of stdin).
fn new_generation() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Lines read in one go, each with the byte offset it starts at.
#[derive(Debug, Default)]
struct LinesRead {
    lines: Vec<(u64, String)>,
    /// Bytes of the lines read, blank ones included.
    consumed: u64,
    /// The reader had nothing more (a held-back unterminated line aside).
    at_end: bool,
}

/// What the bytes after the last newline are when the reader ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unterminated {
    /// A line of its own: stdin's last line needs no newline.
    IsALine,
    /// A line still being written: left unread (not in `consumed`) for a later pass.
    HeldBack,
}

/// Up to [`BATCH_LINES`] non-blank lines from `reader`, which stands at byte `start`.
fn read_lines(
    reader: &mut impl BufRead,
    start: u64,
    unterminated: Unterminated,
) -> std::io::Result<LinesRead> {
    let mut read = LinesRead::default();
    let mut buffer = Vec::new();
    while read.lines.len() < BATCH_LINES {
        buffer.clear();
        let length = reader.read_until(b'\n', &mut buffer)?;
        if length == 0 {
            read.at_end = true;
            break;
        }
        if buffer.last() != Some(&b'\n') && unterminated == Unterminated::HeldBack {
            read.at_end = true;
            break;
        }
        let line_start = start + read.consumed;
        read.consumed += length as u64;
        let line = String::from_utf8_lossy(&buffer);
        let line = line.trim_end_matches(['\n', '\r']);
        if !line.trim().is_empty() {
            read.lines.push((line_start, line.to_owned()));
        }
    }
    Ok(read)
}

/// Ships until the end (stdin, or the file without `follow`) or `shutdown`.
pub async fn ship(
    settings: &Settings,
    options: &ShipOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<ShipReport> {
    let link = LazyChannel::new(
        settings.broker.clone(),
        "source_service-shipper",
        Declare::LogTopology,
    );
    let publisher = LinePublisher {
        link: &link,
        shutdown,
        settings,
        options,
        source: options.path.as_ref().map_or_else(
            || "shipper:stdin".to_owned(),
            |path| format!("shipper:{}", path.display()),
        ),
    };
    let report = match &options.path {
        None => ship_stdin(&publisher).await,
        Some(path) => ship_file(&publisher, path, shutdown).await,
    };
    link.reset().await;
    report
}

async fn ship_stdin(publisher: &LinePublisher<'_>) -> anyhow::Result<ShipReport> {
    let mut report = ShipReport::default();
    let generation = new_generation();
    let stdin = std::io::stdin();
    let mut offset = 0;
    loop {
        // The lock is taken per batch: it must not be held across the publish's awaits.
        let read = read_lines(&mut stdin.lock(), offset, Unterminated::IsALine)
            .context("reading stdin")?;
        offset += read.consumed;
        publisher
            .publish(&generation, &read.lines, &mut report)
            .await?;
        if read.at_end {
            return Ok(report);
        }
    }
}

async fn ship_file(
    publisher: &LinePublisher<'_>,
    path: &Path,
    shutdown: &CancellationToken,
) -> anyhow::Result<ShipReport> {
    let options = publisher.options;
    std::fs::create_dir_all(&options.state_dir)
        .with_context(|| format!("creating {}", options.state_dir.display()))?;
    let state_path = options.state_dir.join(state_file_name(path));
    let mut report = ShipReport::default();
    let mut current = loop {
        match File::open(path) {
            Ok(file) => {
                let saved = read_position(&state_path);
                break open_at(file, saved, path)?;
            }
            Err(error) if options.follow && error.kind() == std::io::ErrorKind::NotFound => {
                if !logagg::shutdown::sleep_unless_cancelled(options.poll, shutdown).await {
                    return Ok(report);
                }
            }
            Err(error) => return Err(error).with_context(|| format!("opening {}", path.display())),
        }
    };
    // The generation must be on disk before any of its lines is sent (see the module doc).
    save_position(&state_path, &current.position)?;
    info!(path = %path.display(), offset = current.position.offset, "shipping");
    let mut rotated: Vec<Rotated> = Vec::new();
    loop {
        let step = current
            .step(publisher, Unterminated::HeldBack, &mut report)
            .await?;
        if step.consumed > 0 {
            save_position(&state_path, &current.position)?;
        }
        if !step.at_end {
            continue;
        }
        // At the end of the file: has the path moved on to a new file, or been truncated?
        let position = &current.position;
        if let Ok(metadata) = std::fs::metadata(path) {
            if (metadata.dev(), metadata.ino()) != (position.device, position.inode) {
                // Lines written between the end just read and the rename are in the old
                // file: read it to its end before the new file's position is saved, and
                // keep reading it for a while, for writers that have not reopened the path.
                let file =
                    File::open(path).with_context(|| format!("opening {}", path.display()))?;
                let mut old = Rotated {
                    file: std::mem::replace(&mut current, open_at(file, None, path)?),
                    last_growth: Instant::now(),
                };
                old.read_on(publisher, &mut report).await?;
                info!(
                    path = %path.display(),
                    old_file_read_to = old.file.position.offset,
                    "rotated: the old file read to its end, the new one from its start"
                );
                rotated.push(old);
                save_position(&state_path, &current.position)?;
                continue;
            }
            if metadata.len() < position.offset {
                warn!(path = %path.display(), "truncated: reading it again from the start");
                current.position = Position::start_of(position.device, position.inode);
                current.reader.seek(SeekFrom::Start(0))?;
                save_position(&state_path, &current.position)?;
                continue;
            }
        }
        if !options.follow {
            read_rotated(publisher, &mut rotated, None, &mut report).await?;
            return Ok(report);
        }
        read_rotated(
            publisher,
            &mut rotated,
            Some(options.rotate_wait),
            &mut report,
        )
        .await?;
        if !logagg::shutdown::sleep_unless_cancelled(options.poll, shutdown).await {
            read_rotated(publisher, &mut rotated, None, &mut report).await?;
            return Ok(report);
        }
    }
}

/// A file being read: its reader and where it stands.
struct OpenFile {
    reader: BufReader<File>,
    position: Position,
}

/// What one [`OpenFile::step`] did.
struct Step {
    consumed: u64,
    at_end: bool,
}

impl OpenFile {
    /// Reads up to [`BATCH_LINES`] lines, publishes them and moves the offset past them.
    async fn step(
        &mut self,
        publisher: &LinePublisher<'_>,
        unterminated: Unterminated,
        report: &mut ShipReport,
    ) -> anyhow::Result<Step> {
        let read = read_lines(&mut self.reader, self.position.offset, unterminated)?;
        publisher
            .publish(&self.position.generation, &read.lines, report)
            .await?;
        self.position.offset += read.consumed;
        if read.at_end {
            // A held-back line's bytes were read: stand again where complete lines end.
            self.reader.seek(SeekFrom::Start(self.position.offset))?;
        }
        Ok(Step {
            consumed: read.consumed,
            at_end: read.at_end,
        })
    }
}

/// A file the path named before a rotation. A writer that has not reopened the path yet
/// still appends to it, so it is read on until it has not grown for `rotate_wait`. Its
/// offset is not saved: lines it gains after the rotation are lost if the shipper is killed
/// before reading them (a clean stop reads them; everything written before the rotation was
/// seen is read before the new file's position is saved).
struct Rotated {
    file: OpenFile,
    last_growth: Instant,
}

impl Rotated {
    /// Publishes the complete lines the file gained since the last read.
    async fn read_on(
        &mut self,
        publisher: &LinePublisher<'_>,
        report: &mut ShipReport,
    ) -> anyhow::Result<()> {
        loop {
            let step = self
                .file
                .step(publisher, Unterminated::HeldBack, report)
                .await?;
            if step.consumed > 0 {
                self.last_growth = Instant::now();
            }
            if step.at_end {
                return Ok(());
            }
        }
    }
}

/// Reads on in every rotated file, and lets go of those quiet for `rotate_wait` (of all
/// of them when `None`) after publishing an unterminated last line too.
async fn read_rotated(
    publisher: &LinePublisher<'_>,
    rotated: &mut Vec<Rotated>,
    rotate_wait: Option<Duration>,
    report: &mut ShipReport,
) -> anyhow::Result<()> {
    for file in rotated.iter_mut() {
        file.read_on(publisher, report).await?;
    }
    let (done, waiting): (Vec<Rotated>, Vec<Rotated>) = std::mem::take(rotated)
        .into_iter()
        .partition(|file| rotate_wait.is_none_or(|wait| file.last_growth.elapsed() >= wait));
    *rotated = waiting;
    for mut done in done {
        done.file
            .step(publisher, Unterminated::IsALine, report)
            .await?;
    }
    Ok(())
}

/// A reader on `file` at the saved offset when the saved position is this file's and not
/// past its end, else at its start.
fn open_at(file: File, saved: Option<Position>, path: &Path) -> anyhow::Result<OpenFile> {
    let metadata = file.metadata()?;
    let fresh = Position::start_of(metadata.dev(), metadata.ino());
    let position = match saved {
        Some(saved)
            if (saved.device, saved.inode) == (fresh.device, fresh.inode)
                && !saved.generation.is_empty() =>
        {
            if saved.offset <= metadata.len() {
                saved
            } else {
                warn!(path = %path.display(), "shorter than the saved offset: truncated while stopped; reading from the start");
                fresh
            }
        }
        Some(saved) if (saved.device, saved.inode) == (fresh.device, fresh.inode) => {
            // A state file from before line ids had a generation: go on from its offset.
            Position {
                offset: saved.offset.min(metadata.len()),
                ..fresh
            }
        }
        Some(_) => {
            warn!(
                path = %path.display(),
                "a new file since the last run (rotated while stopped): reading it from the start"
            );
            fresh
        }
        None => fresh,
    };
    let mut reader = BufReader::new(file);
    reader.seek(SeekFrom::Start(position.offset))?;
    Ok(OpenFile { reader, position })
}

fn state_file_name(path: &Path) -> String {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name: String = absolute
        .to_string_lossy()
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '.' {
                character
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.offset")
}

fn read_position(state_path: &Path) -> Option<Position> {
    let text = std::fs::read_to_string(state_path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Writes the position to a temporary file, syncs it and renames it into place: a crash
/// leaves the old position or the new one, never half of one.
fn save_position(state_path: &Path, position: &Position) -> anyhow::Result<()> {
    let temporary = state_path.with_extension("offset.tmp");
    let mut file = File::create(&temporary)?;
    file.write_all(&serde_json::to_vec(position)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, state_path)?;
    Ok(())
}

/// Publishes lines: records to the exchange, unparseable lines to the dead-letter exchange
/// with the reason; returns once the broker confirmed all of them.
struct LinePublisher<'a> {
    link: &'a LazyChannel,
    shutdown: &'a CancellationToken,
    settings: &'a Settings,
    options: &'a ShipOptions,
    source: String,
}

impl LinePublisher<'_> {
    /// Publishes `(byte offset, line)` pairs read from the file (or stdin run) `generation`.
    async fn publish(
        &self,
        generation: &str,
        lines: &[(u64, String)],
        report: &mut ShipReport,
    ) -> anyhow::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let broker_settings = &self.settings.broker;
        let context = LineContext {
            service: self.options.service.as_deref(),
            received_at: Utc::now(),
        };
        let mut resender = Resender::new(
            self.link,
            GiveUp {
                deadline: None,
                shutdown: Some(self.shutdown.clone()),
            },
        );
        let mut dead_lettered = 0;
        for (offset, line) in lines {
            let id = positioned_id(generation, *offset);
            let (exchange, routing_key, body, properties) =
                match parse_line(self.options.format, line, id, &context) {
                    Ok(record) => (
                        broker_settings.exchange.as_str(),
                        logagg::parse::routing_key(&record.service, record.severity),
                        record_body(&record),
                        broker::log_properties(broker::CONTENT_TYPE_JSON, &record.id),
                    ),
                    Err(error) => {
                        dead_lettered += 1;
                        // Its id too, so a re-send after a lost confirm is recognisable.
                        let properties = BasicProperties::default()
                            .with_content_type(broker::CONTENT_TYPE_TEXT.into())
                            .with_message_id(positioned_id(generation, *offset).into());
                        (
                            broker_settings.dead_letter_exchange.as_str(),
                            format!(
                                "{}.unparsed",
                                self.options.service.as_deref().unwrap_or("unknown")
                            ),
                            line.as_bytes().to_vec(),
                            broker::dead_letter_properties(
                                &properties,
                                error.code(),
                                &error.to_string(),
                                &self.source,
                            ),
                        )
                    }
                };
            let message = Outgoing {
                exchange: exchange.into(),
                routing_key: routing_key.into(),
                body,
                properties,
            };
            resender.send(message, ()).await.context("publishing")?;
        }
        while let Some(settled) = resender.next().await {
            if settled.context("publishing")?.0 != Settled::Queued {
                anyhow::bail!("no queue took a line (unroutable): is the topology declared?");
            }
        }
        report.shipped += (lines.len() - dead_lettered) as u64;
        report.dead_lettered += dead_lettered as u64;
        Ok(())
    }
}
