//! `DurableQueue`: the write queue of one backend, in memory while the backend keeps up,
//! in a write-ahead log on disk when it does not.
//!
//! Items are opaque strings (line protocol for InfluxDB, JSON for Redis). While the
//! backend answers, items wait in a bounded in-memory queue. When a write fails, or the
//! memory queue is full, everything unsent goes to the spool under the data directory,
//! and so does every later item until the spool is drained — so order is kept: memory
//! first (older), then the spool. Items leave memory only once they are on disk.
//!
//! The spool is a log of records `[length: u32 LE][CRC-32 of the payload: u32 LE]
//! [payload]`, synced to disk after each append (`persist.spool_fsync`). A process
//! killed mid-append leaves a torn last record: opening the spool checks every record
//! from the read position on and cuts the file after the last whole one (with a
//! warning), so every whole record is replayed and appending goes on. The read position
//! is saved after each acknowledged batch, through a temporary file renamed over the old
//! one, so a process that dies (even by SIGKILL) resumes where it left off; at worst the
//! last batch is sent twice, which both backends absorb (InfluxDB overwrites the same
//! point, Redis the same key). The spool never grows past `persist.spool_max_bytes`:
//! past it an append is refused (`ErrorKind::StorageFull`) and the items stay in memory.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

/// Bytes before each record's payload: its length and its checksum.
const HEADER: usize = 8;
/// A record claiming more than this is corrupt, not large.
const MAX_RECORD: u32 = 64 * 1024 * 1024;

/// How the spool treats the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// The spool file's size limit.
    pub max_bytes: u64,
    /// Sync each append to the disk before it counts as written.
    pub fsync: bool,
}

pub struct DurableQueue {
    /// Items not on disk yet, oldest first, each with its number (see `pushed`).
    memory: VecDeque<(u64, String)>,
    /// How many items were ever pushed in this process: the number of the next one.
    pushed: u64,
    max_memory: usize,
    spool: PathBuf,
    offset_file: PathBuf,
    options: SpoolOptions,
    /// Bytes of the spool already acknowledged.
    offset: u64,
    /// The spool file's length.
    spool_bytes: u64,
    /// Items in the spool not yet acknowledged.
    spooled: usize,
    /// Where the current batch came from, and its size in bytes when from the spool.
    batch: Option<BatchSource>,
}

enum BatchSource {
    Memory(usize),
    Spool { items: usize, bytes: u64 },
}

/// The records of `items`, and how many.
fn frame<'a>(items: impl Iterator<Item = &'a String>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut n = 0;
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(item.as_bytes()).to_le_bytes());
        out.extend_from_slice(item.as_bytes());
        n += 1;
    }
    (out, n)
}

/// The next whole record of `reader`: `Ok(None)` at a clean end, `Err` for a torn or
/// corrupt one (InvalidData) or a failing read.
fn read_record(reader: &mut impl Read) -> io::Result<Option<(String, u64)>> {
    let mut header = [0u8; HEADER];
    let mut filled = 0;
    while filled < HEADER {
        match reader.read(&mut header[filled..])? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(io::Error::new(ErrorKind::InvalidData, "a record header cut short")),
            n => filled += n,
        }
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return Err(io::Error::new(ErrorKind::InvalidData, "a record length out of range"));
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).map_err(|_| io::Error::new(ErrorKind::InvalidData, "a record cut short"))?;
    if crc32fast::hash(&payload) != crc {
        return Err(io::Error::new(ErrorKind::InvalidData, "a record whose checksum does not match"));
    }
    let item = String::from_utf8(payload).map_err(|_| io::Error::new(ErrorKind::InvalidData, "a record not UTF-8"))?;
    Ok(Some((item, HEADER as u64 + len as u64)))
}

impl DurableQueue {
    /// Opens the queue of `name` under `dir`, picking up a spool left by an earlier run:
    /// a torn tail is cut off (with a warning), and a line-per-item spool of an older
    /// version is carried over.
    pub fn open(dir: &Path, name: &str, max_memory: usize, options: SpoolOptions) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let spool = dir.join(format!("{name}.wal"));
        let offset_file = dir.join(format!("{name}.wal.offset"));
        let offset = fs::read_to_string(&offset_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut queue = Self {
            memory: VecDeque::new(),
            pushed: 0,
            max_memory: max_memory.max(1),
            spool,
            offset_file,
            options,
            offset,
            spool_bytes: 0,
            spooled: 0,
            batch: None,
        };
        queue.recover(name)?;
        queue.carry_over_line_spool(dir, name)?;
        Ok(queue)
    }

    /// Counts the whole records after the read position and cuts a torn tail.
    fn recover(&mut self, name: &str) -> io::Result<()> {
        let file = match File::open(&self.spool) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.offset = 0;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let length = file.metadata()?.len();
        self.offset = self.offset.min(length);
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(self.offset))?;
        let mut good = self.offset;
        loop {
            match read_record(&mut reader) {
                Ok(Some((_, bytes))) => {
                    good += bytes;
                    self.spooled += 1;
                }
                Ok(None) => break,
                Err(e) if e.kind() == ErrorKind::InvalidData => {
                    warn!(
                        backend = name,
                        kept = self.spooled,
                        cut_bytes = length - good,
                        reason = %e,
                        "the spool ends in a torn record (a write cut short); replaying every whole record before it"
                    );
                    OpenOptions::new().write(true).open(&self.spool)?.set_len(good)?;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        self.spool_bytes = good;
        Ok(())
    }

    /// A spool of the line-per-item format (before the log) becomes records.
    fn carry_over_line_spool(&mut self, dir: &Path, name: &str) -> io::Result<()> {
        let (old, old_offset) = (dir.join(format!("{name}.spool")), dir.join(format!("{name}.spool.offset")));
        let Ok(file) = File::open(&old) else { return Ok(()) };
        let offset = fs::read_to_string(&old_offset).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut reader = BufReader::new(file);
        reader.seek(SeekFrom::Start(offset))?;
        // Lines cut mid-character are carried as far as they are readable.
        let lines: Vec<String> = reader
            .split(b'\n')
            .map_while(Result::ok)
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .filter(|l| !l.is_empty())
            .collect();
        let (records, n) = frame(lines.iter());
        self.append(records, n)?;
        fs::remove_file(&old)?;
        let _ = fs::remove_file(&old_offset);
        Ok(())
    }

    /// Items waiting, in memory and on disk.
    pub fn len(&self) -> usize {
        self.memory.len() + self.spooled
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn spooled(&self) -> usize {
        self.spooled
    }

    /// The spool file's size in bytes.
    pub fn spool_bytes(&self) -> u64 {
        self.spool_bytes
    }

    /// How many items were pushed so far: an item is durable once `durable()` reaches
    /// the count at its push.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }

    /// How many of the pushed items, counted from the first, are durable: written to
    /// the backend or to the spool. (An item kept in memory holds back the count of
    /// newer ones that may be on disk already: the count is never too high.)
    pub fn durable(&self) -> u64 {
        self.memory.front().map_or(self.pushed, |(number, _)| *number)
    }

    /// Queues an item; returns how many items went to disk (0 or 1, or the whole memory
    /// queue when it overflowed). When the spool refuses them they stay in memory and
    /// the error says why.
    pub fn push(&mut self, item: String) -> io::Result<usize> {
        let number = self.pushed;
        self.pushed += 1;
        if self.spooled > 0 {
            let (records, n) = frame(std::iter::once(&item));
            return match self.append(records, n) {
                Ok(()) => Ok(1),
                Err(e) => {
                    self.memory.push_back((number, item));
                    Err(e)
                }
            };
        }
        self.memory.push_back((number, item));
        if self.memory.len() > self.max_memory { self.spill() } else { Ok(0) }
    }

    /// Moves every in-memory item not in flight to the spool (the backend is down); they
    /// leave memory only once they are on disk. Returns how many moved.
    pub fn spill(&mut self) -> io::Result<usize> {
        let keep = match self.batch {
            Some(BatchSource::Memory(n)) => n.min(self.memory.len()),
            _ => 0,
        };
        if self.memory.len() <= keep {
            return Ok(0);
        }
        let (records, n) = frame(self.memory.range(keep..).map(|(_, item)| item));
        self.append(records, n)?;
        self.memory.truncate(keep);
        Ok(n)
    }

    /// Appends `n` framed records and syncs them; all or none count as spooled.
    fn append(&mut self, buffer: Vec<u8>, n: usize) -> io::Result<()> {
        fail::fail_point!("spool-append", |_| Err(io::Error::new(ErrorKind::StorageFull, "spool-append failpoint")));
        if n == 0 {
            return Ok(());
        }
        if self.spool_bytes + buffer.len() as u64 > self.options.max_bytes {
            return Err(io::Error::new(
                ErrorKind::StorageFull,
                format!("the spool would pass persist.spool_max_bytes ({} bytes)", self.options.max_bytes),
            ));
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&self.spool)?;
        if let Err(e) =
            file.write_all(&buffer).and_then(|()| if self.options.fsync { file.sync_data() } else { Ok(()) })
        {
            // Whatever part of it reached the file is a torn tail: cut it.
            let _ = file.set_len(self.spool_bytes);
            return Err(e);
        }
        self.spool_bytes += buffer.len() as u64;
        self.spooled += n;
        Ok(())
    }

    /// Everything in memory to disk, the batch in flight too (at exit: a batch whose
    /// write may yet succeed is written twice rather than lost; both backends absorb
    /// that, and a replayed older Redis snapshot is refused by its fence).
    pub fn spill_all(&mut self) -> io::Result<usize> {
        self.batch = None;
        self.spill()
    }

    /// The batch from `next_batch` failed: the backend is down. Everything in memory goes
    /// to disk, oldest first — unless older items are already spooled after a batch kept
    /// in memory, which then stays in memory to be retried first, keeping the order.
    /// Returns how many items moved.
    pub fn fail(&mut self) -> io::Result<usize> {
        match self.batch.take() {
            Some(BatchSource::Memory(n)) if self.spooled > 0 => {
                self.batch = Some(BatchSource::Memory(n));
                let moved = self.spill();
                self.batch = None;
                moved
            }
            _ => self.spill(),
        }
    }

    /// The next items to send, oldest first; the same ones again until acknowledged.
    pub fn next_batch(&mut self, max: usize) -> io::Result<Vec<String>> {
        if !self.memory.is_empty() {
            let n = self.memory.len().min(max);
            self.batch = Some(BatchSource::Memory(n));
            return Ok(self.memory.iter().take(n).map(|(_, item)| item.clone()).collect());
        }
        if self.spooled == 0 {
            self.batch = None;
            return Ok(Vec::new());
        }
        let mut reader = BufReader::new(File::open(&self.spool)?);
        reader.seek(SeekFrom::Start(self.offset))?;
        let mut items = Vec::new();
        let mut bytes = 0u64;
        while items.len() < max {
            match read_record(&mut reader)? {
                Some((item, size)) => {
                    bytes += size;
                    items.push(item);
                }
                None => break,
            }
        }
        self.batch = Some(BatchSource::Spool { items: items.len(), bytes });
        Ok(items)
    }

    /// The batch from `next_batch` was written.
    pub fn ack(&mut self) -> io::Result<()> {
        match self.batch.take() {
            Some(BatchSource::Memory(n)) => {
                self.memory.drain(..n.min(self.memory.len()));
            }
            Some(BatchSource::Spool { items, bytes }) => {
                self.spooled -= items.min(self.spooled);
                self.offset += bytes;
                if self.spooled == 0 {
                    // Drained: start afresh (new items go to memory again).
                    let _ = fs::remove_file(&self.spool);
                    let _ = fs::remove_file(&self.offset_file);
                    self.offset = 0;
                    self.spool_bytes = 0;
                } else {
                    self.save_offset()?;
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Writes the read position through a temporary file renamed over the old one, so
    /// the position on disk is always a whole number.
    fn save_offset(&self) -> io::Result<()> {
        let temporary = self.offset_file.with_extension("offset.tmp");
        {
            let mut file = File::create(&temporary)?;
            file.write_all(self.offset.to_string().as_bytes())?;
            if self.options.fsync {
                file.sync_data()?;
            }
        }
        fs::rename(&temporary, &self.offset_file)
    }
}

/// What the persister knows of a queue between calls: its state after the last call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Items waiting, in memory and on disk.
    pub len: usize,
    pub spooled: usize,
    pub spool_bytes: u64,
    /// See [`DurableQueue::durable`].
    pub durable: u64,
    /// See [`DurableQueue::pushed`].
    pub pushed: u64,
    /// How many calls the queue has run: a later one's stats replace an earlier one's.
    pub calls: u64,
}

type Job = Box<dyn FnOnce(&mut DurableQueue, u64) + Send>;

/// A [`DurableQueue`] on a thread of its own, so its disk I/O (appends synced to disk,
/// reads of the spool, the read position) never runs on an async thread. Calls run one
/// at a time in the order they were made, so pushes keep their order and a call sees
/// every earlier one's effect; each answers its result with the queue's stats after it.
/// The thread ends when the last handle is dropped.
#[derive(Clone)]
pub struct QueueThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

/// The queue's thread is gone (it panicked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueGone;

impl QueueThread {
    /// Moves `queue` to a new thread named after `name`; returns its stats as it starts.
    pub fn spawn(name: &str, queue: DurableQueue) -> io::Result<(Self, QueueStats)> {
        let stats = queue.stats(0);
        let (jobs, inbox) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new().name(format!("spool-{name}")).spawn(move || {
            let mut queue = queue;
            let mut calls = 0;
            while let Ok(job) = inbox.recv() {
                calls += 1;
                job(&mut queue, calls);
            }
        })?;
        Ok((Self { jobs }, stats))
    }

    /// Runs `f` on the queue after every earlier call.
    pub fn call<R: Send + 'static, F: FnOnce(&mut DurableQueue) -> R + Send + 'static>(
        &self,
        f: F,
    ) -> impl std::future::Future<Output = Result<(R, QueueStats), QueueGone>> + use<R, F> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |queue, calls| {
            let result = f(queue);
            let _ = tx.send((result, queue.stats(calls)));
        });
        let sent = self.jobs.send(job).is_ok();
        async move {
            if !sent {
                return Err(QueueGone);
            }
            rx.await.map_err(|_| QueueGone)
        }
    }
}

impl DurableQueue {
    fn stats(&self, calls: u64) -> QueueStats {
        QueueStats {
            len: self.len(),
            spooled: self.spooled,
            spool_bytes: self.spool_bytes,
            durable: self.durable(),
            pushed: self.pushed,
            calls,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: SpoolOptions = SpoolOptions { max_bytes: 1 << 20, fsync: true };

    fn items(q: &mut DurableQueue) -> Vec<String> {
        q.next_batch(100).unwrap()
    }

    #[test]
    fn keeps_order_across_memory_and_spool_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "influx", 2, OPTIONS).unwrap();
        for i in 1..=2 {
            assert_eq!(q.push(format!("p{i}")).unwrap(), 0);
        }
        // Overflow: everything goes to disk, and so does what follows.
        assert_eq!(q.push("p3".into()).unwrap(), 3);
        assert_eq!(q.push("p4".into()).unwrap(), 1);
        assert_eq!((q.len(), q.spooled()), (4, 4));
        assert_eq!(q.next_batch(2).unwrap(), ["p1", "p2"]);
        q.ack().unwrap();
        drop(q);

        // A new process picks up where the last acknowledged batch ended.
        let mut q = DurableQueue::open(dir.path(), "influx", 2, OPTIONS).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(items(&mut q), ["p3", "p4"]);
        q.ack().unwrap();
        assert!(q.is_empty());
        assert!(!dir.path().join("influx.wal").exists());
        q.push("p5".into()).unwrap();
        assert_eq!((q.len(), q.spooled()), (1, 0));
    }

    #[test]
    fn a_failed_write_spills_all_but_the_batch_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "redis", 100, OPTIONS).unwrap();
        for i in 1..=5 {
            q.push(format!("s{i}")).unwrap();
        }
        assert_eq!(q.next_batch(2).unwrap(), ["s1", "s2"]);
        assert_eq!(q.spill().unwrap(), 3);
        // The failed batch is retried first, then the spool in order.
        assert_eq!(q.next_batch(10).unwrap(), ["s1", "s2"]);
        q.ack().unwrap();
        assert_eq!(items(&mut q), ["s3", "s4", "s5"]);
        q.ack().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn a_failed_batch_goes_to_disk_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "x", 100, OPTIONS).unwrap();
        for i in 1..=3 {
            q.push(format!("i{i}")).unwrap();
        }
        assert_eq!(q.next_batch(10).unwrap(), ["i1", "i2", "i3"]);
        assert_eq!(q.fail().unwrap(), 3);
        assert_eq!(q.spooled(), 3);
        q.push("i4".into()).unwrap();
        assert_eq!(q.next_batch(10).unwrap(), ["i1", "i2", "i3", "i4"]);
    }

    #[test]
    fn an_unacknowledged_batch_is_offered_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "x", 1, OPTIONS).unwrap();
        q.push("a".into()).unwrap();
        q.push("b".into()).unwrap();
        assert_eq!(q.next_batch(1).unwrap(), ["a"]);
        assert_eq!(q.next_batch(1).unwrap(), ["a"]);
        q.ack().unwrap();
        assert_eq!(q.next_batch(1).unwrap(), ["b"]);
    }

    /// A spool of `items` all on disk, as a killed process leaves it.
    fn spooled(dir: &Path, items: &[&str]) -> u64 {
        let mut q = DurableQueue::open(dir, "influxdb", 1, OPTIONS).unwrap();
        q.fail().unwrap();
        for item in items {
            q.push((*item).to_owned()).unwrap();
        }
        q.spill().unwrap();
        assert_eq!(q.spooled(), items.len());
        q.spool_bytes()
    }

    #[test]
    fn calls_run_in_order_on_the_queue_s_own_thread_and_answer_its_state_after_them() {
        let dir = tempfile::tempdir().unwrap();
        let queue = DurableQueue::open(dir.path(), "t", 1, OPTIONS).unwrap();
        let (thread, stats) = QueueThread::spawn("t", queue).unwrap();
        assert_eq!(stats, QueueStats::default());
        // Three pushes not awaited, then a batch: the batch sees all three, in order
        // (one item fits in memory: the second spills both, the third follows on disk).
        let pushes: Vec<_> = ["a", "b", "c"].iter().map(|i| thread.call(move |q| q.push(i.to_string()))).collect();
        let batch = thread.call(|q| (std::thread::current().name().map(str::to_owned), q.next_batch(10)));
        let ((name, items), stats) = futures_executor::block_on(batch).unwrap();
        assert_eq!(name.as_deref(), Some("spool-t"));
        assert_eq!(items.unwrap(), ["a", "b", "c"]);
        assert_eq!((stats.len, stats.spooled, stats.pushed, stats.durable, stats.calls), (3, 3, 3, 3, 4));
        let moved: Vec<usize> = pushes.into_iter().map(|p| futures_executor::block_on(p).unwrap().0.unwrap()).collect();
        assert_eq!(moved, [0, 2, 1]);
        let (_, stats) = futures_executor::block_on(thread.call(|q| q.ack())).unwrap();
        assert_eq!((stats.len, stats.spooled, stats.spool_bytes, stats.calls), (0, 0, 0, 5));
    }

    #[test]
    fn a_torn_tail_is_cut_and_every_whole_record_replays_and_appending_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let records = ["readings,location=SAO t=1 1", "readings,location=São\\ Paulo t=2 2", "x t=3 3"];
        let full = spooled(dir.path(), &records);
        let wal = dir.path().join("influxdb.wal");
        // Cut inside the last record, then append half of a two-byte character.
        OpenOptions::new().write(true).open(&wal).unwrap().set_len(full - 3).unwrap();
        OpenOptions::new().append(true).open(&wal).unwrap().write_all(&"ã".as_bytes()[..1]).unwrap();
        let mut q = DurableQueue::open(dir.path(), "influxdb", 10, OPTIONS).unwrap();
        assert_eq!(q.spooled(), 2);
        q.push("y t=4 4".into()).unwrap();
        assert_eq!(items(&mut q), [records[0], records[1], "y t=4 4"]);
        q.ack().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn a_torn_header_and_a_bad_checksum_are_cut_too() {
        let dir = tempfile::tempdir().unwrap();
        let full = spooled(dir.path(), &["a", "b"]);
        let wal = dir.path().join("influxdb.wal");
        OpenOptions::new().append(true).open(&wal).unwrap().write_all(&[3, 0, 0]).unwrap();
        assert_eq!(DurableQueue::open(dir.path(), "influxdb", 10, OPTIONS).unwrap().spooled(), 2);
        assert_eq!(fs::metadata(&wal).unwrap().len(), full);
        // Flip the last payload byte: its record's checksum no longer matches.
        let mut bytes = fs::read(&wal).unwrap();
        *bytes.last_mut().unwrap() ^= 0xff;
        fs::write(&wal, bytes).unwrap();
        assert_eq!(DurableQueue::open(dir.path(), "influxdb", 10, OPTIONS).unwrap().spooled(), 1);
    }

    #[test]
    fn an_item_is_durable_once_written_or_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "x", 10, OPTIONS).unwrap();
        for i in 0..3 {
            q.push(format!("i{i}")).unwrap();
        }
        assert_eq!((q.pushed(), q.durable()), (3, 0));
        q.next_batch(2).unwrap();
        q.ack().unwrap();
        assert_eq!(q.durable(), 2, "the first two were written");
        q.next_batch(1).unwrap();
        q.fail().unwrap();
        assert_eq!(q.durable(), 3, "the third went to the spool");
        q.push("i3".into()).unwrap();
        assert_eq!(q.durable(), 4, "with a spool, a new item goes straight to disk");
    }

    #[test]
    fn past_the_byte_cap_an_append_is_refused_and_nothing_leaves_memory() {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions { max_bytes: 30, fsync: false };
        let mut q = DurableQueue::open(dir.path(), "x", 1, options).unwrap();
        q.push("0123456789".into()).unwrap();
        // The overflow moves both items to disk: 2 × (8 + 10) = 36 bytes > 30.
        let e = q.push("abcdefghij".into()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull);
        assert_eq!(e.to_string(), "the spool would pass persist.spool_max_bytes (30 bytes)");
        assert_eq!((q.len(), q.spooled()), (2, 0));
        assert_eq!(items(&mut q), ["0123456789", "abcdefghij"]);
        q.ack().unwrap();
        assert!(q.is_empty());
    }

    #[test]
    fn the_read_position_survives_and_the_spool_of_an_older_version_is_carried_over() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("redis.spool"), "old1\nold2\nold3\n").unwrap();
        fs::write(dir.path().join("redis.spool.offset"), "5").unwrap();
        let mut q = DurableQueue::open(dir.path(), "redis", 10, OPTIONS).unwrap();
        assert!(!dir.path().join("redis.spool").exists());
        assert_eq!(q.next_batch(1).unwrap(), ["old2"]);
        q.ack().unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("redis.wal.offset")).unwrap(), "12");
        drop(q);
        let mut q = DurableQueue::open(dir.path(), "redis", 10, OPTIONS).unwrap();
        assert_eq!(items(&mut q), ["old3"]);
    }
}
