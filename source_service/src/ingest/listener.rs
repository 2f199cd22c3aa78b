//! The gateway's stream and datagram listeners (syslog, GELF): what they share, whatever
//! the protocol. A TCP connection is split into frames by the protocol's [`Framing`]; a
//! datagram is a message, or (GELF) a chunk of one. Each message becomes a record or, when
//! it is none, is dead-lettered with the reason ([`Gateway::publish_or_dead_letter`]).
//!
//! What a connection (or the UDP socket) read is published and confirmed before more is
//! read, at most `max_unconfirmed` messages at a time: a slow broker slows the senders,
//! nothing queues in memory. `max_connections` connections are served at once; more wait
//! in the kernel's backlog. These protocols have no acknowledgement: messages read but not
//! yet confirmed when the gateway stops are lost to the sender, as are datagrams the
//! network or a full socket buffer drops.

use std::net::SocketAddr;
use std::sync::Arc;

use logagg::record::positioned_id;
use logagg::LogRecord;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::gateway::{Gateway, Protocol, Unparsed};

/// TCP connections closed because their framing could not be followed, by protocol and
/// reason.
const CLOSED: &str = "logagg_listener_connections_closed_total";
/// Datagrams the kernel dropped for a UDP listener (its socket's buffer full), by protocol:
/// the `drops` column of `/proc/net/udp`, read every [`DROPS_EVERY`].
const UDP_DROPPED: &str = "logagg_udp_dropped_total";
const DROPS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One frame of a TCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Message(Vec<u8>),
    /// A frame over the limit: its first bytes (the rest is skipped).
    TooLong(Vec<u8>),
}

/// What [`Framer::next`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A frame, and the bytes it took.
    Frame(Frame, usize),
    /// Bytes that are no frame (a blank line, the rest of a frame over the limit).
    Skip(usize),
    /// Not a whole frame yet.
    More,
}

/// Why a TCP stream cannot be framed further: the connection is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("octet count is not digits followed by a space")]
    BadOctetCount,
    #[error("octet count {0} is over syslog.max_frame_bytes")]
    OctetCountTooLarge(usize),
}

impl FramingError {
    fn label(&self) -> &'static str {
        match self {
            FramingError::BadOctetCount => "bad_octet_count",
            FramingError::OctetCountTooLarge(_) => "octet_count_too_large",
        }
    }
}

/// How a protocol splits a TCP stream into messages.
pub trait Framing: Send {
    /// What the front of `buffer` holds: a complete frame, bytes to skip, or not enough
    /// yet; an error when the stream cannot be followed (the connection is closed).
    fn next(&mut self, buffer: &[u8]) -> Result<Step, FramingError>;

    /// What is left when the connection ends: a last frame without its end (`Ok`), a cut
    /// frame that is none (`Err`), or nothing.
    fn finish(&mut self, rest: &[u8]) -> Option<Result<Vec<u8>, Vec<u8>>>;
}

/// How big a listener's frames, connections and batches may be.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub max_unconfirmed: usize,
}

/// What a listener's protocol knows: how its streams are framed, what a datagram holds,
/// how a message becomes a record.
pub trait Messages: Send + Sync + 'static {
    const PROTOCOL: Protocol;

    fn limits(&self) -> Limits;

    /// A fresh framer for a TCP connection.
    fn framer(&self) -> Box<dyn Framing>;

    /// A message as a record, or a reason code and the reason it is none.
    fn record(&self, message: &[u8], id: String) -> Result<LogRecord, (&'static str, String)>;

    /// The message a datagram completes: itself by default; GELF's chunks wait for the
    /// rest of their message (`Ok(None)`).
    fn datagram(&self, datagram: &[u8]) -> Result<Option<Vec<u8>>, (&'static str, String)> {
        Ok(Some(datagram.to_vec()))
    }
}

/// A frame as a record, or as what is dead-lettered.
fn frame_record<M: Messages>(
    messages: &M,
    frame: Frame,
    id: String,
) -> Result<LogRecord, Unparsed> {
    match frame {
        Frame::Message(bytes) => messages
            .record(&bytes, id.clone())
            .map_err(|(code, reason)| Unparsed {
                id,
                bytes,
                code,
                reason,
            }),
        Frame::TooLong(head) => Err(Unparsed {
            id,
            bytes: head,
            code: "too_large",
            reason: format!(
                "the frame is over {}.max_frame_bytes; its first bytes are kept",
                M::PROTOCOL.as_str()
            ),
        }),
    }
}

/// A fresh origin for record ids: a connection's, or a datagram's.
fn origin<M: Messages>(kind: &str) -> String {
    format!(
        "{}-{kind}-{}",
        M::PROTOCOL.as_str(),
        uuid::Uuid::now_v7().simple()
    )
}

/// Serves `messages`' protocol on TCP `listener` until `shutdown`, `max_connections`
/// connections at a time.
pub async fn serve_tcp<M: Messages>(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    messages: Arc<M>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(messages.limits().max_connections));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            () = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => slot?,
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, protocol = M::PROTOCOL.as_str(), "accepting a connection failed");
                    continue;
                }
            },
        };
        let (gateway, messages, shutdown) = (
            Arc::clone(&gateway),
            Arc::clone(&messages),
            shutdown.clone(),
        );
        connections.spawn(async move {
            serve_connection(stream, peer, &gateway, &*messages, &shutdown).await;
            drop(slot);
        });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_connection<M: Messages>(
    mut stream: TcpStream,
    peer: SocketAddr,
    gateway: &Gateway,
    messages: &M,
    shutdown: &CancellationToken,
) {
    let protocol = M::PROTOCOL.as_str();
    debug!(%peer, protocol, "connection");
    let source = format!("{protocol} tcp from {peer}");
    let origin = origin::<M>("tcp");
    let limits = messages.limits();
    let mut framer = messages.framer();
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut position = 0u64;
    let (mut ended, mut more_needed) = (false, true);
    loop {
        if more_needed && !ended {
            let read = tokio::select! {
                () = shutdown.cancelled() => return,
                read = stream.read_buf(&mut buffer) => read,
            };
            match read {
                Ok(0) => ended = true,
                Ok(_) => {}
                Err(error) => {
                    debug!(%peer, %error, protocol, "connection failed");
                    ended = true;
                }
            }
        }
        // The frames read, at most `max_unconfirmed` before they are published.
        let mut parsed = Vec::new();
        let mut taken = 0;
        let mut framing_error = None;
        more_needed = true;
        loop {
            if parsed.len() >= limits.max_unconfirmed {
                more_needed = false;
                break;
            }
            match framer.next(&buffer[taken..]) {
                Ok(Step::Frame(frame, used)) => {
                    taken += used;
                    let id = positioned_id(&origin, position);
                    position += 1;
                    parsed.push(frame_record(messages, frame, id));
                }
                Ok(Step::Skip(used)) => taken += used,
                Ok(Step::More) => break,
                Err(error) => {
                    framing_error = Some(error);
                    break;
                }
            }
        }
        buffer.drain(..taken);
        let finished = ended && more_needed && framing_error.is_none();
        if finished {
            if let Some(rest) = framer.finish(&buffer) {
                let id = positioned_id(&origin, position);
                parsed.push(match rest {
                    Ok(line) => frame_record(messages, Frame::Message(line), id),
                    Err(cut) => Err(Unparsed {
                        id,
                        bytes: cut,
                        code: "truncated",
                        reason: "the connection ended inside an octet-counted frame".into(),
                    }),
                });
            }
        }
        if !parsed.is_empty()
            && gateway
                .publish_or_dead_letter(M::PROTOCOL, &source, parsed, shutdown)
                .await
                .is_err()
        {
            return; // Only shutdown ends the re-sending.
        }
        if let Some(error) = framing_error {
            warn!(%peer, %error, protocol, "closing a connection");
            metrics::counter!(CLOSED, "protocol" => protocol, "reason" => error.label())
                .increment(1);
            return;
        }
        if finished {
            return;
        }
    }
}

/// Batches of parsed datagrams queued between the UDP receiver and its publisher: the
/// receiver fills the next while one is being confirmed.
const UDP_BATCHES_QUEUED: usize = 2;

/// Serves `messages`' protocol on UDP `socket` until `shutdown`. One task receives and
/// parses the datagrams that have arrived, at most `max_unconfirmed` a batch; another
/// publishes each batch and waits for its confirms, while the receiver fills the next (at
/// most [`UDP_BATCHES_QUEUED`] wait). When both are behind, the socket's buffer fills and the
/// kernel drops what comes: UDP's back-pressure.
pub async fn serve_udp<M: Messages>(
    socket: UdpSocket,
    gateway: Arc<Gateway>,
    messages: Arc<M>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let protocol = M::PROTOCOL.as_str();
    let source = format!("{protocol} udp on {}", socket.local_addr()?);
    let (batches, mut to_publish) = tokio::sync::mpsc::channel(UDP_BATCHES_QUEUED);
    let publisher = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            while let Some(parsed) = to_publish.recv().await {
                if gateway
                    .publish_or_dead_letter(M::PROTOCOL, &source, parsed, &shutdown)
                    .await
                    .is_err()
                {
                    return; // Only shutdown ends the re-sending.
                }
            }
        }
    });
    let limits = messages.limits();
    let mut datagram = vec![0u8; limits.max_frame_bytes + 1];
    let inode = socket_inode(&socket);
    let mut drops_check = tokio::time::interval(DROPS_EVERY);
    loop {
        let mut parsed = Vec::new();
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            _ = drops_check.tick() => {
                if let Some(dropped) = inode.and_then(kernel_drops) {
                    metrics::counter!(UDP_DROPPED, "protocol" => protocol).absolute(dropped);
                }
                continue;
            }
            received = socket.recv_from(&mut datagram) => received,
        };
        let mut received = Some(first);
        while let Some(outcome) = received.take() {
            match outcome {
                Ok((length, _peer)) => {
                    if let Some(result) = datagram_record(&*messages, &datagram, length, &limits) {
                        parsed.push(result);
                    }
                }
                Err(error) => warn!(%error, protocol, "receiving a datagram failed"),
            }
            if parsed.len() < limits.max_unconfirmed {
                received = match socket.try_recv_from(&mut datagram) {
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => None,
                    other => Some(other),
                };
            }
        }
        if parsed.is_empty() {
            continue;
        }
        let queued = tokio::select! {
            () = shutdown.cancelled() => break,
            queued = batches.send(parsed) => queued,
        };
        if queued.is_err() {
            break; // The publisher stopped: shutdown.
        }
    }
    drop(batches);
    let _ = publisher.await;
    Ok(())
}

/// The inode of a socket (`/proc/self/fd/<fd>` names it `socket:[<inode>]`), on Linux.
fn socket_inode(socket: &UdpSocket) -> Option<u64> {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
    let name = link.to_str()?;
    name.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The kernel's count of datagrams dropped for the UDP socket `inode`.
fn kernel_drops(inode: u64) -> Option<u64> {
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .find_map(|table| drops_in_table(&table, inode))
}

/// The `drops` column of the row of socket `inode` in a `/proc/net/udp` table.
fn drops_in_table(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|row| {
        let columns: Vec<&str> = row.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        (columns.get(9)?.parse::<u64>().ok()? == inode)
            .then(|| columns.last()?.parse().ok())
            .flatten()
    })
}

/// The record (or dead letter) a datagram of `length` bytes makes, `None` for a chunk
/// whose message is not whole yet.
fn datagram_record<M: Messages>(
    messages: &M,
    datagram: &[u8],
    length: usize,
    limits: &Limits,
) -> Option<Result<LogRecord, Unparsed>> {
    let id = positioned_id(&origin::<M>("udp"), 0);
    let frame = if length > limits.max_frame_bytes {
        Some(Ok(Frame::TooLong(
            datagram[..limits.max_frame_bytes].to_vec(),
        )))
    } else {
        messages
            .datagram(&datagram[..length])
            .map(|whole| whole.map(Frame::Message))
            .transpose()
    };
    match frame? {
        Ok(frame) => Some(frame_record(messages, frame, id)),
        Err((code, reason)) => Some(Err(Unparsed {
            id,
            bytes: datagram[..length].to_vec(),
            code,
            reason,
        })),
    }
}

/// Binds a protocol's TCP and UDP listeners (`<section>.listen_tcp`, `.listen_udp`).
pub async fn bind(
    section: &str,
    tcp: std::net::SocketAddr,
    udp: std::net::SocketAddr,
) -> anyhow::Result<(TcpListener, UdpSocket)> {
    use anyhow::Context;
    let tcp = TcpListener::bind(tcp)
        .await
        .with_context(|| format!("binding {section}.listen_tcp {tcp}"))?;
    let udp = bind_udp(udp, &format!("{section}.listen_udp"))?;
    tracing::info!(tcp = %tcp.local_addr()?, udp = %udp.local_addr()?, section, "listening");
    Ok((tcp, udp))
}

/// What a UDP socket's receive buffer is asked to hold: bursts wait there while a batch is
/// parsed. The kernel caps it at `net.core.rmem_max` (raise that for bigger bursts).
pub const UDP_RECEIVE_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// A UDP socket bound to `address` with [`UDP_RECEIVE_BUFFER_BYTES`] asked for; the size
/// the kernel granted is logged.
fn bind_udp(address: std::net::SocketAddr, setting: &str) -> anyhow::Result<UdpSocket> {
    use anyhow::Context;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    if let Err(error) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER_BYTES) {
        warn!(%error, setting, "could not enlarge the UDP receive buffer");
    }
    socket.set_nonblocking(true)?;
    socket
        .bind(&address.into())
        .with_context(|| format!("binding {setting} {address}"))?;
    let granted = socket.recv_buffer_size().unwrap_or(0);
    tracing::info!(setting, granted, "UDP receive buffer");
    Ok(UdpSocket::from_std(socket.into())?)
}

#[cfg(test)]
mod tests {
    use super::drops_in_table;

    #[test]
    fn drops_are_read_from_the_sockets_row() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
 1234: 0100007F:3039 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 98765 2 0000000000000000 17\n\
 1235: 0100007F:303A 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 98766 2 0000000000000000 0\n";
        assert_eq!(drops_in_table(table, 98765), Some(17));
        assert_eq!(drops_in_table(table, 98766), Some(0));
        assert_eq!(drops_in_table(table, 1), None);
    }
}
