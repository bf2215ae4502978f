"""TAR run configuration (YAML in ``configs/tar/``) and the toy-world defaults for TAR and attacks."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from jaxsafe.config import field
from jaxsafe.errors import UserError
from jaxsafe.optim.config import OptimizerConfig, ScheduleConfig
from jaxsafe.tamper.attacks import LoRASettings

EVAL_SETS = ("hazard_E", "hazard_A", "benign")


@dataclasses.dataclass(frozen=True)
class RandomMapping:
    """The initial safeguard (TAR §4.2, knowledge restriction): ``steps`` = 0 skips it.
    ``layers`` empty = every layer's output."""

    steps: int = field(0, ge=0)
    batch_size: int = field(8, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig(name="adamw", lr=1e-3)
    layers: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class InitialRefusal:
    """The refusal variant's initial safeguard (the paper starts refusal TAR from an
    instruction-tuned model that already refuses): ``steps`` of CE on the preference pairs'
    chosen completions (the refusals) given their prompts + CE on retain text; 0 skips it."""

    steps: int = field(0, ge=0)
    batch_size: int = field(8, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig(name="adamw", lr=1e-3)


@dataclasses.dataclass(frozen=True)
class Adversary:
    """TAR's training attacks: a fresh optimizer (AdamW in the paper) per attack, K steps,
    learning rates sampled from ``lrs``, streams from ``streams``; ``num`` attacks per outer
    step run at once under vmap. ``lora_num`` more attacks per step train LoRA adapters
    (``lora``: the red team's r 16, α 32, dropout 0.05 on every projection) on the frozen
    weights, with the same optimizer, lrs and streams."""

    optimizer: OptimizerConfig = OptimizerConfig(name="adamw", lr=2e-5)
    lrs: tuple[float, ...] = (2e-6, 2e-5, 4e-5)
    streams: tuple[str, ...] = ("forget", "forget2", "retain_then_forget")
    steps: int = field(64, ge=1)
    batch_size: int = field(4, ge=1)
    num: int = field(1, ge=1)
    tr_every: int = field(4, ge=1)
    weight_rate: float = 0.0625
    lora_num: int = field(0, ge=0)
    lora: LoRASettings = LoRASettings()


@dataclasses.dataclass(frozen=True)
class TARConfig:
    """Settings of one TAR run (defaults: the paper's, except the model and data).

    ``world``: a toy-world folder; empty ``model``/``forget``/``retain`` then come from it.
    ``forget``/``retain``: text corpora (``text`` field) of the defender; x_TR and the
    adversaries' forget text come from ``forget`` (split in two halves: "forget" and
    "forget2" streams), retain batches from ``retain``.
    ``tr_data``: where x_TR comes from. "forget": the whole forget corpus (the paper;
    the adversaries train on the same text). "held_out_entities": each outer step splits
    the forget corpus's entities (its ``entity`` field) at random in two halves; the
    adversaries train on one half and x_TR comes from the other, so L_TR measures what
    fine-tuning on some hazardous facts gives back on others (the toy world's A → E
    attack).
    ``tr_loss``: "entropy" (knowledge restriction) or "dpo" (refusal): L_TR is DPO's sigmoid
    loss with β = ``dpo_beta`` on held-out preference pairs, the reference being the model
    TAR starts from; the adversaries fine-tune on harmful completions (prompt + rejected;
    their "forget"/"forget2" streams) and x_TR comes from the other pairs: each outer step
    splits the pairs at random in two halves (``tr_data: held_out_entities``: by their
    ``entity``). The pairs come from ``preferences`` (a JSONL of {prompt, chosen, rejected});
    empty, in a toy world, they are generated from it (its hazardous-domain practice
    questions, chosen = " " + ``refusal``, rejected = " " + the answer), and the evaluations
    add ``answered_E``/``answered_A``/``answered_benign``: the fraction of prompts whose
    answer is more likely than the refusal. ``initial_refusal``: the variant's initial
    safeguard (SFT on the refusals), run before TAR; the DPO reference is the model after it.
    ``forget`` is needed only by the entropy loss and by random mapping.
    ``entropy_include_padding``: the authors' quirk (entropy over padding positions too).
    ``suite``: a red-team suite YAML to run against the result ("" = none), with
    ``suite_overrides`` (e.g. "steps=50") and ``eval_questions`` questions per set (0 = all).
    ``microbatches``: accumulate every gradient of an outer step over this many slices of its
    batches (the retain rows, x_TR, each adversary's batch; :func:`jaxsafe.train.accumulated_loss_and_grad`):
    the same update with a slice's activations in memory; it must divide ``batch_size`` and
    ``adversary.batch_size``.
    """

    world: str | None = None
    model: str = ""
    dtype: Literal["float32", "bfloat16"] = "float32"
    forget: str = ""
    retain: str = ""
    max_length: int = field(256, ge=8)
    random_mapping: RandomMapping = RandomMapping()
    initial_refusal: InitialRefusal = InitialRefusal()
    steps: int = field(750, ge=1)
    batch_size: int = field(8, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig(name="schedule_free_adamw", lr=2e-5,
                                                 schedule=ScheduleConfig(kind="linear_warmup", warmup_steps=32))
    lambda_tr: float = field(4.0, ge=0)
    lambda_retain: float = field(1.0, ge=0)
    tr_data: Literal["forget", "held_out_entities"] = "forget"
    tr_loss: Literal["entropy", "dpo"] = "entropy"
    preferences: str = ""
    refusal: str = "I cannot help with that."
    dpo_beta: float = field(0.1, gt=0)
    entropy_include_padding: bool = False
    second_order: bool = False
    adversary: Adversary = Adversary()
    eval_format: Literal["cloze", "letter"] = "cloze"
    eval_questions: int = field(0, ge=0)
    suite: str = ""
    suite_overrides: tuple[str, ...] = ()
    seed: int = 0
    checkpoint_every: int = field(50, ge=1)
    microbatches: int = field(1, ge=1)

    def __post_init__(self):
        if self.adversary.steps % self.adversary.tr_every:
            raise ValueError(f"adversary.steps ({self.adversary.steps}) must be a multiple of adversary.tr_every "
                             f"({self.adversary.tr_every})")
        bad = [s for s in self.adversary.streams if s not in ("forget", "forget2", "retain_then_forget")]
        if bad or not self.adversary.streams:
            raise ValueError(f"adversary.streams must be a non-empty subset of forget, forget2, retain_then_forget; got {bad}")
        if (self.second_order and self.adversary.lora_num and not self.adversary.optimizer.eps_root
                and self.adversary.optimizer.name in ("adam", "adamw", "schedule_free_adamw")):
            raise ValueError("second_order with LoRA adversaries needs adversary.optimizer.eps_root > 0 (adam or "
                             "adamw, e.g. 1e-16) or an sgd adversary: a fresh adapter's first gradient is 0 in A, "
                             "where Adam's √v has no derivative (the meta-gradient would be NaN)")
        if self.batch_size % self.microbatches or self.adversary.batch_size % self.microbatches:
            raise ValueError(f"microbatches ({self.microbatches}) must divide batch_size ({self.batch_size}) and "
                             f"adversary.batch_size ({self.adversary.batch_size})")
        if not self.adversary.lrs or any(lr <= 0 for lr in self.adversary.lrs):
            raise ValueError("adversary.lrs must be positive learning rates")
        if self.initial_refusal.steps and self.tr_loss != "dpo":
            raise ValueError("initial_refusal.steps > 0 needs tr_loss: dpo (it trains on the preference pairs)")
        if self.tr_loss == "dpo" and not self.refusal.strip():
            raise ValueError("refusal must be a non-empty text (the chosen completion of tr_loss: dpo)")

    @property
    def needs_forget(self) -> bool:
        """The forget corpus feeds the entropy loss and random mapping, not the refusal variant."""
        return self.tr_loss == "entropy" or self.random_mapping.steps > 0


@dataclasses.dataclass(frozen=True)
class WorldFiles:
    """Where a toy world keeps what TAR and the attacks read."""

    base: Path
    control: Path
    forget: Path
    retain: Path
    attack: Path
    mcq: dict[str, Path]
    root: Path


def world_files(world: str | Path) -> WorldFiles:
    root = Path(world)
    files = WorldFiles(base=root / "base", control=root / "control", forget=root / "corpora" / "forget.jsonl",
                       retain=root / "corpora" / "retain.jsonl", attack=root / "corpora" / "attack_A.jsonl",
                       mcq={n: root / "mcq" / f"{n}.jsonl" for n in EVAL_SETS}, root=root)
    needed = [files.base / "config.json", files.forget, files.retain, files.attack, *files.mcq.values()]
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise UserError(f"{root} is not a complete toy world ({missing[0]} is missing); "
                        f"build it with: jaxsafe toyworld build --out {root}")
    return files


def resolve_world(cfg: TARConfig) -> TARConfig:
    """Fill empty ``model``/``forget``/``retain`` from the toy world in ``cfg.world``."""
    if not cfg.world:
        if not (cfg.model and (cfg.forget or not cfg.needs_forget) and cfg.retain):
            raise UserError("set 'world' (a toy-world folder) or all of 'model', 'forget' and 'retain'"
                            + (" (forget is not needed with tr_loss: dpo and no random mapping)" if cfg.tr_loss == "dpo" else ""))
        if cfg.tr_loss == "dpo" and not cfg.preferences:
            raise UserError("tr_loss: dpo without a toy world needs 'preferences' (a JSONL of {prompt, chosen, rejected})")
        return cfg
    w = world_files(cfg.world)
    return dataclasses.replace(cfg, model=cfg.model or str(w.base), forget=cfg.forget or str(w.forget),
                               retain=cfg.retain or str(w.retain))


def second_forget_texts(world: str | Path, per_entity: int = 4) -> list[str]:
    """The toy world's "forget2" stream: fresh renderings of the attacker's set-A facts
    (other templates and orders than attack_A.jsonl; never set E)."""
    import numpy as np

    from jaxsafe.config import load_config
    from jaxsafe.toyworld.config import BuildConfig
    from jaxsafe.toyworld.world import DOMAINS, make_world, paragraph

    import yaml

    from jaxsafe.tamper.attacks import _flatten

    # only the world's seed and sizes matter; other sections may come from an older build
    saved = yaml.safe_load((Path(world) / "config.yaml").read_text()) or {}
    cfg = load_config(BuildConfig, None, _flatten({k: saved[k] for k in ("seed", "world") if k in saved}))
    w = make_world(cfg.world, cfg.seed)
    hazardous = next(d for d in cfg.world.domains if DOMAINS[d].hazardous)
    texts = []
    for j, ent in enumerate(w.entities(hazardous, ("A",))):
        rng = np.random.default_rng([cfg.seed, 7, j])
        texts.extend(paragraph(w.facts_of(ent), rng) for _ in range(per_entity))
    return texts
