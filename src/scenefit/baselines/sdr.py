"""SDR (Xue et al., IEEE TMM 2021): a discretized attribute policy trained by REINFORCE on task accuracy."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from tqdm.auto import tqdm

from scenefit.attributes import AttributeSpace
from scenefit.baselines.base import (
    Baseline,
    FeatureFn,
    Sampler,
    ScoreFn,
    check_scale,
    compose,
    learned_columns,
    positive_float,
    positive_int,
)

EPISODES = ("bin", "sample")
MAX_JOINT_BINS = 50_000


@dataclass(frozen=True)
class SDRConfig:
    """SDR settings.

    bins: equal-width bins per continuous attribute (12 = 30° of rotation,
        3.3 px of a ±20 px shift); a value is uniform inside its bin.
    iterations: policy updates.
    episodes: episodes (rendered sets, each scored by ``score_fn``) per update.
    episode_size: images per episode.
    lr: Adam step size on the policy logits.
    init_uniform: the starting policy is ``(1 - init_uniform) * histogram of
        the initial scenes + init_uniform * uniform``; 1 (default) starts
        uniform, as an agent with no prior; lower values start nearer the
        initial scenes (worth it for engines with many attributes).
    baseline_alpha: weight of the newest mean reward in the moving-average baseline.
    attributes: continuous attributes to learn (empty: all).
    groups: attributes that share one joint categorical over the product of
        their bins, e.g. ``(("tx", "ty"),)``: a 144-way policy at 12 bins (Xue
        et al. optimise correlated attributes jointly); a group's starting
        policy mixes the initial scenes' joint histogram with a uniform one.
        Learned attributes in no group keep an independent categorical.
    episode: ``bin`` (default): an episode draws one bin per policy factor and
        renders all its images in it; ``sample``: every image of an episode
        draws its own bins from the current policy (an episode is a draw of the
        policy's distribution, as the final data set is) and the REINFORCE
        log-probability is the mean over the episode's images of log π(bins_i).
    """

    bins: int = 12
    iterations: int = 200
    episodes: int = 4
    episode_size: int = 500
    lr: float = 0.1
    init_uniform: float = 1.0
    baseline_alpha: float = 0.7
    attributes: tuple[str, ...] = ()
    groups: tuple[tuple[str, ...], ...] = ()
    episode: str = "bin"

    def __post_init__(self) -> None:
        positive_int(self.bins, "sdr.bins", minimum=2)
        for name in ("iterations", "episodes"):
            positive_int(getattr(self, name), f"sdr.{name}")
        positive_int(self.episode_size, "sdr.episode_size", minimum=2)
        positive_float(self.lr, "sdr.lr")
        positive_float(self.init_uniform, "sdr.init_uniform", upper=1.0)
        positive_float(self.baseline_alpha, "sdr.baseline_alpha", upper=1.0)
        if self.episode not in EPISODES:
            raise ValueError(f"sdr.episode must be one of {list(EPISODES)}, got {self.episode!r}")
        if isinstance(self.groups, (str, bytes)) or not all(isinstance(g, (tuple, list)) and not isinstance(g, str) for g in self.groups):
            raise ValueError(f"sdr.groups must be a list of attribute-name lists, e.g. [['tx', 'ty']], got {self.groups!r}")
        groups = tuple(tuple(g) for g in self.groups)
        object.__setattr__(self, "groups", groups)
        seen: set[str] = set()
        for group in groups:
            if not group or not all(isinstance(n, str) for n in group):
                raise ValueError(f"sdr.groups: every group must be a non-empty list of attribute names, got {list(group)!r}")
            for name in group:
                if group.count(name) > 1:
                    raise ValueError(f"sdr.groups names '{name}' twice in one group")
                if name in seen:
                    raise ValueError(f"sdr.groups names '{name}' in more than one group")
            seen.update(group)
            if self.bins ** len(group) > MAX_JOINT_BINS:
                raise ValueError(f"sdr.groups: group {list(group)} has {self.bins}**{len(group)} = {self.bins ** len(group)} joint bins; "
                                 f"at most {MAX_JOINT_BINS}")

    @classmethod
    def at_scale(cls, scale: str, **overrides: Any) -> "SDRConfig":
        """``tiny`` (tests), ``quick`` (minutes on a CPU) or ``paper``."""
        check_scale(scale)
        sizes = {"tiny": dict(iterations=50, episodes=4, episode_size=40),
                 "quick": dict(iterations=60, episodes=4, episode_size=200),
                 "paper": {}}[scale]
        return replace(cls(), **{**sizes, **overrides})


def policy_factors(space: AttributeSpace, cols: list[int], groups: tuple[tuple[str, ...], ...]) -> list[list[int]]:
    """The policy's factors as positions into ``cols``: each group one factor (its attributes in the group's
    order), every other learned column its own; factors ordered by their first column in ``cols``."""
    where = {col: j for j, col in enumerate(cols)}
    grouped: dict[int, tuple[str, ...]] = {}
    for group in groups:
        for name in group:
            if name not in space.names:
                raise ValueError(f"sdr.groups names unknown attribute '{name}'; known: {list(space.names)}")
            if space[name].categorical:
                raise ValueError(f"sdr.groups: '{name}' is categorical; only continuous attributes are learned")
            if space.index(name) not in where:
                raise ValueError(f"sdr.groups: '{name}' is not learned (sdr.attributes: {[space.names[c] for c in cols]})")
            grouped[space.index(name)] = group
    factors, done = [], set()
    for col in cols:
        if col in done:
            continue
        members = [space.index(n) for n in grouped[col]] if col in grouped else [col]
        done.update(members)
        factors.append([where[c] for c in members])
    return factors


def bin_rows(space: AttributeSpace, initial: Sampler, cols: list[int], bins: torch.Tensor, n_bins: int,
             generator: torch.Generator) -> torch.Tensor:
    """(n, D) rows drawn from ``initial`` whose columns ``cols`` are uniform inside ``bins`` (n, len(cols)) int64 of
    ``n_bins`` equal-width bins per attribute (an SDR episode's rows)."""
    base = initial(bins.shape[0], generator)
    unit = (bins + torch.rand(bins.shape, generator=generator)) / n_bins
    return compose(space, base, cols, unit)


def bins_of(space: AttributeSpace, rows: torch.Tensor, cols: list[int], n_bins: int) -> torch.Tensor:
    """The bins (N, len(cols)) int64 of ``n_bins`` per attribute that natural-unit ``rows`` (N, D) fall in."""
    return (space.normalize(rows)[:, cols] * n_bins).long().clamp(0, n_bins - 1)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats along the last dimension (zero-probability entries add nothing)."""
    return -torch.special.xlogy(probs, probs).sum(-1)


class SDR(Baseline):
    """SDR: categorical distributions over attribute bins, trained with REINFORCE.

    Follows Xue et al. (IEEE TMM 2021): attributes are discretized into bins;
    the policy is a categorical distribution per attribute (or per group of
    attributes, ``groups``); an episode draws one bin per attribute (with
    ``episode="sample"``: one per attribute and image), renders a set of images
    with those attributes, trains the task network on it and takes
    its accuracy **on a labeled validation split of the targets** as the reward
    (this baseline uses target labels, as the original does); REINFORCE with a
    moving-average baseline updates the policy. The final data set draws every
    image's bins from the learned policy.

    Departs from it: all learned attributes form one set updated together
    (SDR alternates between attribute groups of a 23-attribute street scene; the
    MNIST settings have one to three attributes); the policy starts uniform (or,
    with ``init_uniform < 1``, from the initial scenes' bin histogram mixed
    with a uniform one); categorical
    attributes (the digit class) keep the initial scenes' distribution. The
    task network and its score are the caller's ``score_fn``.

    The policy is held as logits ``(F, K)``: one row per factor (an attribute or
    a group), ``K`` the largest factor's joint bin count; a smaller factor's
    unused entries are ``-inf`` (probability 0).
    """

    name = "sdr"
    uses_target_labels = True
    uses_features = False

    def __init__(self, config: SDRConfig | None = None) -> None:
        super().__init__(config or SDRConfig())
        self.cols: list[int] = []
        self.factors: list[list[int]] = []
        self.logits: torch.Tensor | None = None  # (F, K)

    def _render_bins(self, bins: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(n, D) rows whose learned columns are uniform inside ``bins`` (n, C) int64."""
        return bin_rows(self.space, self.initial, self.cols, bins, self.config.bins, generator)

    def _unravel(self, flat: torch.Tensor) -> torch.Tensor:
        """Per-factor joint bin indices (..., F) -> per-column bins (..., C) (row-major: a group's first attribute varies slowest)."""
        out = flat.new_empty(flat.shape[:-1] + (len(self.cols),))
        for f, pos in enumerate(self.factors):
            rest = flat[..., f]
            for p in reversed(pos):
                out[..., p] = rest % self.config.bins
                rest = rest // self.config.bins
        return out

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(self.logits, dim=1)  # (F, K)
        flat = torch.multinomial(probs, n, replacement=True, generator=generator).T  # (n, F)
        return self._render_bins(self._unravel(flat), generator)

    def marginals(self, logits: torch.Tensor | None = None) -> torch.Tensor:
        """Per learned attribute its bin probabilities (C, bins) under ``logits`` (default: the fitted policy)."""
        probs = torch.softmax(self.logits if logits is None else logits, 1)
        out = probs.new_empty(len(self.cols), self.config.bins)
        for f, pos in enumerate(self.factors):
            joint = probs[f, : self.config.bins ** len(pos)].reshape((self.config.bins,) * len(pos))
            for axis, p in enumerate(pos):
                out[p] = joint.sum(tuple(a for a in range(len(pos)) if a != axis)) if len(pos) > 1 else joint
        return out

    def _start_logits(self, generator: torch.Generator) -> torch.Tensor:
        """(F, K) logits of ``(1 - init_uniform) * joint histogram of the initial scenes + init_uniform * uniform``."""
        cfg = self.config
        idx = bins_of(self.space, self.initial(1000, generator), self.cols, cfg.bins)  # (1000, C)
        sizes = [cfg.bins ** len(pos) for pos in self.factors]
        logits = torch.full((len(self.factors), max(sizes)), -math.inf)
        for f, pos in enumerate(self.factors):
            flat = torch.zeros(idx.shape[0], dtype=torch.long)
            for p in pos:
                flat = flat * cfg.bins + idx[:, p]
            hist = torch.bincount(flat, minlength=sizes[f]).float()
            logits[f, : sizes[f]] = ((1 - cfg.init_uniform) * hist / hist.sum() + cfg.init_uniform / sizes[f]).log()
        return logits

    def _fit(self, target_images, feature_fn: FeatureFn, generator, progress, validation, score_fn: ScoreFn) -> dict:
        cfg, space = self.config, self.space
        self.cols = learned_columns(space, cfg.attributes, self.name)
        self.factors = policy_factors(space, self.cols, cfg.groups)
        n_f = len(self.factors)
        logits = self._start_logits(generator).requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=cfg.lr)
        val_images, val_labels = validation
        curve, baseline = [], None
        ent, top, episode_rewards, episode_actions = [], [], [], []
        for _ in tqdm(range(cfg.iterations), desc="sdr", disable=not progress, leave=False):
            with torch.no_grad():
                probs = torch.softmax(logits, 1)
                if cfg.episode == "bin":  # (E, F): one joint bin per factor for a whole episode
                    actions = torch.multinomial(probs, cfg.episodes, replacement=True, generator=generator).T
                    bins = self._unravel(actions)[:, None].expand(cfg.episodes, cfg.episode_size, len(self.cols))
                else:  # (E, S, F): every image its own bins
                    actions = torch.multinomial(probs, cfg.episodes * cfg.episode_size, replacement=True, generator=generator)
                    actions = actions.T.reshape(cfg.episodes, cfg.episode_size, n_f)
                    bins = self._unravel(actions)
            rewards = []
            for episode_bins in bins:
                attrs = self._render_bins(episode_bins, generator)
                out = self.engine.render(attrs, generator)
                reward = float(score_fn(out["image"], out["label"], val_images, val_labels))
                if not math.isfinite(reward):
                    raise ValueError(f"sdr: score_fn returned a non-finite reward {reward}")
                rewards.append(reward)
            r = torch.tensor(rewards)
            mean_r = float(r.mean())
            if baseline is None:  # first update: the batch mean is the only estimate there is
                baseline = mean_r
            log_prob = torch.log_softmax(logits, 1)[torch.arange(n_f), actions].sum(-1)  # (E,) or (E, S)
            if cfg.episode == "sample":
                log_prob = log_prob.mean(1)
            loss = -((r - baseline) * log_prob).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            baseline = cfg.baseline_alpha * mean_r + (1 - cfg.baseline_alpha) * baseline
            curve.append(mean_r)
            with torch.no_grad():  # the policy after this update
                marg = self.marginals(logits.detach())
                ent.append(float(entropy(marg).mean()))
                top.append(marg.max(1).values.tolist())
            episode_rewards.append(rewards)
            if cfg.episode == "bin":
                episode_actions.append(self._unravel(actions).tolist())
        self.logits = logits.detach()
        names = [space.names[col] for col in self.cols]
        final = self.marginals()
        joint = {"+".join(names[p] for p in pos): torch.softmax(self.logits, 1)[f, : cfg.bins ** len(pos)]
                 .reshape((cfg.bins,) * len(pos)).tolist() for f, pos in enumerate(self.factors) if len(pos) > 1}
        return {
            "curve": curve,
            "curve_metric": "reward",
            "attributes": names,
            "policy": {name: final[j].tolist() for j, name in enumerate(names)},
            "joint_policy": joint,
            "factors": [[names[p] for p in pos] for pos in self.factors],
            "bin_edges": {space.names[col]: self._edges(col) for col in self.cols},
            "entropy": ent,
            "top_prob": {name: [t[j] for t in top] for j, name in enumerate(names)},
            "rewards": episode_rewards,
            "actions": episode_actions,
        }

    def _edges(self, col: int) -> list[float]:
        """Bin edges of column ``col`` in the attribute's unit (bins + 1 values)."""
        a = self.space.attributes[col]
        return [a.low + a.span * k / self.config.bins for k in range(self.config.bins + 1)]
