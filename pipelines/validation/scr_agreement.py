#!/usr/bin/env python3
"""nachtwacht's skin-conductance responses (SCRs) against NeuroKit2's, on the real E4 sample.

Both detectors read the same raw EDA (tests/data/e4-sample/EDA.csv, 4 Hz, 42 minutes):
nachtwacht through `nachtwacht validate scr --e4 DIR` (the stress pipeline's own SCR stage, default
rules from pipelines/stress.toml), NeuroKit2 through `nk.eda_process` (its default pipeline:
cleaning, cvxEDA-free phasic split by high-pass, peak detection). The script prints a Markdown
table: SCR counts, SCRs per minute compared minute by minute, and peak-by-peak agreement within a
tolerance. docs/validation.md reports its output.

    python3 -m venv venv && venv/bin/pip install -r pipelines/validation/requirements.txt
    cargo build --release && venv/bin/python pipelines/validation/scr_agreement.py \
        target/release/nachtwacht tests/data/e4-sample
"""

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import neurokit2 as nk
import numpy as np

TOLERANCE_S = 2.0
MIN_AMPLITUDE_US = 0.02  # nachtwacht's scr_min_amplitude_us


def read_eda(e4_dir: Path):
    lines = (e4_dir / "EDA.csv").read_text().split()
    start_s = float(lines[0].split(",")[0])
    rate = float(lines[1].split(",")[0])
    values = np.array([float(v) for v in lines[2:]])
    return start_s, rate, values


def nachtwacht_peaks(binary: str, e4_dir: Path) -> np.ndarray:
    out = subprocess.run(
        [binary, "validate", "scr", "--e4", str(e4_dir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert out[0] == "ts_ms", out[:1]
    return np.array([int(v) for v in out[1:]]) / 1000.0


def neurokit_peaks(start_s: float, rate: float, values: np.ndarray, min_amplitude: float):
    with warnings.catch_warnings():
        # At 4 Hz NeuroKit2 skips its low-pass filter and says so; nachtwacht smooths over 1 s.
        warnings.simplefilter("ignore")
        signals, info = nk.eda_process(values, sampling_rate=int(rate))
    peaks = np.asarray(info["SCR_Peaks"], dtype=float)
    amplitude = np.asarray(info["SCR_Amplitude"], dtype=float)
    keep = ~np.isnan(peaks) & (np.nan_to_num(amplitude) >= min_amplitude)
    return start_s + peaks[keep] / rate


def per_minute(times: np.ndarray, start_s: float, minutes: int) -> np.ndarray:
    idx = ((times - start_s) // 60).astype(int)
    idx = idx[(idx >= 0) & (idx < minutes)]
    return np.bincount(idx, minlength=minutes)


def matched(a: np.ndarray, b: np.ndarray, tolerance: float) -> int:
    """Peaks of `a` with a peak of `b` within `tolerance` seconds, each of `b` used once."""
    used = np.zeros(len(b), dtype=bool)
    n = 0
    for t in np.sort(a):
        candidates = np.where(~used & (np.abs(b - t) <= tolerance))[0]
        if len(candidates):
            used[candidates[np.argmin(np.abs(b[candidates] - t))]] = True
            n += 1
    return n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("nachtwacht", help="path to the nachtwacht binary")
    parser.add_argument("e4_dir", type=Path, help="an E4 CSV export (EDA.csv)")
    args = parser.parse_args()
    start_s, rate, values = read_eda(args.e4_dir)
    minutes = int(len(values) / rate // 60)
    ours = nachtwacht_peaks(args.nachtwacht, args.e4_dir)
    print(f"E4 sample: {len(values)} EDA samples at {rate:g} Hz, {minutes} whole minutes, "
          f"EDA {values.min():.3f}–{values.max():.3f} µS (median {np.median(values):.3f}); "
          f"neurokit2 {nk.__version__}; peak tolerance ±{TOLERANCE_S:g} s\n")
    print("| reference | SCRs (nachtwacht / reference) | per-minute Pearson r | per-minute mean abs. difference | "
          "nachtwacht peaks matched (precision) | reference peaks matched (recall) |")
    print("|---|---|---|---|---|---|")
    references = [
        ("NeuroKit2 default", 0.0),
        ("NeuroKit2, amplitude ≥ 0.01 µS (Boucsein's computerised criterion)", 0.01),
        (f"NeuroKit2, amplitude ≥ {MIN_AMPLITUDE_US} µS (nachtwacht's)", MIN_AMPLITUDE_US),
    ]
    for label, min_amp in references:
        ref = neurokit_peaks(start_s, rate, values, min_amp)
        a, b = per_minute(ours, start_s, minutes), per_minute(ref, start_s, minutes)
        r = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")
        mad = float(np.mean(np.abs(a - b)))
        precision = matched(ours, ref, TOLERANCE_S) / max(len(ours), 1)
        recall = matched(ref, ours, TOLERANCE_S) / max(len(ref), 1)
        print(f"| {label} | {len(ours)} / {len(ref)} | {r:.2f} | {mad:.2f} | {precision:.2f} | {recall:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
