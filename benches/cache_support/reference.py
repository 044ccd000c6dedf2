"""Reference hit ratios for the `hit_ratio` bench, from libCacheSim (the `libcachesim`
PyPI package; figures in the bench were computed with 0.3.5).

    HIT_RATIO_DUMP=/tmp/traces cargo bench -p backstop --bench hit_ratio
    pip install libcachesim
    python3 benches/cache_support/reference.py /tmp/traces

prints the `REFERENCE` rows to paste into `benches/hit_ratio.rs`: for every trace in
the dump's manifest, the hit ratio of S3-FIFO, W-TinyLFU and ARC at the trace's capacity
(every object of size 1, so the capacity counts entries), with the package's defaults.
"""

import sys

import libcachesim as lcs


def main(folder):
    seen = set()
    with open(f"{folder}/manifest.tsv") as manifest:
        rows = [line.rstrip("\n").split("\t") for line in manifest if line.strip()]
    for workload, capacity, path in rows:
        if workload in seen:
            continue
        seen.add(workload)
        reader = lcs.TraceReader(path, lcs.TraceType.PLAIN_TXT_TRACE)
        ratios = []
        for policy in (lcs.S3FIFO, lcs.WTinyLFU, lcs.ARC):
            miss_ratio, _ = policy(int(capacity)).process_trace(reader)
            ratios.append(1.0 - miss_ratio)
        print(f'    ("{workload}", [{ratios[0]:.4f}, {ratios[1]:.4f}, {ratios[2]:.4f}]),', flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
