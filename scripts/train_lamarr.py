"""Train Lamarr's fast-simulation pipeline on the detailed simulation, deterministically.

    .venv/bin/python scripts/train_lamarr.py            # writes models/weights/lamarr/
    .venv/bin/python scripts/train_lamarr.py --events 2000 --out /tmp/lamarr   # a quick try

See models/lamarr/train.py for what is trained and how; the same settings give byte-identical weights.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.lamarr import fastsim, train  # noqa: E402


def main(argv=None) -> int:
    d = train.TrainConfig()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=d.events, help=f"training events (default {d.events})")
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--classifier-steps", type=int, default=d.classifier_steps)
    ap.add_argument("--gan-steps", type=int, default=d.gan_steps)
    ap.add_argument("--out", default=str(fastsim.WEIGHTS), help="output folder (default: models/weights/lamarr)")
    a = ap.parse_args(argv)
    cfg = train.TrainConfig(events=a.events, seed=a.seed, classifier_steps=a.classifier_steps, gan_steps=a.gan_steps)
    train.run(cfg, Path(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
