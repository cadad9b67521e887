"""What remains between ours and the oracle: the fit's errors, attribute by attribute, in accuracy points.

On a problem whose targets carry their true attributes (the built-in target domains), the gap between ours and
the oracle (the labeled targets themselves) splits in two:

    oracle - ceiling    what is not an attribute: the targets' own handwriting, texture or look, which the engine
                        cannot draw (ceiling = R at the targets' *true* attributes, rendered as ours is)
    ceiling - ours      the fit's attribute errors

and the second part is measured per group of attributes by a *swap*: ours' fitted rows with one group's columns
replaced by the truth, rendered and scored like ours (same render seeds, same task recipe and seed). Its gain over
ours is what that group's errors cost. Groups (:func:`swap_groups`): every categorical attribute alone, ``tx`` and
``ty`` together as ``position``, every other continuous attribute alone, and for a periodic attribute in degrees
also ``<name> flips``: only the rows whose error is 135° or more (a pose read upside down) take the truth.
Attributes marked ``look`` are left out when the targets got their look elsewhere (``setting.look``).

Swaps are not additive (two groups' errors can cost together more than apart), so the report gives each gain on its
own beside the total ``ceiling - ours``. One task network's score moves between task seeds (by points at the
quick and paper scales, docs/RESULTS.md), so with ``evaluate.task_seeds`` > 1 every column is the mean over the same
seeds.
"""

from __future__ import annotations

import torch

from scenefit.attributes import AttributeSpace, wrap_angle
from scenefit.evaluate import FLIP_DEG, attribute_errors
from scenefit.pipeline import Pipeline
from scenefit.runs import key_of


def swap_groups(space: AttributeSpace, skip: tuple[str, ...] = ()) -> dict[str, tuple[list[int], bool]]:
    """The breakdown's groups: name -> (columns, flips_only). ``flips_only`` groups swap only rows whose periodic
    error is >= :data:`FLIP_DEG`. Attributes named in ``skip`` get no group."""
    names = [a.name for a in space if a.name not in skip]
    groups: dict[str, tuple[list[int], bool]] = {}
    for a in space:
        if a.name not in names:
            continue
        if a.name in ("tx", "ty") and "tx" in names and "ty" in names:
            if "position" not in groups:
                groups["position"] = ([space.index("tx"), space.index("ty")], False)
            continue
        groups[a.name] = ([space.index(a.name)], False)
        if a.periodic and a.unit == "deg":
            groups[f"{a.name} flips"] = ([space.index(a.name)], True)
    return groups


def flipped(space: AttributeSpace, fitted: torch.Tensor, true: torch.Tensor, column: int) -> torch.Tensor:
    """(N,) bool: rows whose circular error in periodic ``column`` (degrees) is at least :data:`FLIP_DEG`."""
    a = space[space.names[column]]
    d = wrap_angle(fitted[:, column] - true[:, column], -a.span / 2, a.span / 2).abs()
    return d >= FLIP_DEG


def swapped(space: AttributeSpace, fitted: torch.Tensor, true: torch.Tensor, columns: list[int], flips_only: bool = False) -> tuple[torch.Tensor, float]:
    """``fitted`` (N, D) with ``columns`` taken from ``true`` (N, D) (only in flipped rows when ``flips_only``).
    Returns the rows and the fraction of rows whose values changed."""
    out = fitted.clone()
    rows = flipped(space, fitted, true, columns[0]) if flips_only else torch.ones(fitted.shape[0], dtype=torch.bool)
    for c in columns:
        out[rows, c] = true[rows, c]
    changed = (out != fitted).any(1).float().mean().item() if fitted.shape[0] else 0.0
    return out, changed


def register_swaps(pipe: Pipeline) -> dict[str, float]:
    """Register one training set ``swap-<group>`` per :func:`swap_groups` group on ``pipe`` (rendered as ours is);
    returns each group's fraction of changed rows. Needs the targets' true attributes and ours' fit."""
    true = pipe.problem.targets.attrs
    if true is None:
        raise ValueError("the error breakdown needs the targets' true attributes (synthesised targets)")
    fitted = pipe.fit()[0]
    space = pipe.res.engine.space
    changed: dict[str, float] = {}
    for name, (cols, flips_only) in swap_groups(space, pipe.attributes_without_truth()).items():
        rows, changed[name] = swapped(space, fitted, true, cols, flips_only)
        pipe.register_set(f"swap-{name}", lambda name=name: key_of("swap", pipe.ours_key(), name, FLIP_DEG),
                          lambda rows=rows: pipe.render_per_target(rows))
    return changed


def _score(pipe: Pipeline, method: str) -> tuple[float, list[float]]:
    """Mean score of ``method`` over the task seeds 0 .. ``evaluate.task_seeds`` - 1, and the per-seed scores."""
    scores = [r["score"] for r in pipe.score_seeds(method)]
    return sum(scores) / len(scores), scores


def error_breakdown(pipe: Pipeline) -> dict:
    """Score ours, the ceiling, the oracle and every swap (stages ``score-<set>[-seed<k>]``), each the mean over the
    run's ``evaluate.task_seeds`` task networks (paired: one seed list for every set). Returns ``{"ours", "ceiling",
    "oracle"`` (mean scores, fractions), ``"not_attribute"`` (oracle - ceiling), ``"attributes"`` (ceiling - ours),
    ``"swaps": {group: {"score", "gain", "rows_changed"}}``, ``"seeds": {set: [score per task seed]}``,
    ``"attribute_error"``: ours' per-attribute errors with flip fractions}``."""
    changed = register_swaps(pipe)
    seeds: dict[str, list[float]] = {}
    means: dict[str, float] = {}
    for m in ("ours", "ceiling", "oracle", *(f"swap-{g}" for g in changed)):
        means[m], seeds[m] = _score(pipe, m)
    ours = means["ours"]
    swaps = {g: {"score": means[f"swap-{g}"], "gain": means[f"swap-{g}"] - ours, "rows_changed": frac} for g, frac in changed.items()}
    err = attribute_errors(pipe.res.engine.space, pipe.fit()[0], pipe.problem.targets.attrs, pipe.attributes_without_truth())
    return {"ours": ours, "ceiling": means["ceiling"], "oracle": means["oracle"], "not_attribute": means["oracle"] - means["ceiling"],
            "attributes": means["ceiling"] - ours, "swaps": swaps, "task_seeds": len(seeds["ours"]), "seeds": seeds, "attribute_error": err}


def breakdown_table(rows: dict[str, dict]) -> str:
    """Markdown: one row per setting of :func:`error_breakdown` results (points)."""
    groups = sorted({g for b in rows.values() for g in b["swaps"]})
    head = ["setting", "task seeds", "ours", "ceiling (true attrs)", "oracle", "oracle - ceiling (not an attribute)", "ceiling - ours (attributes)"]
    lines = ["| " + " | ".join(head + [f"gain: true {g}" for g in groups]) + " |", "|---" * (len(head) + len(groups)) + "|"]
    for s, b in rows.items():
        cells = [s, str(b.get("task_seeds", 1))] + [f"{100 * b[k]:.1f}" for k in ("ours", "ceiling", "oracle", "not_attribute", "attributes")]
        for g in groups:
            w = b["swaps"].get(g)
            cells.append(f"{100 * w['gain']:+.1f} ({100 * w['rows_changed']:.0f}% rows)" if w else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["FLIP_DEG", "breakdown_table", "error_breakdown", "flipped", "register_swaps", "swap_groups", "swapped"]
