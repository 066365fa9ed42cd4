//! The single writer: one thread owns the only read-write connection and runs every write
//! operation as one closure, so an operation costs one hand-off instead of one per statement.
//!
//! Group commit: the operations queued while a commit is in flight run together in the next
//! transaction, each inside its own savepoint. An operation that fails is rolled back to its
//! savepoint and gets its error; the others are unaffected. Nobody hears "done" before the
//! shared `COMMIT` (with `synchronous = FULL`) has returned, and if that commit fails every
//! operation in it gets the error — so an acknowledged write is a durable write.

use std::sync::mpsc;

use countersign_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::codec::backend;

/// At most this many operations share one transaction, so one commit never waits on a
/// very long queue.
const MAX_BATCH: usize = 128;

/// Called after the shared commit: `Ok` when it succeeded, the commit's error otherwise.
type Completion = Box<dyn FnOnce(StoreResult<()>) + Send>;

/// One queued write operation.
trait Operation: Send {
    /// Runs inside its savepoint; says whether it failed and how to report its result.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Completion);
    /// Reports that the operation could not run at all.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Queued<T, F> {
    op: F,
    reply: oneshot::Sender<StoreResult<T>>,
}

impl<T, F> Operation for Queued<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> StoreResult<T> + Send,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Completion) {
        let outcome = (self.op)(conn);
        let reply = self.reply;
        (
            outcome.is_err(),
            Box::new(move |committed: StoreResult<()>| {
                let _ = reply.send(committed.and(outcome));
            }),
        )
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

type Job = Box<dyn Operation>;

/// The handle to the writer thread; cloning it shares the thread.
#[derive(Clone, Debug)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread over `conn`. It stops when every handle has been dropped.
    pub(crate) fn start(conn: Connection) -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("countersign-sqlite-writer".into())
            .spawn(move || run(conn, queue))
            .map_err(|e| StoreError::Backend(format!("starting the database writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `op` in the next write transaction and returns its result once that transaction
    /// is committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, result) = oneshot::channel();
        self.jobs
            .send(Box::new(Queued { op, reply }))
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("the database writer has stopped".into())
}

fn run(conn: Connection, queue: mpsc::Receiver<Job>) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&conn, batch);
    }
}

fn commit_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let e = backend(e);
        for job in batch {
            job.refuse(e.clone());
        }
        return;
    }
    let mut completions = Vec::with_capacity(batch.len());
    let mut poisoned: Option<StoreError> = None;
    for job in batch {
        if let Some(e) = &poisoned {
            job.refuse(e.clone());
            continue;
        }
        if let Err(e) = conn.execute_batch("SAVEPOINT op") {
            let e = backend(e);
            job.refuse(e.clone());
            poisoned = Some(e);
            continue;
        }
        let (failed, done) = job.run(conn);
        let end = if failed {
            "ROLLBACK TO op; RELEASE op"
        } else {
            "RELEASE op"
        };
        // If a failed operation's writes cannot be undone, nothing in this transaction may
        // be committed: the whole batch is refused.
        if let Err(e) = conn.execute_batch(end) {
            poisoned = Some(backend(e));
        }
        completions.push(done);
    }
    let committed = match poisoned {
        Some(e) => Err(e),
        None => conn.execute_batch("COMMIT").map_err(backend),
    };
    if let Err(e) = &committed {
        // Leave no transaction open for the next batch.
        let _ = conn.execute_batch("ROLLBACK");
        tracing::error!(error = %e, "database write transaction failed; every write in it was refused");
    }
    for done in completions {
        done(committed.clone());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn writer() -> (tempfile::TempDir, Writer) {
        let dir = tempfile::tempdir().expect("temp dir");
        let conn = crate::connection::open_writer(&dir.path().join("w.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (x INTEGER UNIQUE, note TEXT);
             CREATE TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .expect("schema");
        (dir, Writer::start(conn).expect("writer"))
    }

    async fn rows(w: &Writer) -> Vec<(i64, String)> {
        w.write(|c| {
            let mut s = c
                .prepare("SELECT x, note FROM t ORDER BY x")
                .map_err(backend)?;
            let rows = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(backend)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            Ok(rows)
        })
        .await
        .expect("rows")
    }

    #[tokio::test]
    async fn failed_operation_in_a_batch_leaves_nothing_and_the_others_commit() {
        let (_dir, w) = writer();
        // Hold the writer so the next operations queue up and share one transaction.
        let hold = w.write(|_| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(())
        });
        let insert = |first: i64, second: i64, note: &'static str| {
            w.write(move |c| {
                for x in [first, second] {
                    c.execute(
                        "INSERT INTO t (x, note) VALUES (?, ?)",
                        rusqlite::params![x, note],
                    )
                    .map_err(backend)?;
                }
                Ok(first)
            })
        };
        // `dup`'s first row is new, its second collides with `a`'s: both must be undone.
        let (held, a, b, dup, c) = tokio::join!(
            hold,
            insert(1, 100, "a"),
            insert(2, 200, "b"),
            insert(5, 1, "dup"),
            insert(3, 300, "c")
        );
        held.expect("hold");
        assert_eq!(a.expect("a"), 1);
        assert_eq!(b.expect("b"), 2);
        assert_eq!(c.expect("c"), 3);
        assert!(dup.is_err(), "the duplicate must be refused");
        assert_eq!(
            rows(&w).await,
            vec![
                (1, "a".to_string()),
                (2, "b".to_string()),
                (3, "c".to_string()),
                (100, "a".to_string()),
                (200, "b".to_string()),
                (300, "c".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn nothing_is_acknowledged_when_the_commit_fails() {
        let (_dir, w) = writer();
        // A deferred foreign key is only checked by COMMIT: the operation itself succeeds.
        let result = w
            .write(|c| {
                c.execute("INSERT INTO t (x, note) VALUES (7, 'with a bad child')", [])
                    .map_err(backend)?;
                c.execute("INSERT INTO child (p) VALUES (42)", [])
                    .map_err(backend)?;
                Ok("looked fine")
            })
            .await;
        let err = result.expect_err("a failed commit must not be acknowledged");
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        assert!(
            rows(&w).await.is_empty(),
            "nothing of the failed commit is kept"
        );
        // The writer carries on with the next transaction.
        w.write(|c| {
            c.execute("INSERT INTO t (x, note) VALUES (8, 'next')", [])
                .map_err(backend)
        })
        .await
        .expect("next write");
        assert_eq!(rows(&w).await, vec![(8, "next".to_string())]);
    }
}
