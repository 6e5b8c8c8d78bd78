//! Property tests of the framing (`src/frame.rs`) against what an untrusted peer may send.
//! Whatever the bytes: `read_frame` does not panic; it allocates no more than [`MAX_FRAME`]
//! for a body; a length over the limit is refused before the body is read or allocated; the
//! same bytes read the same however the stream splits them; and what `write_frame` writes,
//! `read_frame` reads back.
//!
//! The case counts keep each property to a few seconds in a debug build.

use gpubook_proto::{read_frame, write_frame, FrameError, MAX_FRAME};
use proptest::prelude::*;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// The system allocator, noting the largest allocation a thread makes while it is watching.
#[derive(Debug)]
struct Watching;

thread_local! {
    static WATCHING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // try_with: an allocation while the thread's locals are torn down must not panic.
    let _ = WATCHING.try_with(|w| {
        if w.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for Watching {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's guarantees for `layout` hold for System too.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: `ptr` came from System with `layout`, as the caller guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Watching = Watching;

/// Runs `f` on this thread and returns its result with the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    WATCHING.with(|w| w.set(true));
    let out = f();
    WATCHING.with(|w| w.set(false));
    (out, LARGEST.with(|l| l.get()))
}

/// What reading a stream frame after frame gave, up to its end or its first error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Read {
    Body(Vec<u8>),
    End,
    TooLarge(usize),
    Empty,
    Truncated,
    Other(String),
}

async fn read_all<R: AsyncRead + Unpin>(r: &mut R) -> Vec<Read> {
    let mut out = Vec::new();
    loop {
        let last = match read_frame(r).await {
            Ok(Some(body)) => {
                out.push(Read::Body(body));
                continue;
            }
            Ok(None) => Read::End,
            Err(FrameError::TooLarge(n)) => Read::TooLarge(n),
            Err(FrameError::Empty) => Read::Empty,
            Err(FrameError::Truncated) => Read::Truncated,
            Err(e) => Read::Other(e.to_string()),
        };
        out.push(last);
        return out;
    }
}

/// A stream that hands out its bytes in the pieces `cuts` makes, at most one piece per read,
/// and is not ready once before each piece (as a socket would be).
#[derive(Debug)]
struct Pieces {
    bytes: Vec<u8>,
    cuts: Vec<usize>,
    at: usize,
    ready: bool,
}

impl Pieces {
    fn new(bytes: Vec<u8>, mut cuts: Vec<usize>) -> Self {
        cuts.retain(|c| *c <= bytes.len());
        cuts.sort_unstable();
        Self {
            bytes,
            cuts,
            at: 0,
            ready: false,
        }
    }
}

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let at = self.at;
        let end = self
            .cuts
            .iter()
            .copied()
            .find(|c| *c > at)
            .unwrap_or(self.bytes.len());
        let n = (end - at).min(buf.remaining());
        buf.put_slice(&self.bytes[at..at + n]);
        self.at += n;
        self.ready = false;
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A length prefix as a peer might send it: small, at the limit, or anything at all.
fn length() -> impl Strategy<Value = u32> {
    let max = MAX_FRAME as u32;
    prop_oneof![
        4 => 0u32..48,
        2 => (max - 1)..=(max + 1),
        1 => any::<u32>(),
    ]
}

/// A byte stream: either noise, or frames whose lengths need not match their bodies.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let frame = (length(), prop::collection::vec(any::<u8>(), 0..48)).prop_map(|(n, body)| {
        let mut f = n.to_be_bytes().to_vec();
        f.extend(body);
        f
    });
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96),
        prop::collection::vec(frame, 0..5).prop_map(|fs| fs.concat()),
    ]
}

/// Any JSON value serde_json can write (no NaN or infinity).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn any_bytes_read_without_panic_or_allocating_past_the_limit() {
    let rt = runtime();
    proptest!(config(2048), |(bytes in stream())| {
        let (reads, largest) = largest_allocation(|| {
            let mut r = &bytes[..];
            rt.block_on(read_all(&mut r))
        });
        prop_assert!(largest <= MAX_FRAME, "allocated {largest} bytes at once: {reads:?}");
        // Every frame read is a whole frame within the limit, and the reading stops at
        // the first error or the end.
        let (last, bodies) = reads.split_last().expect("at least the end or an error");
        prop_assert!(!matches!(last, Read::Body(_)));
        for body in bodies {
            let Read::Body(b) = body else {
                return Err(TestCaseError::fail(format!("a read after an error: {reads:?}")));
            };
            prop_assert!(!b.is_empty() && b.len() <= MAX_FRAME);
        }
        prop_assert!(!matches!(last, Read::Other(_)), "{last:?}");
    });
}

#[test]
fn a_length_over_the_limit_is_refused_before_the_body_is_read_or_allocated() {
    let rt = runtime();
    proptest!(
        config(1024),
        |(n in (MAX_FRAME as u32 + 1)..=u32::MAX, body in prop::collection::vec(any::<u8>(), 0..64))| {
            let mut bytes = n.to_be_bytes().to_vec();
            bytes.extend(&body);
            let mut r = &bytes[..];
            let (read, largest) = largest_allocation(|| rt.block_on(read_frame(&mut r)));
            prop_assert!(
                matches!(read, Err(FrameError::TooLarge(m)) if m == n as usize),
                "{read:?}"
            );
            prop_assert_eq!(r, &body[..], "the body was not read");
            prop_assert!(largest < 4096, "allocated {} bytes for a refused frame", largest);
        }
    );
}

#[test]
fn a_stream_reads_the_same_however_it_is_split() {
    let rt = runtime();
    proptest!(
        config(1024),
        |(bytes in stream(), cuts in prop::collection::vec(0usize..400, 0..12))| {
            let whole = {
                let mut r = &bytes[..];
                rt.block_on(read_all(&mut r))
            };
            let split = rt.block_on(read_all(&mut Pieces::new(bytes.clone(), cuts.clone())));
            prop_assert_eq!(&split, &whole);
            // And cut into single bytes.
            let every: Vec<usize> = (0..=bytes.len()).collect();
            let bytewise = rt.block_on(read_all(&mut Pieces::new(bytes.clone(), every)));
            prop_assert_eq!(bytewise, whole);
        }
    );
}

#[test]
fn what_write_frame_writes_read_frame_reads_back() {
    let rt = runtime();
    proptest!(
        config(512),
        |(values in prop::collection::vec(json(), 1..4), cuts in prop::collection::vec(0usize..2000, 0..8))| {
            let mut wire: Vec<u8> = Vec::new();
            for v in &values {
                rt.block_on(write_frame(&mut wire, v)).expect("under the limit");
            }
            let mut want: Vec<Read> = values
                .iter()
                .map(|v| Read::Body(serde_json::to_vec(v).unwrap()))
                .collect();
            want.push(Read::End);
            let got = rt.block_on(read_all(&mut Pieces::new(wire, cuts)));
            prop_assert_eq!(&got, &want);
            // The bytes are the same, so the value is; serde_json's own float parsing may
            // be a unit in the last place off, which is no concern of the framing.
        }
    );
}

#[test]
fn a_frame_of_exactly_the_limit_goes_through_and_one_byte_more_is_not_written() {
    let rt = runtime();
    // A JSON string is its text and two quotes.
    let at_limit = Value::String("x".repeat(MAX_FRAME - 2));
    let mut wire: Vec<u8> = Vec::new();
    rt.block_on(write_frame(&mut wire, &at_limit)).unwrap();
    assert_eq!(wire.len(), 4 + MAX_FRAME);
    let mut r = &wire[..];
    let body = rt.block_on(read_frame(&mut r)).unwrap().unwrap();
    assert_eq!(body.len(), MAX_FRAME);

    let over = Value::String("x".repeat(MAX_FRAME - 1));
    let mut wire: Vec<u8> = Vec::new();
    assert!(matches!(
        rt.block_on(write_frame(&mut wire, &over)),
        Err(FrameError::TooLarge(n)) if n == MAX_FRAME + 1
    ));
    assert!(
        wire.is_empty(),
        "nothing of a frame over the limit is written"
    );
}
