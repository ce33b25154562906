//! `DurableQueue`: the write queue of one backend, in memory while the backend keeps up,
//! on disk when it does not.
//!
//! Items are opaque lines (line protocol for InfluxDB, JSON for Redis). While the
//! backend answers, items wait in a bounded in-memory queue. When a write fails, or the
//! memory queue is full, everything unsent goes to an append-only spool file under the
//! data directory, and so does every later item until the spool is drained — so order is
//! kept: memory first (older), then the spool. The read position in the spool is saved
//! after each acknowledged batch, so a process that dies (even by SIGKILL) resumes the
//! spool where it left off on its next start; at worst the last batch is sent twice,
//! which both backends absorb (InfluxDB overwrites the same point, Redis the same key).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub struct DurableQueue {
    memory: VecDeque<String>,
    max_memory: usize,
    spool: PathBuf,
    offset_file: PathBuf,
    /// Bytes of the spool already acknowledged.
    offset: u64,
    /// Items in the spool not yet acknowledged.
    spooled: usize,
    /// Where the current batch came from, and its size in bytes when from the spool.
    batch: Option<BatchSource>,
}

enum BatchSource {
    Memory(usize),
    Spool { items: usize, bytes: u64 },
}

impl DurableQueue {
    /// Opens the queue of `name` under `dir`, picking up a spool left by an earlier run.
    pub fn open(dir: &Path, name: &str, max_memory: usize) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let spool = dir.join(format!("{name}.spool"));
        let offset_file = dir.join(format!("{name}.spool.offset"));
        let offset = fs::read_to_string(&offset_file).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let spooled = match File::open(&spool) {
            Ok(f) => {
                let mut reader = BufReader::new(f);
                reader.seek(SeekFrom::Start(offset))?;
                reader.lines().count()
            }
            Err(_) => 0,
        };
        Ok(Self {
            memory: VecDeque::new(),
            max_memory: max_memory.max(1),
            spool,
            offset_file,
            offset,
            spooled,
            batch: None,
        })
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

    /// Queues an item; returns how many items went to disk (0 or 1, or the whole memory
    /// queue when it overflowed).
    pub fn push(&mut self, item: String) -> io::Result<usize> {
        if self.spooled > 0 {
            self.append(std::iter::once(item))?;
            return Ok(1);
        }
        self.memory.push_back(item);
        if self.memory.len() > self.max_memory { self.spill() } else { Ok(0) }
    }

    /// Moves every in-memory item not in flight to the spool (the backend is down).
    /// Returns how many moved.
    pub fn spill(&mut self) -> io::Result<usize> {
        let keep = match self.batch {
            Some(BatchSource::Memory(n)) => n.min(self.memory.len()),
            _ => 0,
        };
        if self.memory.len() <= keep {
            return Ok(0);
        }
        let moved: Vec<String> = self.memory.drain(keep..).collect();
        let n = moved.len();
        self.append(moved.into_iter())?;
        Ok(n)
    }

    fn append(&mut self, items: impl Iterator<Item = String>) -> io::Result<()> {
        let mut file = OpenOptions::new().create(true).append(true).open(&self.spool)?;
        let mut buffer = String::new();
        let mut n = 0;
        for item in items {
            buffer.push_str(&item.replace('\n', " "));
            buffer.push('\n');
            n += 1;
        }
        file.write_all(buffer.as_bytes())?;
        self.spooled += n;
        Ok(())
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
            return Ok(self.memory.iter().take(n).cloned().collect());
        }
        if self.spooled == 0 {
            self.batch = None;
            return Ok(Vec::new());
        }
        let mut reader = BufReader::new(File::open(&self.spool)?);
        reader.seek(SeekFrom::Start(self.offset))?;
        let mut items = Vec::new();
        let mut bytes = 0u64;
        let mut line = String::new();
        while items.len() < max {
            line.clear();
            let read = reader.read_line(&mut line)?;
            if read == 0 {
                break;
            }
            bytes += read as u64;
            items.push(line.trim_end_matches('\n').to_owned());
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
                } else {
                    fs::write(&self.offset_file, self.offset.to_string())?;
                }
            }
            None => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(q: &mut DurableQueue) -> Vec<String> {
        q.next_batch(100).unwrap()
    }

    #[test]
    fn keeps_order_across_memory_and_spool_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "influx", 2).unwrap();
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
        let mut q = DurableQueue::open(dir.path(), "influx", 2).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(items(&mut q), ["p3", "p4"]);
        q.ack().unwrap();
        assert!(q.is_empty());
        assert!(!dir.path().join("influx.spool").exists());
        q.push("p5".into()).unwrap();
        assert_eq!((q.len(), q.spooled()), (1, 0));
    }

    #[test]
    fn a_failed_write_spills_all_but_the_batch_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut q = DurableQueue::open(dir.path(), "redis", 100).unwrap();
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
        let mut q = DurableQueue::open(dir.path(), "x", 100).unwrap();
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
        let mut q = DurableQueue::open(dir.path(), "x", 1).unwrap();
        q.push("a".into()).unwrap();
        q.push("b".into()).unwrap();
        assert_eq!(q.next_batch(1).unwrap(), ["a"]);
        assert_eq!(q.next_batch(1).unwrap(), ["a"]);
        q.ack().unwrap();
        assert_eq!(q.next_batch(1).unwrap(), ["b"]);
    }
}
