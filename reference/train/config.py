"""Training configurations: dataclass presets with `from_name` (`paper`, `tiny`).

`paper` carries the paper's hyper-parameters (AdamW, lr 1e-6, batch 4, 20k steps, rank 16,
alpha 16, fg ramp from t0 = 8000 over 2000 steps). `tiny` trains the tiny model on a CPU in
seconds: a learning rate large enough to see the loss fall within a few dozen steps and the stage
boundaries early enough that short runs cross them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from reference.config import LoraConfig


@dataclass(frozen=True)
class Stage:
    """One training stage, from step `start` until the next stage starts.

    lambda_t (the fg weight of Eq. 4) goes linearly from `lam[0]` at `start` to `lam[1]` at the next
    stage's start; the last stage must hold it constant. `train_shared` (SMA alphas, HMG encoders,
    E_trans) defaults to `train_bg`: those modules shape the bg branch's output too, so protecting the
    bg branch (Alg. 2 line 19-20) means freezing them as well.
    """

    start: int
    train_fg: bool
    train_bg: bool
    lam: tuple[float, float] = (0.0, 0.0)
    train_shared: bool | None = None

    @property
    def shared(self) -> bool:
        return self.train_bg if self.train_shared is None else self.train_shared


def default_stages(t0: int, ramp: int, lam: float) -> tuple[Stage, ...]:
    """bg only until t0, fg ramps in with bg frozen until t1 = t0 + ramp, then both (DESIGN.md 1)."""
    return (
        Stage(0, train_fg=False, train_bg=True, lam=(0.0, 0.0)),
        Stage(t0, train_fg=True, train_bg=False, lam=(0.0, lam)),
        Stage(t0 + ramp, train_fg=True, train_bg=True, lam=(lam, lam)),
    )


@dataclass(frozen=True)
class LossWeights:
    """Eq. 2's core term has weight 1; the region-aware terms (App. C) are off by default."""

    boundary: float = 0.0  # squared residual inside the band dilate(M_k) - erode(M_k)
    gradient: float = 0.0  # squared spatial gradient of the residual inside the same band
    band_radius: int = 1  # in latent pixels


@dataclass(frozen=True)
class TrainConfig:
    name: str
    learning_rate: float
    batch_size: int
    max_steps: int
    lora: LoraConfig
    t0: int
    ramp: int
    lam: float = 1.0
    stages: tuple[Stage, ...] = ()  # empty: default_stages(t0, ramp, lam)
    loss: LossWeights = field(default_factory=LossWeights)
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-2
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping
    warmup_steps: int = 0
    gradient_accumulation: int = 1
    mixed_precision: str = "no"  # accelerate: no | fp16 | bf16
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    max_instances: int = 4  # random subset of at most this many instances per sample
    num_workers: int = 0
    seed: int = 0

    def stage_list(self) -> tuple[Stage, ...]:
        return self.stages or default_stages(self.t0, self.ramp, self.lam)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        raw = dataclasses.asdict(self)
        raw["stages"] = [dataclasses.asdict(s) for s in self.stage_list()]
        return raw

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        """Inverse of `to_dict` (checkpoints store the configuration they were trained with)."""
        fields = dict(raw)
        fields["lora"] = LoraConfig(**raw["lora"])
        fields["loss"] = LossWeights(**raw["loss"])
        fields["betas"] = tuple(raw["betas"])
        fields["stages"] = tuple(Stage(**{**s, "lam": tuple(s["lam"])}) for s in raw["stages"])
        return cls(**fields)

    @classmethod
    def from_name(cls, name: str) -> TrainConfig:
        try:
            return PRESETS[name]
        except KeyError:
            choices = ", ".join(PRESETS)
            raise ValueError(f"unknown training configuration {name!r}: choose one of {choices}") from None


PAPER = TrainConfig(
    name="paper",
    learning_rate=1e-6,
    batch_size=4,
    max_steps=20_000,
    lora=LoraConfig(rank=16, alpha=16.0),
    t0=8000,
    ramp=2000,
    checkpoint_every=1000,
)

TINY = TrainConfig(
    name="tiny",
    learning_rate=3e-3,
    batch_size=2,
    max_steps=60,
    lora=LoraConfig(rank=4, alpha=4.0),
    t0=20,
    ramp=10,
    checkpoint_every=20,
    max_instances=3,
)

PRESETS: dict[str, TrainConfig] = {c.name: c for c in (PAPER, TINY)}
