"""Carry finished A/B runs between machines without their weights (fer_core.train.carry): a long A/B whose
machine is gone continues elsewhere, training only the runs it lacks.

    python bench/ab_carry.py pack --cache DIR --dir bench/ab-runs/fer2013 --ab-id crowd-ab --ab-id crowd-steps
    python bench/ab_carry.py unpack --cache DIR --dir bench/ab-runs/fer2013

The packed folder (~0.3 MB a run: figures, test probabilities, yardsticks) can be committed; ``unpack`` refuses
another import of the dataset and any run whose yardstick test set differs on this machine.
"""

from __future__ import annotations

import argparse
import sys

import _common  # noqa: F401  (the repository's root on sys.path)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("action", choices=["pack", "unpack"])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--name", default="fer2013")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--ab-id", action="append", default=[], help="an A/B to pack (repeatable; pack only)")
    ap.add_argument("--run-id", action="append", default=[], help="a run outside any A/B to pack (repeatable)")
    args = ap.parse_args()
    from fer_core.errors import FerError
    from fer_core.train import ab, carry

    try:
        if args.action == "pack":
            ids = args.ab_id or ([] if args.run_id else [d["ab_id"] for d in ab.list_ab(args.name, args.cache)])
            man = carry.pack(args.name, ids, args.dir, args.cache, run_ids=args.run_id)
            print(f"packed {len(man['runs'])} finished runs ({', '.join(man['ab']) or 'no A/B'}) into {args.dir}")
        else:
            out = carry.unpack(args.name, args.dir, args.cache)
            print(f"carried {len(out['runs'])} runs in, {len(out['kept'])} already here; A/Bs: {', '.join(out['ab'])}")
            for rid, why in out["refused"]:
                print(f"refused {rid}: {why}")
    except FerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
