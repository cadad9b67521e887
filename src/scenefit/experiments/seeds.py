"""Mean ± sample sd over run seeds of ``scenefit experiment mnist`` run folders (one folder per seed).

Accuracies are read as fractions from each folder's ``results.json`` and reported in percent; paired differences
(ours − oracle, ours − paper) are in accuracy points, taken per seed before averaging.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from scenefit.config import ConfigError
from scenefit.experiments.tables import METHOD_NAMES, SETTING_NAMES
from scenefit.scenarios import PAPER_SETTINGS

PAIRS = (("ours", "oracle"), ("ours", "paper"))
"""The paired differences of :func:`seed_rows`, as (minuend, subtrahend)."""


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested ``--set`` overrides as ``{"fit.steps": 10}``."""
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def load_runs(folders: list[Path]) -> list[dict]:
    """The ``results.json`` of each folder, in the given order, each with ``"folder"`` added (a str).

    Refuses (ConfigError) a missing or unreadable file, one that is not an mnist experiment, runs of different
    ``scale`` or ``overrides`` (``--set``), and two folders with the same seed."""
    runs: list[dict] = []
    for folder in folders:
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise ConfigError(f"{path}: not found; expected the results.json of a `scenefit experiment mnist` run folder")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read it as JSON ({e})") from None
        if not isinstance(data, dict) or data.get("experiment") != "mnist":
            got = data.get("experiment") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"{path}: not the results of `scenefit experiment mnist` (experiment: {got!r})")
        if not isinstance(data.get("results"), dict) or not isinstance(data.get("seed"), int):
            raise ConfigError(f"{path}: lacks 'results' or an integer 'seed'")
        run = {**data, "folder": str(folder), "overrides": data.get("overrides") or {}}
        for other in runs:
            where = f"{other['folder']} and {run['folder']}"
            if other.get("scale") != run.get("scale"):
                raise ConfigError(f"{where}: different scales ({other.get('scale')!r} vs {run.get('scale')!r}); "
                                  "a seed table averages runs of one scale")
            if other["overrides"] != run["overrides"]:
                a, b = _flat(other["overrides"]), _flat(run["overrides"])
                diff = ", ".join(f"{k}: {a.get(k, 'unset')!r} vs {b.get(k, 'unset')!r}"
                                 for k in sorted(a.keys() | b.keys()) if a.get(k, "unset") != b.get(k, "unset"))
                raise ConfigError(f"{where}: different --set overrides ({diff}); a seed table averages runs that differ "
                                  "only in their seed")
            if other["seed"] == run["seed"]:
                raise ConfigError(f"{where}: the same seed {run['seed']}; each folder must be a run of its own seed")
        runs.append(run)
    return runs


def _order(keys: set[str], known: tuple[str, ...]) -> list[str]:
    """``keys`` in the order of ``known``, unknown ones after (sorted)."""
    return [k for k in known if k in keys] + sorted(keys - set(known))


def _accuracy(run: dict, setting: str, method: str) -> float | None:
    """One cell in percent, None where the run lacks it."""
    row = run["results"].get(setting, {}).get(method)
    acc = row.get("accuracy") if isinstance(row, dict) else None
    return None if acc is None else 100.0 * float(acc)


def seed_rows(runs: list[dict]) -> list[dict]:
    """One row per setting present in at least one run (PAPER_SETTINGS order).

    Each row: ``{"setting", "seeds": [seed per run, in run order], "n_seeds": runs having the setting, "methods":
    {method: {"values": [% or None per run], "n", "mean", "sd"}}, "paired": {"ours-oracle": {"values": [points or None
    per run], "n", "mean"}, ...}}``. sd is the sample sd (n − 1), None when n < 2; means are None when n is 0."""
    seeds = [r["seed"] for r in runs]
    settings = _order({s for r in runs for s in r["results"]}, tuple(PAPER_SETTINGS))
    rows = []
    for s in settings:
        methods = _order({m for r in runs for m in r["results"].get(s, {})}, tuple(METHOD_NAMES))
        cells: dict[str, dict] = {}
        for m in methods:
            values = [_accuracy(r, s, m) for r in runs]
            have = [v for v in values if v is not None]
            cells[m] = {"values": values, "n": len(have), "mean": statistics.fmean(have) if have else None,
                        "sd": statistics.stdev(have) if len(have) >= 2 else None}
        paired: dict[str, dict] = {}
        for a, b in PAIRS:
            diffs = [None if x is None or y is None else x - y
                     for x, y in zip(cells.get(a, {}).get("values", [None] * len(runs)),
                                     cells.get(b, {}).get("values", [None] * len(runs)), strict=True)]
            have = [d for d in diffs if d is not None]
            paired[f"{a}-{b}"] = {"values": diffs, "n": len(have), "mean": statistics.fmean(have) if have else None}
        rows.append({"setting": s, "seeds": seeds, "n_seeds": sum(s in r["results"] for r in runs),
                     "methods": cells, "paired": paired})
    return rows


def _signed(x: float) -> str:
    """One decimal with a sign; -0.0 reads +0.0."""
    text = f"{x:+.1f}"
    return "+0.0" if text == "-0.0" else text


def _cell(c: dict | None) -> str:
    """``a / b / c (mean ± sd)``; ``(mean)`` alone for one seed; ``–`` for a missing seed or cell."""
    if not c or not c["n"]:
        return "–"
    values = " / ".join("–" if v is None else f"{v:.1f}" for v in c["values"])
    spread = f"{c['mean']:.1f}" + ("" if c["sd"] is None else f" ± {c['sd']:.1f}")
    return f"{values} ({spread})"


def _paired(p: dict) -> str:
    """``+x / +y / +z (mean +m)`` in points; ``–`` where a seed lacks either side."""
    if not p["n"]:
        return "–"
    return " / ".join("–" if v is None else _signed(v) for v in p["values"]) + f" (mean {_signed(p['mean'])})"


def seeds_markdown(runs: list[dict]) -> str:
    """The markdown table of :func:`seed_rows`: a line on scale and seeds, the table, a line on missing seeds."""
    rows = seed_rows(runs)
    seeds = [r["seed"] for r in runs]
    methods = _order({m for row in rows for m in row["methods"]}, tuple(METHOD_NAMES))
    head = ["Setting", *(METHOD_NAMES.get(m, m) for m in methods), *(f"{a} − {b} (paired)" for a, b in PAIRS)]
    lines = [(f"Scale {runs[0].get('scale')}, run seeds {' / '.join(map(str, seeds))} (values in this order); "
              "accuracy %, mean ± sample sd; paired differences in points, per seed."), "",
             "| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = [_cell(row["methods"].get(m)) for m in methods] + [_paired(row["paired"][f"{a}-{b}"]) for a, b in PAIRS]
        lines.append("| " + " | ".join([SETTING_NAMES.get(row["setting"], row["setting"]), *cells]) + " |")
    most = max((row["n_seeds"] for row in rows), default=0)
    fewer = [f"{SETTING_NAMES.get(row['setting'], row['setting'])} "
             f"(seed {', '.join(str(s) for s, r in zip(seeds, runs, strict=True) if row['setting'] in r['results'])})"
             for row in rows if row["n_seeds"] < most]
    lines += ["", (f"Fewer seeds than the other settings: {'; '.join(fewer)}." if fewer else
                   f"Every setting has {'all' if most == len(runs) else f'{most} of the'} {len(runs)} run seeds.")
              + " Within a setting, a method missing from a run shows – in that run's place."]
    return "\n".join(lines) + "\n"
