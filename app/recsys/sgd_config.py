"""SGD-family configuration and the rules for which settings combine — torch-free, so the API can
validate a spec with the same code the worker trains with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

VARIANTS = ("sgd", "minibatch", "minibatch_sgd")
OPTIMIZERS = ("sgd", "adagrad", "adam")
LOSSES = ("bce", "bpr", "softmax", "mse")

STRATEGIES = ("none", "uniform", "popularity", "in_batch", "hard", "mixed")
# Strategies whose negatives are private to each positive, drawn from the complement of the user's positives.
PER_POSITIVE = ("uniform", "popularity", "hard", "mixed")
# Strategies whose negatives are the other positives of the batch.
IN_BATCH = ("in_batch", "mixed")
# Strategies whose sampling distribution is not uniform, so logQ correction changes the softmax.
CORRECTABLE = ("popularity", "in_batch", "mixed")


@dataclass(frozen=True)
class NegativeConfig:
    """How negatives are drawn for every positive (user, item) example; see the module docstring."""

    strategy: str = "uniform"  # "none" | "uniform" | "popularity" | "in_batch" | "hard" | "mixed"
    per_positive: int = 4  # negatives per positive (uniform/popularity/hard; the uniform part of mixed)
    popularity_power: float = 0.75  # popularity: Q(j) ∝ count_j ** power
    logq_correction: bool = True  # subtract log Q(j) from sampled-softmax logits for non-uniform samplers
    hard_candidates: int = 64  # hard: score this many random items, keep the highest-scoring non-positives

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            choices = ", ".join(STRATEGIES)
            raise ValueError(f"negatives.strategy must be one of {choices}, got {self.strategy!r}")
        if self.per_positive < 1:
            raise ValueError(f"negatives.per_positive must be >= 1, got {self.per_positive}")
        if not (math.isfinite(self.popularity_power) and self.popularity_power >= 0.0):
            power = self.popularity_power
            raise ValueError(f"negatives.popularity_power must be a finite number >= 0, got {power}")
        if self.hard_candidates < 1:
            raise ValueError(f"negatives.hard_candidates must be >= 1, got {self.hard_candidates}")
        if self.strategy == "hard" and self.hard_candidates < self.per_positive:
            raise ValueError(
                f"negatives.hard_candidates ({self.hard_candidates}) must be >= per_positive "
                f"({self.per_positive}): hard keeps the per_positive best of hard_candidates scored items"
            )

    @property
    def n_private(self) -> int:
        """Number of negatives private to each positive (0 for none and in_batch)."""
        return self.per_positive if self.strategy in PER_POSITIVE else 0


@dataclass(frozen=True)
class SGDConfig:
    """Hyper-parameters of fit_sgd; see the module docstring for the losses, optimisers and variants."""

    dim: int = 64
    variant: str = "minibatch_sgd"  # "sgd" | "minibatch" | "minibatch_sgd"
    batch_size: int = 1024  # ignored (= 1) for "sgd"
    epochs: int = 20
    learning_rate: float = 0.05
    optimizer: str = "adagrad"  # "sgd" | "adagrad" | "adam"
    loss: str = "bce"  # "bce" | "bpr" | "softmax" | "mse"
    l2: float = 1e-4
    negatives: NegativeConfig = field(default_factory=NegativeConfig)
    seed: int = 0
    init_scale: float | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if isinstance(self.negatives, dict):
            # Configs rebuilt from asdict() / JSON carry the nested config as a plain dict.
            object.__setattr__(self, "negatives", NegativeConfig(**self.negatives))
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0.0):
            raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if not (math.isfinite(self.l2) and self.l2 >= 0.0):
            raise ValueError(f"l2 must be a finite number >= 0, got {self.l2}")
        if not isinstance(self.negatives, NegativeConfig):
            raise ValueError(f"negatives must be a NegativeConfig, got {type(self.negatives).__name__}")
        if self.init_scale is not None and not self.init_scale > 0.0:
            raise ValueError(f"init_scale must be > 0 or None, got {self.init_scale}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f'device must be "auto", "cpu" or "cuda", got {self.device!r}')
        check_combination(self)


def check_combination(config: SGDConfig) -> None:
    """Raise ValueError explaining why the variant, loss and negative strategy cannot be combined."""
    strategy = config.negatives.strategy
    if strategy in IN_BATCH and config.variant == "sgd":
        raise ValueError(
            f"negatives.strategy {strategy!r} uses the other positives of the batch as negatives, but "
            "variant 'sgd' updates one example at a time, so there are none; use variant 'minibatch_sgd' "
            "or 'minibatch', or strategy 'uniform'"
        )
    if strategy in IN_BATCH and config.batch_size < 2:
        raise ValueError(
            f"negatives.strategy {strategy!r} uses the other positives of the batch as negatives, but "
            f"batch_size={config.batch_size} leaves none; use batch_size >= 2 (hundreds or more in practice)"
        )
    if strategy == "none" and config.loss in ("bpr", "softmax"):
        raise ValueError(
            f"loss {config.loss!r} compares each positive with negatives, but negatives.strategy is 'none'; "
            "choose a negative strategy, or loss 'bce'/'mse' for positives-only training"
        )
    if config.variant == "sgd" and config.device == "cuda":
        raise ValueError(
            "variant 'sgd' (one example per update) runs in numpy on the CPU, so device 'cuda' cannot apply; "
            "use device 'auto' or 'cpu', or a mini-batch variant on the GPU"
        )


# The service's SGD recipe for what a spec leaves out with the search off (the search starts from it):
# in-batch sampled softmax with logQ, adam 0.005, l2 0.05 — recall@20 0.278 on ml-1m-implicit at dim 64.
# Its epochs come from validation curves on the six shared datasets (docs/sgd-speed.md): 16 has the best worst
# case (93.3 % of a curve's peak; 20: 88.8 %, as it overfits the sparser sets). 13, the choice on four of them,
# failed its check on amazon-book (88.1 %), which peaks at 20.
RECIPE_EPOCHS = 16
# The search's ceiling on epochs and its budget's unit (a fit of this many epochs): the recipe's epochs before
# 2026-12-07, which the search's measured choices (docs/defaults.md) were made with.
SEARCH_MAX_EPOCHS = 20
RECIPE_L2 = 0.05
RECIPE_LEARNING_RATE = {"adam": 0.005, "adagrad": 0.05, "sgd": 0.05}


def sgd_config_from_spec(block: dict[str, Any], *, dim: int, seed: int) -> SGDConfig:
    """An SGDConfig from the `sgd` block of a training spec (ValueError explains a bad combination); omitted
    (None) epochs, learning rate and l2 take the recipe's values."""
    fields = dict(block)
    optimizer = fields.get("optimizer") or "adam"
    for name, default in (
        ("epochs", RECIPE_EPOCHS),
        ("l2", RECIPE_L2),
        ("learning_rate", RECIPE_LEARNING_RATE.get(optimizer, RECIPE_LEARNING_RATE["adam"])),
    ):
        if fields.get(name) is None:
            fields[name] = default
    negatives = NegativeConfig(**fields.pop("negatives", {}))
    return SGDConfig(dim=dim, seed=seed, negatives=negatives, **fields)
