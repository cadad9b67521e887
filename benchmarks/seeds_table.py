"""Mean ± sample sd over run seeds of ``scenefit experiment mnist`` run folders (scenefit.experiments.seeds).

    python benchmarks/seeds_table.py runs/mnist-quick runs/mnist-quick-s1 runs/mnist-quick-s2 --out seeds.md

Each argument is the ``--out`` folder of one ``scenefit experiment mnist --seed S`` run; all must share the scale and
the ``--set`` overrides and have distinct seeds. Reads only their ``results.json`` (nothing is trained) and prints one
markdown row per setting: each method's accuracy per seed in percent, in the folders' order, with mean ± sample sd,
then the paired differences ours − oracle and ours − paper (points, per seed, and their mean). ``--out FILE`` also
writes the table to FILE (atomically).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from scenefit.config import ConfigError
from scenefit.experiments.seeds import load_runs, seeds_markdown
from scenefit.io import atomic_write_text


def main() -> None:
    """Command-line entry point: parse ``sys.argv`` as the module docstring describes and run this benchmark."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", type=Path, help="run folders of scenefit experiment mnist, one per seed")
    ap.add_argument("--out", type=Path, default=None, help="also write the markdown table to this file")
    args = ap.parse_args()
    try:
        text = seeds_markdown(load_runs(args.folders))
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    print(text, end="")
    if args.out is not None:
        atomic_write_text(args.out, text)


if __name__ == "__main__":
    main()
