"""The training loop (Algorithm 2 with DESIGN.md section 1's decisions), on accelerate.

The same code runs on a CPU, one GPU or several (`accelerate launch mild-train ...`). Randomness
that shapes a step is counter-based: the data order is a function of (seed, batch number) and each
batch's t and eps come from a generator seeded with (seed, batch number, process), so a resumed run
draws exactly what the uninterrupted run would have drawn. The global torch/numpy/python RNG
states are checkpointed as well, for whatever the dataset draws from them.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from reference.config import PRESETS, LoraConfig
from reference.files import atomic_write
from reference.model import MildModel, build_model, load_model
from reference.train import checkpoint as ckpt
from reference.train.batch import Example, prepare_step
from reference.train.config import TrainConfig
from reference.train.data import EpochDraws
from reference.train.module import TrainModule
from reference.train.schedule import (
    GROUPS,
    check_stages,
    lambda_at,
    parameter_groups,
    stage_at,
    trained_groups,
)
from reference.train.state import DataOrder, capture_rng, restore_rng

log = logging.getLogger("mild")

LOG_FILE = "log.jsonl"
RUN_CONFIG = "run.json"


class ExampleSource(Protocol):
    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Example: ...


def load_training_model(name_or_path: str, lora: LoraConfig) -> MildModel:
    """The model to train, with LoRA sets of the training configuration's rank and alpha."""
    if name_or_path in PRESETS:
        return build_model(PRESETS[name_or_path].replace(lora=lora))
    model = load_model(name_or_path)
    if model.config.lora != lora:
        raise ValueError(
            f"{name_or_path} has LoRA rank {model.config.lora.rank} / alpha {model.config.lora.alpha}, "
            f"the training configuration asks for {lora.rank} / {lora.alpha}"
        )
    return model


def noise_generator(seed: int, batch: int, process: int) -> torch.Generator:
    """A generator that depends only on (seed, batch number, process): resume-exact by construction."""
    mixed = np.random.SeedSequence([seed, batch, process]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(mixed) & ((1 << 63) - 1))


class Trainer:
    def __init__(
        self,
        model_name: str,
        config: TrainConfig,
        data: ExampleSource,
        run_dir: Path,
        *,
        model: MildModel | None = None,
        progress: bool = True,
    ):
        check_stages(config.stage_list())
        self.config, self.data, self.run_dir, self.model_name = config, data, Path(run_dir), model_name
        self.accelerator = Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation,
            cpu=not torch.cuda.is_available(),
        )
        self.model = model if model is not None else load_training_model(model_name, config.lora)
        self.named = self._freeze_base(self.model)
        self.groups = parameter_groups(self.named.items())
        optimizer = torch.optim.AdamW(
            [{"params": self.groups[g], "group": g} for g in GROUPS if self.groups[g]],
            lr=config.learning_rate,
            betas=config.betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        warmup = config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.module, self.optimizer = self.accelerator.prepare(
            TrainModule(self.model, config.loss), optimizer
        )
        acc = self.accelerator
        self.order = DataOrder(
            len(data), config.batch_size, config.seed, acc.num_processes, acc.process_index
        )
        self.step_count = 0
        self.progress = progress
        self._batches: Iterator[list[Example]] | None = None

    @staticmethod
    def _freeze_base(model: MildModel) -> dict[str, torch.nn.Parameter]:
        """Base UNet, VAE and text encoder frozen; only MILD's own parameters train."""
        mild = set(model.mild_state_dict())
        model.requires_grad_(False)
        named = {n: p for n, p in model.named_parameters() if n in mild}
        for p in named.values():
            p.requires_grad_(True)
        model.unet.train()
        model.hmg.train()
        return named

    @property
    def stages(self):
        return self.config.stage_list()

    def batches(self) -> Iterator[list[Example]]:
        if self._batches is None:
            loader = DataLoader(
                EpochDraws(self.data),  # type: ignore[arg-type]
                batch_sampler=self.order,
                collate_fn=list,
                num_workers=self.config.num_workers,
            )
            self._batches = iter(loader)
        return self._batches

    def step(self) -> dict[str, Any]:
        """One optimizer step (gradient_accumulation micro-batches); returns its log record."""
        start, acc, cfg = time.perf_counter(), self.accelerator, self.config
        index, stage = stage_at(self.stages, self.step_count)
        lam = lambda_at(self.stages, self.step_count)
        trained = trained_groups(stage)
        for p in self.named.values():
            p.grad = None
        sums = torch.zeros(3)
        for _ in range(cfg.gradient_accumulation):
            examples = next(self.batches())
            generator = noise_generator(cfg.seed, self.order.consumed, acc.process_index)
            self.order.consumed += 1
            with acc.autocast():
                inputs = prepare_step(self.model, examples, generator, acc.device)
            with acc.accumulate(self.module):
                total, fg, bg = self.module(inputs, lam)
                acc.backward(total)
                if acc.sync_gradients:
                    self._drop_frozen_gradients(trained)
                    if cfg.max_grad_norm > 0:
                        params = [p for g in trained for p in self.groups[g]]
                        acc.clip_grad_norm_(params, cfg.max_grad_norm)
                self.optimizer.step()
            sums += torch.stack([total.detach(), fg, bg]).float().cpu()
        self.scheduler.step()
        means = sums / cfg.gradient_accumulation
        if acc.num_processes > 1:
            means = acc.reduce(means.to(acc.device), "mean").cpu()
        self.step_count += 1
        return {
            "step": self.step_count,
            "loss": float(means[0]),
            "fg": float(means[1]),
            "bg": float(means[2]),
            "lambda": lam,
            "stage": index,
            "trained": sorted(trained),
            "lr": self.scheduler.get_last_lr()[0],
            "seconds": round(time.perf_counter() - start, 4),
        }

    def _drop_frozen_gradients(self, trained: set[str]) -> None:
        """Gradient protection (Alg. 2 lines 19-20): AdamW skips parameters without a gradient."""
        for group in GROUPS:
            if group not in trained:
                for p in self.groups[group]:
                    p.grad = None

    def train(self, max_steps: int | None = None) -> list[dict[str, Any]]:
        """Train until `max_steps` (default: the configuration's), checkpointing every K steps."""
        max_steps = self.config.max_steps if max_steps is None else max_steps
        records = []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._write_run_config()
        self._trim_log()
        bar = tqdm(
            total=max_steps,
            initial=self.step_count,
            desc="training",
            unit="step",
            disable=not (self.progress and self.accelerator.is_main_process),
        )
        while self.step_count < max_steps:
            record = self.step()
            records.append(record)
            bar.update(1)
            bar.set_postfix(fg=f"{record['fg']:.4f}", bg=f"{record['bg']:.4f}", lam=f"{record['lambda']:.2f}")
            self._log(record)
            every = self.config.checkpoint_every
            if (every and self.step_count % every == 0) or self.step_count == max_steps:
                self.save()
        bar.close()
        return records

    def _log(self, record: dict[str, Any]) -> None:
        if self.accelerator.is_main_process:
            with open(self.run_dir / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _write_run_config(self) -> None:
        if self.accelerator.is_main_process:
            text = json.dumps(self.meta(), indent=2)
            atomic_write(self.run_dir / RUN_CONFIG, lambda f: f.write(text.encode()))

    def meta(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
        }

    def save(self) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": capture_rng(),
            "data": {"consumed": self.order.consumed},
        }
        weights = {n: p.detach() for n, p in self.named.items()}
        return ckpt.save_checkpoint(
            self.run_dir, self.step_count, weights, state, self.meta(), self.config.keep_checkpoints
        )

    def resume(self, path: Path | None = None) -> int:
        """Load the latest checkpoint of the run (or `path`); returns the step it continues from."""
        checkpoint = ckpt.load_checkpoint(self.run_dir if path is None else path)
        ckpt.check_weights(checkpoint, self.named)
        with torch.no_grad():
            for name, p in self.named.items():
                p.copy_(checkpoint.weights[name])
        try:
            self.optimizer.load_state_dict(checkpoint.state["optimizer"])
            self.scheduler.load_state_dict(checkpoint.state["scheduler"])
        except (KeyError, ValueError, RuntimeError) as err:
            raise ValueError(
                f"checkpoint {checkpoint.path / ckpt.STATE} does not fit this run ({err})"
            ) from None
        restore_rng(checkpoint.state["rng"])
        self.order.consumed = int(checkpoint.state["data"]["consumed"])
        self.step_count = checkpoint.step
        self._batches = None
        return checkpoint.step

    def _trim_log(self) -> None:
        """log.jsonl keeps one line per step, in order: lines of steps after the one training starts
        from are dropped (all of them for a fresh run, whose folder may hold a failed run's log; those
        after the checkpoint for a resumed one, as they are trained again)."""
        path = self.run_dir / LOG_FILE
        if self.accelerator.is_main_process and path.is_file():
            lines = [line for line in path.read_text().splitlines() if _logged_step(line) <= self.step_count]
            kept = "".join(line + "\n" for line in lines).encode()
            atomic_write(path, lambda f: f.write(kept))  # a kill here leaves the whole old log


def _logged_step(line: str) -> float:
    """The step of a log.jsonl line; a line a kill cut short counts as past every step (dropped)."""
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


def train_examples(examples: Sequence[Example]) -> ExampleSource:
    """An in-memory example list is already a source (tests, notebooks)."""
    return examples
