"""Which parameters train at a step, and with what fg weight lambda_t (Eq. 4 and the ramp after it).

Trainable parameters fall into three groups: `fg` (the fg LoRA set and its scales), `bg` (the bg
LoRA set and its scales) and `shared` (SMA alphas, HMG encoders, E_trans). A stage names the groups
it trains; the trainer drops the gradients of the others before the optimizer step, so AdamW skips
them entirely (no moment update, no weight decay) and they stay bit-for-bit unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from reference.train.config import Stage

GROUPS = ("fg", "bg", "shared")
SHARED_MARKERS = ("sma_alpha", "hmg.", "offsets.")


def check_stages(stages: Sequence[Stage]) -> None:
    if not stages or stages[0].start != 0:
        raise ValueError("training stages must start with a stage at step 0")
    starts = [s.start for s in stages]
    if starts != sorted(set(starts)):
        raise ValueError(f"training stage starts must increase strictly, got {starts}")
    if stages[-1].lam[0] != stages[-1].lam[1]:
        raise ValueError(
            f"the last training stage has no end, so its lambda must be constant, got {stages[-1].lam}"
        )


def stage_at(stages: Sequence[Stage], step: int) -> tuple[int, Stage]:
    """(index, stage) in force at 0-based optimizer step `step`."""
    index = max(i for i, s in enumerate(stages) if s.start <= step)
    return index, stages[index]


def lambda_at(stages: Sequence[Stage], step: int) -> float:
    """lambda_t: 0 before t0, lambda (t - t0) / (t1 - t0) on [t0, t1], lambda after (with default stages)."""
    index, stage = stage_at(stages, step)
    lo, hi = stage.lam
    if index + 1 == len(stages) or lo == hi:
        return lo
    end = stages[index + 1].start
    return lo + (hi - lo) * (step - stage.start) / (end - stage.start)


def trained_groups(stage: Stage) -> set[str]:
    groups = {"fg"} if stage.train_fg else set()
    if stage.train_bg:
        groups.add("bg")
    if stage.shared:
        groups.add("shared")
    return groups


def group_of(name: str) -> str:
    """The group of a trainable parameter, from its name in MildModel.named_parameters()."""
    for branch in ("fg", "bg"):
        lora = f"lora_A.{branch}." in name or f"lora_B.{branch}." in name
        if lora or name.endswith(f"lora_scale.{branch}"):
            return branch
    if any(marker in name for marker in SHARED_MARKERS):
        return "shared"
    raise ValueError(
        f"parameter {name!r} belongs to no training group: the model has a module MILD does not know"
    )


def parameter_groups(named: Iterable[tuple[str, nn.Parameter]]) -> dict[str, list[nn.Parameter]]:
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    for name, p in named:
        groups[group_of(name)].append(p)
    return groups
