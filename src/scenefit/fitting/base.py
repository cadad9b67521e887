"""The pieces every fitting strategy shares: batched gradient refinement (the paper's Algorithm 1), global
starts (Sobol spreads, codebooks), and the result type.

For every target image ``x_t`` and each of its candidate starts, :func:`fit_candidates` repeats
``ξ ← ξ − η ∇_ξ [1 − cos(F(G(ξ)), F(x_t))]`` (Adam by default, plain gradient descent as in the paper
with ``optimizer="sgd"``), then keeps the candidate with the lowest content loss. ``G`` can be the
surrogate or a differentiable engine: any ``render(attrs, soft) -> images`` callable.

Attributes are optimized in unit-cube coordinates (so one learning rate fits degrees and pixels alike);
periodic ones wrap, bounded ones are clamped after every step. Categorical attributes are either fixed
per candidate (enumerated starts) or relaxed to a softmax over categories and rounded at the end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.fitting.look import LookTerm, split_look
from scenefit.tasks.base import content_loss

Renderer = Callable[[torch.Tensor, dict[int, torch.Tensor] | None], torch.Tensor]
FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class FitResult:
    """Fitted attributes and losses.

    attrs: (N, D) natural units, the best candidate per target.
    loss: (N,) content loss of that candidate.
    candidate: (N,) index of the winning start.
    losses: (N, M) final loss of every candidate.
    starts: (N, M, D) the candidates whose losses ``losses`` holds.
    seconds: wall time of the strategy.
    info: strategy-specific JSON-ready figures (recorded in the fit stage's report).
    snapshots: (S, N, M, D) natural units, every candidate after each step count asked of :func:`fit_candidates`
        (``snapshots``), else None.
    """

    attrs: torch.Tensor
    loss: torch.Tensor
    candidate: torch.Tensor
    losses: torch.Tensor
    starts: torch.Tensor
    seconds: float
    info: dict = field(default_factory=dict)
    snapshots: torch.Tensor | None = None


def _project(space: AttributeSpace, unit: torch.Tensor, free: list[int]) -> torch.Tensor:
    """Keep unit-cube parameters (B, F) valid: wrap periodic columns, clamp bounded ones."""
    cols = []
    for j, i in enumerate(free):
        u = unit[:, j]
        cols.append(torch.remainder(u, 1.0) if space.attributes[i].periodic else u.clamp(0.0, 1.0))
    return torch.stack(cols, dim=1) if cols else unit


def _rounded(space: AttributeSpace, attrs: torch.Tensor, logits: dict[int, torch.Tensor]) -> torch.Tensor:
    """Rows (B, D) with each relaxed category set to its logits' argmax, clamped into bounds."""
    for c, lg in logits.items():
        attrs[:, c] = lg.argmax(1).float()
    return space.clamp(attrs)


def _losses(render, feature_fn, attrs, soft, f_t, look: LookTerm | None, owner: torch.Tensor) -> torch.Tensor:
    """(B,) loss of ``attrs``: the content term, plus the look term with the gradient routed (:mod:`.look`)."""
    if look is None:
        return content_loss(feature_fn(render(attrs, soft)), f_t)
    if not attrs.requires_grad:
        x = render(attrs, soft)
        return content_loss(feature_fn(x), f_t) + look.loss(x, owner)
    content, looks = split_look(attrs, look)
    fixed = {c: p.detach() for c, p in soft.items()} if soft else None  # categories are content
    return content_loss(feature_fn(render(content, soft)), f_t) + look.loss(render(looks, fixed), owner)


def fit_candidates(
    render: Renderer,
    feature_fn: FeatureFn,
    space: AttributeSpace,
    target_features: torch.Tensor,
    starts: torch.Tensor,
    free: list[int],
    steps: int,
    lr: float,
    optimizer: str = "adam",
    chunk: int = 2048,
    relax: list[int] | None = None,
    progress: bool = True,
    desc: str = "fit",
    look: LookTerm | None = None,
    snapshots: tuple[int, ...] = (),
) -> FitResult:
    """Refine every start of every target through ``render`` and keep the best per target.

    Args:
        target_features: (N, F) ``feature_fn`` of the target images.
        starts: (N, M, D) natural units.
        free: continuous columns to optimize (others stay at their start).
        steps, lr, optimizer: gradient steps per candidate, step size in unit-cube units, ``adam`` or ``sgd``.
        chunk: candidates optimized at once (bounds memory).
        relax: categorical columns searched as a softmax (start: uniform);
            the others keep the start's category.
        look: the look term of the targets (:mod:`scenefit.fitting.look`), or None.
        snapshots: step counts (each <= ``steps``) after which every candidate is also recorded, rounded and clamped
            as the final rows are (``FitResult.snapshots``): one run gives what runs of those step counts would.
    """
    n, m, d = starts.shape
    if any(not 0 <= s <= steps for s in snapshots):
        raise ValueError(f"snapshots must lie in [0, steps={steps}], got {list(snapshots)}")
    relax = relax or []
    flat = starts.reshape(n * m, d).clone()
    snaps = torch.empty(len(snapshots), n * m, d, dtype=starts.dtype) if snapshots else None
    owner = torch.arange(n).repeat_interleave(m)  # target of each candidate
    final = torch.empty(n * m)
    t0 = time.time()
    chunks = range(0, n * m, chunk)
    bar = tqdm(total=len(chunks) * steps, desc=f"{desc} ({n} targets x {m} starts)", disable=not progress, leave=False)
    for lo in chunks:
        hi = min(lo + chunk, n * m)
        base = flat[lo:hi].to(target_features.device)
        f_t = target_features[owner[lo:hi]]
        unit = space.normalize(base)[:, free].clone().requires_grad_(True)
        logits = {c: torch.zeros(hi - lo, space.attributes[c].num_categories, device=base.device, requires_grad=True) for c in relax}
        params = [unit, *logits.values()]
        opt = torch.optim.Adam(params, lr=lr) if optimizer == "adam" else torch.optim.SGD(params, lr=lr)

        def assemble() -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
            full = space.normalize(base).clone()
            full[:, free] = unit
            attrs = space.denormalize(full)
            soft = {c: torch.softmax(lg, dim=1) for c, lg in logits.items()}
            return attrs, soft

        for step in range(steps + 1):
            if step in snapshots:
                with torch.no_grad():
                    snaps[[k for k, s in enumerate(snapshots) if s == step], lo:hi] = _rounded(space, assemble()[0], logits).cpu()
            if step == steps:
                break
            attrs, soft = assemble()
            loss = _losses(render, feature_fn, attrs, soft or None, f_t, look, owner[lo:hi]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            with torch.no_grad():
                unit.copy_(_project(space, unit, free))
            bar.update(1)
        with torch.no_grad():
            attrs = _rounded(space, assemble()[0], logits)
            final[lo:hi] = _losses(render, feature_fn, attrs, None, f_t, look, owner[lo:hi]).cpu()
            flat[lo:hi] = attrs.cpu()
    bar.close()
    losses = final.view(n, m)
    best = losses.argmin(1)
    fitted = flat.view(n, m, d)[torch.arange(n), best]
    return FitResult(fitted, losses[torch.arange(n), best], best, losses, starts, time.time() - t0,
                     snapshots=None if snaps is None else snaps.view(len(snapshots), n, m, d))


def fit_one_reference(
    render: Renderer,
    feature_fn: FeatureFn,
    space: AttributeSpace,
    target: torch.Tensor,
    start: torch.Tensor,
    free: list[int],
    steps: int,
    lr: float,
) -> tuple[torch.Tensor, float]:
    """The literal Algorithm 1 for one image: plain gradient descent, one start, no batching.

    Kept as a reference for comparisons with :func:`fit_candidates` (``optimizer="sgd"``).

    Args:
        target: (C, H, W) image; start: (D,) natural units.
    Returns:
        fitted attributes (D,) and the final content loss.
    """
    with torch.no_grad():
        f_t = feature_fn(target[None])
    xi = space.normalize(start[None])[:, free].clone().requires_grad_(True)
    full0 = space.normalize(start[None])

    def attrs_of(u: torch.Tensor) -> torch.Tensor:
        full = full0.clone()
        full[:, free] = u
        return space.denormalize(full)

    for _ in range(steps):
        loss = content_loss(feature_fn(render(attrs_of(xi), None)), f_t).sum()
        (grad,) = torch.autograd.grad(loss, xi)
        with torch.no_grad():
            xi = _project(space, xi - lr * grad, free).requires_grad_(True)
    with torch.no_grad():
        a = space.clamp(attrs_of(xi))
        return a[0], content_loss(feature_fn(render(a, None)), f_t).item()


@dataclass
class FitInputs:
    """What a strategy may use; each strategy reads only its part.

    space: the engine's attributes. features: images -> (B, F), differentiable, on ``device``.
    target_features: (N, F) ``features`` of the targets. target_images: (N, C, h, w) at the fitting resolution
    (the encoder reads them). centre: (D,) natural units, the initial distribution's centre (the plain start by default, and
    the value of every attribute that is not fitted). free: continuous columns to fit. surrogate: G. engine: R at
    the fitting resolution. encoder: E. seed: all randomness of the strategy. first_target: the global index of
    the first target (a shard's offset), so that a target's own draws depend on its index, not on its batch.
    look: the targets' look term (:mod:`scenefit.fitting.look`), None when the engine has no look attribute.
    sample_initial: ``(n, generator) -> (n, D)`` draws of the initial distribution (``fit.plain.start initial``).
    log_prior: per categorical or periodic attribute name, (N, n) log prior of these targets estimated over a larger
    set (a streamed fit's pre-pass); ``amortized`` with ``fit.amortized.prior_iters`` > 0 uses it instead of
    estimating one from these targets alone. None: estimated here.
    """

    space: AttributeSpace
    features: FeatureFn
    target_features: torch.Tensor
    centre: torch.Tensor
    free: list[int]
    seed: int
    device: torch.device = torch.device("cpu")
    target_images: torch.Tensor | None = None
    surrogate: Renderer | None = None
    engine: object | None = None
    encoder: object | None = None
    progress: bool = True
    first_target: int = 0
    look: LookTerm | None = None
    sample_initial: Callable[[int, torch.Generator], torch.Tensor] | None = None
    log_prior: dict[str, torch.Tensor] | None = None

    @property
    def n(self) -> int:
        """Number of targets N."""
        return int(self.target_features.shape[0])

    def target_index(self) -> torch.Tensor:
        """(N,) global indices of the targets."""
        return torch.arange(self.first_target, self.first_target + self.n)

    def base(self) -> torch.Tensor:
        """(N, D) every target at the centre."""
        return self.centre[None].repeat(self.n, 1)

    def need(self, what: str, method: str) -> object:
        """The input ``what`` (``surrogate``, ``engine``, ``encoder``, ``target_images``), or ``ValueError`` naming ``method``."""
        value = getattr(self, what)
        if value is None:
            raise ValueError(f"fit.method '{method}' needs the {what}, which this fit was not given")
        return value
