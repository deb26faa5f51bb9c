//! Fuzzing of opening corrupted SQLite stores (issue #7): a real store's
//! bytes with random bytes replaced, runs of them zeroed, or the file cut
//! short, opened for writing and for reading, then read whole and its kept
//! state loaded. Every step returns a value or a typed error, never
//! panics; a store that opens for writing still takes appends.
//!
//! CI runs `FUZZ_CASES` (default 300) stores; the long campaign is
//! `FUZZ_CASES=1000000 cargo test --release -p databuild-bel-sqlite --test fuzz`.

use std::sync::OnceLock;

use databuild_bel_sqlite::SqliteBel;
use databuild_core::bel::{BelSink, BuildEvent, Event, EventFilter};
use databuild_core::proto;
use proptest::prelude::*;
use proptest::test_runner::Config;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn event(i: u64) -> BuildEvent {
    BuildEvent::new(Event::BuildFailed(proto::BuildFailed {
        reason: format!("event {i} {}", "x".repeat(50)),
    }))
    .for_request(format!("req-{}", i % 5))
}

/// The bytes of a real store holding 40 events and a blob.
fn pristine() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bel.sqlite");
        runtime().block_on(async {
            let bel = SqliteBel::open(&path).unwrap();
            for chunk in (0..40).collect::<Vec<u64>>().chunks(10) {
                bel.append(chunk.iter().map(|i| event(*i)).collect())
                    .await
                    .unwrap();
            }
            bel.put_blob(vec![7u8; 2000]).await.unwrap();
        });
        // The writer's connection is gone: the WAL is checkpointed into
        // the main file.
        std::fs::read(&path).unwrap()
    })
}

/// A directory for one damaged store: on tmpfs where there is one (the
/// campaign opens a million stores).
fn scratch() -> tempfile::TempDir {
    match std::path::Path::new("/dev/shm") {
        shm if shm.is_dir() => {
            tempfile::tempdir_in(shm).unwrap_or_else(|_| tempfile::tempdir().unwrap())
        }
        _ => tempfile::tempdir().unwrap(),
    }
}

#[derive(Debug, Clone)]
enum Damage {
    Bytes(Vec<(prop::sample::Index, u8)>),
    Zeroes(prop::sample::Index, usize),
    Cut(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        3 => proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16)
            .prop_map(Damage::Bytes),
        1 => (any::<prop::sample::Index>(), 1usize..4096).prop_map(|(i, n)| Damage::Zeroes(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Damage::Cut),
    ]
}

fn config() -> Config {
    Config {
        cases: std::env::var("FUZZ_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(300),
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn corrupted_stores(damage in damage()) {
        let mut bytes = pristine().to_vec();
        match damage {
            Damage::Bytes(edits) => {
                for (i, b) in edits {
                    let at = i.index(bytes.len());
                    bytes[at] = b;
                }
            }
            Damage::Zeroes(i, n) => {
                let at = i.index(bytes.len());
                let end = (at + n).min(bytes.len());
                bytes[at..end].fill(0);
            }
            Damage::Cut(i) => bytes.truncate(i.index(bytes.len())),
        }
        let dir = scratch();
        let path = dir.path().join("bel.sqlite");
        std::fs::write(&path, &bytes).unwrap();
        runtime().block_on(async {
            if let Ok(bel) = SqliteBel::open_read_only(&path) {
                let _ = bel.read(0, &EventFilter::all(), usize::MAX).await;
                let _ = bel.head().await;
                let _ = bel.load_state().await;
            }
            if let Ok(bel) = SqliteBel::open(&path) {
                let _ = bel.read(0, &EventFilter::all(), usize::MAX).await;
                let _ = bel.load_state().await;
                // A store that opens for writing either takes an append or
                // says why.
                let _ = bel.append(vec![event(1_000)]).await;
            }
        });
    }
}

#[test]
fn the_pristine_store_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bel.sqlite");
    std::fs::write(&path, pristine()).unwrap();
    runtime().block_on(async {
        let bel = SqliteBel::open_read_only(&path).unwrap();
        assert_eq!(bel.head().await.unwrap(), 40);
    });
}
