"""Does the machine have slow phases, and does the latency guard see them? For ``--seconds``, time a probe unit (a
128 -> 128 conv on a 16x16 map, batch 1) the way the latency model times a unit (the fastest of 120 rounds of about
0.5 ms), with the guard's reference conv read just before and after it, over and over. Prints how many probe readings
were more than 10% above the probe's fastest, and among the readings the guard accepts (both reference readings
within ``guard`` of the reference's fastest), how many were and the slowest accepted. A machine without slow phases
has almost no slow readings; the guard is worth its cost where slow readings come in runs it can see.

    .venv/bin/python bench/latency_phases.py --seconds 90
"""
from __future__ import annotations

import argparse
import time

from ddc_env.arch.spec import Conv
from ddc_env.latency import GUARD_REFERENCE, GUARD_ROUNDS, LatencyProtocol, fastest_unit_ms
from ddc_env.train import compute_signature

PROBE = (Conv("probe", 128), (128, 16, 16))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--guard", type=float, default=LatencyProtocol().guard)
    args = parser.parse_args()
    protocol = LatencyProtocol()
    print(f"machine: {compute_signature('cpu')}; protocol: {protocol}")
    readings: list[tuple[float, float, float, float]] = []  # (seconds, before, probe, after)
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        before = fastest_unit_ms(*GUARD_REFERENCE, protocol, GUARD_ROUNDS)
        probe = fastest_unit_ms(*PROBE, protocol, protocol.unit_rounds)
        after = fastest_unit_ms(*GUARD_REFERENCE, protocol, GUARD_ROUNDS)
        readings.append((time.monotonic() - start, before, probe, after))
    probe_floor = min(r[2] for r in readings)
    reference_floor = min(min(r[1], r[3]) for r in readings)
    slow = [r for r in readings if r[2] > 1.1 * probe_floor]
    accepted = [r for r in readings if max(r[1], r[3]) <= (1 + args.guard) * reference_floor]
    slow_accepted = [r for r in accepted if r[2] > 1.1 * probe_floor]
    print(f"{len(readings)} probe readings in {args.seconds:g} s; fastest {probe_floor:.3f} ms")
    print(f"slow (> 1.1x the fastest): {len(slow)}, at seconds " + ", ".join(f"{r[0]:.1f}" for r in slow[:40]))
    slowest = f"{max(r[2] for r in accepted) / probe_floor:.3f}x the fastest" if accepted else "none accepted"
    print(f"accepted by the guard ({args.guard:g}): {len(accepted)}; slow among them: {len(slow_accepted)}; "
          f"slowest accepted: {slowest}")


if __name__ == "__main__":
    main()
