"""SDR (Xue et al., IEEE TMM 2021): a discretized attribute policy trained by REINFORCE on task accuracy."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from tqdm.auto import tqdm

from scenefit.baselines.base import (
    Baseline,
    FeatureFn,
    ScoreFn,
    check_scale,
    compose,
    learned_columns,
    positive_float,
    positive_int,
)


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
    """

    bins: int = 12
    iterations: int = 200
    episodes: int = 4
    episode_size: int = 500
    lr: float = 0.1
    init_uniform: float = 1.0
    baseline_alpha: float = 0.7
    attributes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        positive_int(self.bins, "sdr.bins", minimum=2)
        for name in ("iterations", "episodes"):
            positive_int(getattr(self, name), f"sdr.{name}")
        positive_int(self.episode_size, "sdr.episode_size", minimum=2)
        positive_float(self.lr, "sdr.lr")
        positive_float(self.init_uniform, "sdr.init_uniform", upper=1.0)
        positive_float(self.baseline_alpha, "sdr.baseline_alpha", upper=1.0)

    @classmethod
    def at_scale(cls, scale: str, **overrides) -> "SDRConfig":
        """``tiny`` (tests), ``quick`` (minutes on a CPU) or ``paper``."""
        check_scale(scale)
        sizes = {"tiny": dict(iterations=50, episodes=4, episode_size=40),
                 "quick": dict(iterations=60, episodes=4, episode_size=200),
                 "paper": {}}[scale]
        return replace(cls(), **{**sizes, **overrides})


class SDR(Baseline):
    """SDR: independent categorical distributions over attribute bins, trained with REINFORCE.

    Follows Xue et al. (IEEE TMM 2021): attributes are discretized into bins;
    the policy is a categorical distribution per attribute; an episode draws one
    bin per attribute, renders a set of images with those attributes, trains the
    task network on it and takes its accuracy **on a labeled validation split of
    the targets** as the reward (this baseline uses target labels, as the
    original does); REINFORCE with a moving-average baseline updates the policy.
    The final data set draws every image's bins from the learned policy.

    Departs from it: all learned attributes form one group updated together
    (SDR alternates between attribute groups of a 23-attribute street scene; the
    MNIST settings have one to three attributes); the policy starts uniform (or,
    with ``init_uniform < 1``, from the initial scenes' bin histogram mixed
    with a uniform one); categorical
    attributes (the digit class) keep the initial scenes' distribution. The
    task network and its score are the caller's ``score_fn``.
    """

    name = "sdr"
    uses_target_labels = True

    def __init__(self, config: SDRConfig | None = None) -> None:
        super().__init__(config or SDRConfig())
        self.cols: list[int] = []
        self.logits: torch.Tensor | None = None  # (C, bins)

    def _render_bins(self, bins: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(n, D) rows whose learned columns are uniform inside ``bins`` (n, C) int64."""
        base = self.initial(bins.shape[0], generator)
        unit = (bins + torch.rand(bins.shape, generator=generator)) / self.config.bins
        return compose(self.space, base, self.cols, unit)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(self.logits, dim=1)  # (C, bins)
        bins = torch.multinomial(probs, n, replacement=True, generator=generator).T  # (n, C)
        return self._render_bins(bins, generator)

    def _fit(self, target_images, feature_fn: FeatureFn, generator, progress, validation, score_fn: ScoreFn) -> dict:
        cfg, space = self.config, self.space
        self.cols = learned_columns(space, cfg.attributes, self.name)
        c = len(self.cols)
        start = space.normalize(self.initial(1000, generator))[:, self.cols]  # (1000, C)
        idx = (start * cfg.bins).long().clamp(0, cfg.bins - 1)
        hist = torch.stack([torch.bincount(idx[:, j], minlength=cfg.bins) for j in range(c)]).float()
        probs = (1 - cfg.init_uniform) * hist / hist.sum(1, keepdim=True) + cfg.init_uniform / cfg.bins
        logits = probs.log().requires_grad_(True)
        opt = torch.optim.Adam([logits], lr=cfg.lr)
        val_images, val_labels = validation
        curve, baseline = [], None
        for _ in tqdm(range(cfg.iterations), desc="sdr", disable=not progress, leave=False):
            with torch.no_grad():
                actions = torch.multinomial(torch.softmax(logits, 1), cfg.episodes, replacement=True, generator=generator).T  # (E, C)
            rewards = []
            for action in actions:
                attrs = self._render_bins(action.expand(cfg.episode_size, c), generator)
                out = self.engine.render(attrs, generator)
                reward = float(score_fn(out["image"], out["label"], val_images, val_labels))
                if not math.isfinite(reward):
                    raise ValueError(f"sdr: score_fn returned a non-finite reward {reward}")
                rewards.append(reward)
            r = torch.tensor(rewards)
            mean_r = float(r.mean())
            if baseline is None:  # first update: the batch mean is the only estimate there is
                baseline = mean_r
            log_prob = torch.log_softmax(logits, 1)[torch.arange(c), actions].sum(1)  # (E,)
            loss = -((r - baseline) * log_prob).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            baseline = cfg.baseline_alpha * mean_r + (1 - cfg.baseline_alpha) * baseline
            curve.append(mean_r)
        self.logits = logits.detach()
        final = torch.softmax(self.logits, 1)
        return {
            "curve": curve,
            "curve_metric": "reward",
            "attributes": [space.names[col] for col in self.cols],
            "policy": {space.names[col]: final[j].tolist() for j, col in enumerate(self.cols)},
            "bin_edges": {space.names[col]: self._edges(col) for col in self.cols},
        }

    def _edges(self, col: int) -> list[float]:
        """Bin edges of column ``col`` in the attribute's unit (bins + 1 values)."""
        a = self.space.attributes[col]
        return [a.low + a.span * k / self.config.bins for k in range(self.config.bins + 1)]
