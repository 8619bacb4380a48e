#!/usr/bin/env python
"""Replay one case of the fuzz campaign (tests/support/fuzzing.py) from its seed, in this process.

    python scripts/fuzz_replay.py SEED [--save model.onnx] [--ortgpu-only] [--memory-gb 6]

Prints the base model, the mutations, each runtime's outcome and the verdict; --save writes
the mutant model's bytes (its feeds are rebuilt from the seed), so it can be opened elsewhere.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from support import fuzzing  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("seed", type=int)
    p.add_argument("--save", help="write the mutant model to this path")
    p.add_argument("--ortgpu-only", action="store_true", help="do not run onnxruntime (it crashed on this case)")
    p.add_argument("--memory-gb", type=float, default=6.0,
                   help="address-space limit, as the campaign's workers have (0: none)")
    args = p.parse_args(argv)
    if args.memory_gb > 0:
        import resource  # noqa: PLC0415
        limit = int(args.memory_gb * (1 << 30))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    case = fuzzing.make_case(args.seed)
    print(f"seed {case.seed}: base {case.base}, mutations {case.mutations}, {len(case.model)} bytes")
    print("feeds: " + ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in case.feeds.items()))
    if args.save:
        with open(args.save, "wb") as f:
            f.write(case.model)
    res = fuzzing.run_case(case, skip_ort=args.ortgpu_only, emit=lambda phase: print(f"running {phase} ..."))
    print(f"verdict: {res['verdict']}")
    if res["detail"]:
        print(res["detail"])
    return 1 if res["verdict"] in fuzzing.FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
