//! Hit ratios of the in-memory cache against moka, quick_cache, Cloudflare's TinyUFO and
//! a plain LRU on synthetic and real traces, with libCacheSim's figures as reference
//! lines, and memory per entry against moka.
//!
//! `cargo bench -p backstop --bench hit_ratio`
//!
//! Every contender sees the same trace and does `get`, then `insert` on a miss. Prints
//! `hit_ratio workload=<w> contender=<c> value=<v>` per row and contender, then
//! `hit_ratio_check workload=<w> best=<c> value=<v> backstop_min=<v> within_1pt=<bool>`
//! (whether every Backstop line is within one point of the row's best line), and
//! `cache_memory contender=<c> value=<bytes per entry>` (resident-set growth while a
//! cache of 1,000,000 `u64 -> u64` entries takes 3,000,000 distinct keys, per entry
//! held; each contender measured in a fresh child process). Three times over, so that
//! the cache is full and evicting and its ghost records (Backstop's, quick_cache's) are
//! counted: filled only once, the line left out Backstop's ghost table, the largest
//! structure of a churning cache (70 bytes per entry then, 86 once churning).
//!
//! Contenders: `backstop` (default shard count), `backstop_shards<N>` for N in 1, 8, 64
//! (a fixed hash seed, so runs repeat exactly), moka, quick_cache, tinyufo, lru, and
//! `ref_<algo>`: libCacheSim's S3-FIFO, W-TinyLFU and ARC on the same trace, computed once
//! with `benches/cache_support/reference.py` and stored in [`REFERENCE`].
//!
//! Workloads over a key space of 100,000 (`cap1`/`cap10` = capacity 1% / 10% of it):
//! - `zipf<α>_cap<p>`: Zipf(α) keys, α ∈ {0.6, 0.8, 1.0}.
//! - `scan_mix`: 70% Zipf(0.9) hot set, 30% a looping scan over 50,000 other keys; capacity 5,000.
//! - `loop`: a loop over 5,500 keys with capacity 5,000 (LRU's worst case).
//! - `loop_large`: a loop over 12,000 keys with capacity 1,000 (the best any policy can do
//!   is to keep a fixed 1,000 of them: 0.083).
//! - `shifting`: Zipf(1.0) whose hot set moves to new keys five times; capacity 5,000.
//! - `P2_<c>`, `P12_<c>`: the ARC paper's workstation disk traces at capacities 10,000,
//!   50,000 and 100,000, read from `BACKSTOP_CACHE_TRACES` (default
//!   `../shared/traces/cache`, next to the checkout; `zstd` must be on the `PATH`). Without
//!   the folder they are skipped with a notice. The traces are Megiddo and Modha's, "ARC: A
//!   Self-Tuning, Low Overhead Replacement Cache", USENIX FAST 2003.
//!
//! Resident-set growth rather than a counting allocator because a `GlobalAlloc` needs
//! `unsafe`, which the workspace forbids.
//!
//! Filters for iterating: `HIT_RATIO_ONLY=loop,P2_10000` keeps the workloads whose name
//! contains one of the parts; `HIT_RATIO_CONTENDERS=backstop,moka` keeps the contenders
//! whose name starts with one of them (reference lines always print).
//! `HIT_RATIO_DUMP=<dir>` writes every selected trace to `<dir>/<workload>.txt` (one key a
//! line) plus `<dir>/manifest.tsv` for `reference.py`, instead of replaying.

mod cache_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use backstop::cache::{CacheConfig, MemoryCache, PolicyConfig};
use cache_support::{Contender, QUICK_CACHE, XorShift, contenders, zipf_keys};

const KEYS: u64 = 100_000;
const LEN: usize = 2_000_000;

fn scan_mix() -> Vec<u64> {
    let hot = zipf_keys(KEYS, 0.9, LEN, 3);
    let mut rng = XorShift(5);
    let mut scan = 0u64;
    hot.into_iter()
        .map(|k| {
            if rng.next() % 10 < 3 {
                scan = (scan + 1) % 50_000;
                KEYS + scan
            } else {
                k
            }
        })
        .collect()
}

fn shifting() -> Vec<u64> {
    let phase = LEN / 5;
    zipf_keys(KEYS, 1.0, LEN, 9)
        .into_iter()
        .enumerate()
        .map(|(i, k)| k + (i / phase) as u64 * KEYS)
        .collect()
}

/// libCacheSim 0.3.5 (the `libcachesim` PyPI package) on the same traces, by
/// `reference.py` over `HIT_RATIO_DUMP`: `(workload, [S3-FIFO, W-TinyLFU, ARC])`, with
/// the package's default parameters (S3-FIFO 10% small queue, 90% ghost; W-TinyLFU 1%
/// window, SLRU main).
const REFERENCE: &[(&str, [f64; 3])] = &[
    ("zipf0.6_cap1", [0.1319, 0.1286, 0.1248]),
    ("zipf0.6_cap10", [0.3386, 0.3493, 0.3234]),
    ("zipf0.8_cap1", [0.3167, 0.3200, 0.3104]),
    ("zipf0.8_cap10", [0.5518, 0.5636, 0.5399]),
    ("zipf1.0_cap1", [0.5999, 0.6050, 0.5961]),
    ("zipf1.0_cap10", [0.7840, 0.7898, 0.7789]),
    ("scan_mix", [0.4202, 0.4103, 0.4189]),
    ("loop", [0.6648, 0.8976, 0.0000]),
    ("loop_large", [0.0747, 0.0817, 0.0000]),
    ("shifting", [0.7098, 0.6000, 0.7104]),
    ("P2_10000", [0.1354, 0.1232, 0.1077]),
    ("P2_50000", [0.3920, 0.3970, 0.3670]),
    ("P2_100000", [0.5421, 0.5525, 0.5216]),
    ("P12_10000", [0.0864, 0.0683, 0.0780]),
    ("P12_50000", [0.2415, 0.2483, 0.2153]),
    ("P12_100000", [0.3528, 0.3634, 0.3300]),
];

const REFERENCE_NAMES: [&str; 3] = ["ref_s3fifo", "ref_wtinylfu", "ref_arc"];

/// The fixed hash seed of the `backstop_shards<N>` lines.
const SEED: u64 = 0x5EED;

fn selected(list_var: &str, name: &str, matches: impl Fn(&str, &str) -> bool) -> bool {
    match std::env::var(list_var) {
        Ok(spec) => spec.split(',').any(|part| matches(name, part)),
        Err(_) => true,
    }
}

fn backstop(capacity: u64, shards: Option<usize>) -> Box<dyn Contender> {
    let mut b = MemoryCache::<u64, u64>::builder().max_capacity(capacity);
    if let Some(n) = shards {
        b = b.shards(n).hash_seed(SEED);
    }
    Box::new(b.build().expect("valid config"))
}

fn all_contenders(capacity: u64) -> Vec<(String, Box<dyn Contender>)> {
    let mut all: Vec<(String, Box<dyn Contender>)> = contenders(capacity)
        .into_iter()
        .map(|(n, c)| (n.to_string(), c))
        .collect();
    let sharded =
        [1usize, 8, 64].map(|n| (format!("backstop_shards{n}"), backstop(capacity, Some(n))));
    all.splice(1..1, sharded);
    if let Ok(spec) = std::env::var("HIT_RATIO_POLICY") {
        all.retain(|(n, _)| n == "moka");
        for p in spec.split(',') {
            let mut it = p.split(':').filter_map(|x| x.parse::<f64>().ok());
            let (Some(small_ratio), Some(ghost_ratio)) = (it.next(), it.next()) else {
                continue;
            };
            let config = CacheConfig {
                max_capacity: capacity,
                policy: PolicyConfig {
                    small_ratio,
                    adaptive: false,
                    ghost_ratio,
                    hash_seed: Some(SEED),
                },
                ..Default::default()
            };
            let cache = MemoryCache::<u64, u64>::from_config(config).expect("valid policy");
            all.push((p.to_string(), Box::new(cache)));
        }
    }
    all
}

fn replay(cache: &dyn Contender, trace: &[u64]) -> f64 {
    let mut hits = 0u64;
    for &k in trace {
        if cache.get(k).is_some() {
            hits += 1;
        } else {
            cache.insert(k, k);
        }
    }
    hits as f64 / trace.len() as f64
}

fn hit_ratio(workload: &str, capacity: u64, trace: &[u64]) {
    if !selected("HIT_RATIO_ONLY", workload, |w, part| w.contains(part)) {
        return;
    }
    if let Ok(dir) = std::env::var("HIT_RATIO_DUMP") {
        dump(&dir, workload, capacity, trace);
        return;
    }
    let mut lines: Vec<(String, f64)> = Vec::new();
    if let Some((_, refs)) = REFERENCE.iter().find(|(w, _)| *w == workload) {
        for (name, value) in REFERENCE_NAMES.iter().zip(refs) {
            lines.push((name.to_string(), *value));
        }
    }
    for (name, cache) in all_contenders(capacity) {
        if !selected("HIT_RATIO_CONTENDERS", &name, |n, part| n.starts_with(part)) {
            continue;
        }
        lines.push((name, replay(cache.as_ref(), trace)));
    }
    for (name, value) in &lines {
        println!("hit_ratio workload={workload} contender={name} value={value:.4}");
    }
    let best = lines.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    let backstop_min = lines
        .iter()
        .filter(|(n, _)| n.starts_with("backstop"))
        .map(|(_, v)| *v)
        .min_by(f64::total_cmp);
    if let (Some((best_name, best)), Some(min)) = (best, backstop_min) {
        let within = min + 0.01 >= *best;
        println!(
            "hit_ratio_check workload={workload} best={best_name} value={best:.4} backstop_min={min:.4} within_1pt={within}"
        );
    }
}

fn dump(dir: &str, workload: &str, capacity: u64, trace: &[u64]) {
    use std::io::Write;
    let path = format!("{dir}/{workload}.txt");
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        for k in trace {
            writeln!(f, "{k}")?;
        }
        let mut m = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{dir}/manifest.tsv"))?;
        writeln!(m, "{workload}\t{capacity}\t{path}")
    };
    if let Err(e) = write() {
        eprintln!("hit_ratio: cannot dump {workload} to {dir}: {e}");
    }
}

/// The keys of one `.lis` trace: each line `start count _ _` asks for the `count` blocks
/// from `start`.
fn lis_trace(path: &Path) -> Option<Vec<u64>> {
    let out = Command::new("zstd").arg("-dc").arg(path).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut keys = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(start)), Some(Ok(count))) = (it.next(), it.next()) {
            keys.extend(start..start + count);
        }
    }
    Some(keys)
}

fn real_traces() {
    let dir = std::env::var("BACKSTOP_CACHE_TRACES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/traces/cache"));
    for name in ["P2", "P12"] {
        let wanted = [10_000u64, 50_000, 100_000]
            .map(|c| format!("{name}_{c}"))
            .iter()
            .any(|w| selected("HIT_RATIO_ONLY", w, |w, part| w.contains(part)));
        if !wanted {
            continue;
        }
        let path = dir.join(format!("{name}.lis.zst"));
        let Some(trace) = lis_trace(&path) else {
            println!(
                "hit_ratio: skipping {name}: cannot read {} with `zstd -dc` (set BACKSTOP_CACHE_TRACES to the folder holding {name}.lis.zst)",
                path.display()
            );
            continue;
        };
        for capacity in [10_000u64, 50_000, 100_000] {
            hit_ratio(&format!("{name}_{capacity}"), capacity, &trace);
        }
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Child-process body: fill one contender of 1,000,000 entries three times over and
/// print bytes per entry held.
fn memory(contender: &str) {
    const N: u64 = 1_000_000;
    let before = resident_bytes();
    let Some((name, cache)) = contenders(N).into_iter().find(|(n, _)| *n == contender) else {
        return;
    };
    for k in 0..3 * N {
        cache.insert(k, k);
    }
    let held = (0..3 * N)
        .filter(|k| cache.get(*k).is_some())
        .count()
        .max(1) as u64;
    let per_entry = resident_bytes().saturating_sub(before) / held;
    println!("cache_memory contender={name} value={per_entry}");
}

fn main() {
    if let Ok(c) = std::env::var("CACHE_MEMORY_CONTENDER") {
        memory(&c);
        return;
    }
    for alpha in [0.6, 0.8, 1.0] {
        let trace = zipf_keys(KEYS, alpha, LEN, 1);
        for pct in [1u64, 10] {
            hit_ratio(
                &format!("zipf{alpha:.1}_cap{pct}"),
                KEYS * pct / 100,
                &trace,
            );
        }
    }
    hit_ratio("scan_mix", 5_000, &scan_mix());
    let looped: Vec<u64> = (0..LEN as u64).map(|i| i % 5_500).collect();
    hit_ratio("loop", 5_000, &looped);
    let looped: Vec<u64> = (0..LEN as u64).map(|i| i % 12_000).collect();
    hit_ratio("loop_large", 1_000, &looped);
    hit_ratio("shifting", 5_000, &shifting());
    real_traces();
    if std::env::var("HIT_RATIO_DUMP").is_ok() {
        return;
    }
    if std::env::var("HIT_RATIO_ONLY").is_ok() {
        return;
    }
    if let Ok(exe) = std::env::current_exe() {
        for c in ["backstop", "moka", QUICK_CACHE] {
            if let Ok(out) = Command::new(&exe).env("CACHE_MEMORY_CONTENDER", c).output() {
                print!("{}", String::from_utf8_lossy(&out.stdout));
            }
        }
    }
}
