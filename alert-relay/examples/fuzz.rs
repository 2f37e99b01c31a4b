//! A stable-toolchain mutation fuzzer for the webhook and policy parsers (cargo fuzz needs a
//! nightly toolchain, which these machines cannot install). It mutates the committed corpus
//! (bit flips, byte and chunk insertion, deletion, duplication, splicing, truncation, deep
//! nesting) for a bounded time and fails on any panic, saving the input that caused it.
//!
//!   cargo run --release --example fuzz -p alert-relay -- webhook --seconds 60
//!   cargo run --release --example fuzz -p alert-relay -- policy --seconds 60

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::seq::IndexedRandom;
use rand::Rng;

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"\\u0000",
    b"\xff",
    b"${",
    b"}",
    b":-",
    b"\n  - ",
    b"\n    ",
    b"after: ",
    b"notify: ",
    b"'",
    b"&a",
    b"*a",
    b"!!binary",
    b"---\n",
];

fn mutate(rng: &mut impl Rng, corpus: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..8) {
        let len = input.len();
        match rng.random_range(0..8) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                input[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                let token = TOKENS.choose(rng).copied().unwrap_or(b"x");
                input.splice(i..i, token.iter().copied());
            }
            2 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..64)).min(len);
                input.drain(start..end);
            }
            3 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..128)).min(len);
                let chunk = input[start..end].to_vec();
                let at = rng.random_range(0..=input.len());
                input.splice(at..at, chunk);
            }
            4 => {
                if let Some(other) = corpus.choose(rng) {
                    let cut = rng.random_range(0..=input.len());
                    let from = rng.random_range(0..=other.len());
                    input.truncate(cut);
                    input.extend_from_slice(&other[from..]);
                }
            }
            5 if len > 0 => input.truncate(rng.random_range(0..len)),
            6 => {
                let depth = rng.random_range(1..5000);
                let at = rng.random_range(0..=len);
                let open: Vec<u8> =
                    std::iter::repeat_n(if rng.random() { b'[' } else { b'{' }, depth).collect();
                input.splice(at..at, open);
            }
            _ => {
                let i = rng.random_range(0..=len);
                let mut bytes = vec![0u8; rng.random_range(1..16)];
                rng.fill_bytes(&mut bytes);
                input.splice(i..i, bytes);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("webhook");
    let seconds: u64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let run: fn(&[u8]) = match target {
        "webhook" => alert_relay::fuzzing::webhook,
        "policy" => alert_relay::fuzzing::policy,
        other => {
            eprintln!("unknown target {other}: webhook or policy");
            std::process::exit(2);
        }
    };
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(root.join("corpus").join(target))
        .expect("corpus directory")
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    assert!(!corpus.is_empty(), "empty corpus");
    // Panics are caught and reported below; keep the default hook from printing each one.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = rand::rng();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut runs, mut crashes) = (0u64, Vec::<PathBuf>::new());
    for seed in &corpus {
        if catch_unwind(AssertUnwindSafe(|| run(seed))).is_err() {
            crashes.push(save(&root, target, seed));
        }
    }
    while Instant::now() < deadline {
        let mut input = corpus.choose(&mut rng).cloned().unwrap_or_default();
        mutate(&mut rng, &corpus, &mut input);
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| run(&input))).is_err() {
            crashes.push(save(&root, target, &input));
        }
    }
    println!(
        "fuzz {target}: {runs} inputs in {seconds}s, {} panics",
        crashes.len()
    );
    for crash in &crashes {
        println!("  panicking input saved to {}", crash.display());
    }
    if !crashes.is_empty() {
        std::process::exit(1);
    }
}

fn save(root: &Path, target: &str, input: &[u8]) -> PathBuf {
    let dir = root.join("artifacts");
    let _ = std::fs::create_dir_all(&dir);
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = dir.join(format!("{target}-{hash:016x}"));
    let _ = std::fs::write(&path, input);
    path
}
