"""The training spec: what a client POSTs to /v1/jobs, validated at the edge.

Fields left out (or null) are chosen by Unfold; the trained model records the values it used.
Unknown fields are refused so a typo (`"l2_reg"`) is a 422, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.recsys import wals_defaults
from app.recsys.sgd_config import sgd_config_from_spec

MAX_K = 1000

# The dataset id the examples below (and the API's other examples, app/api/examples.py) use.
EXAMPLE_DATASET_ID = "ds_018f3db998a07c41e2d9b5"

# Named examples shown by /docs for POST /v1/jobs (openapi_examples) and listed on the schema;
# tests/api/test_openapi_manual.py submits each of them.
SPEC_EXAMPLES: dict[str, dict[str, Any]] = {
    "minimal": {
        "summary": "WALS with every default",
        "description": "A complete spec: dim 64; λ, w0, l2 scaling and iterations are chosen on a validation "
        "split of the training data within 3 fixed fits (`search`); metrics on a random 80/20 split at k 10 and "
        "20, then a refit on every interaction. The model's `spec` shows every value used, `metrics.search` the "
        "candidates tried.",
        "value": {"dataset_id": EXAMPLE_DATASET_ID, "algorithm": "wals"},
    },
    "wals_explicit": {
        "summary": "WALS with explicit settings and early stopping",
        "description": "Every WALS setting given; training stops when ndcg@20 has not improved for 3 iterations "
        "and the refit runs the best iteration count.",
        "value": {
            "dataset_id": EXAMPLE_DATASET_ID,
            "algorithm": "wals",
            "dim": 128,
            "seed": 42,
            "wals": {
                "iterations": 25,
                "l2": 0.01,
                "l2_scaling": "frequency",
                "l2_exponent": 1.0,
                "unobserved_weight": 2.0,
                "confidence": {"scheme": "log", "alpha": 10.0, "eps": 1.0},
                "solver": "cg",
                "cg_steps": 3,
            },
            "evaluation": {"split": "random", "test_fraction": 0.2, "k": [10, 20]},
            "early_stopping": {"metric": "ndcg@20", "patience": 3},
            "index": {"metric": "dot", "target_recall": 0.98},
        },
    },
    "sgd_negatives": {
        "summary": "SGD with uniformly sampled negatives",
        "description": "Shuffled mini-batches of 1024 positives, 4 uniform negatives each, binary cross-entropy, "
        "adagrad; without negatives (`strategy: none`) the embeddings of unrelated groups fold together.",
        "value": {
            "dataset_id": EXAMPLE_DATASET_ID,
            "algorithm": "sgd",
            "dim": 64,
            "sgd": {
                "variant": "minibatch_sgd",
                "batch_size": 1024,
                "epochs": 20,
                "learning_rate": 0.05,
                "optimizer": "adagrad",
                "loss": "bce",
                "l2": 0.0001,
                "negatives": {"strategy": "uniform", "per_positive": 4},
            },
            "evaluation": {"split": "random", "k": [10, 20]},
        },
    },
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfidenceSpec(_Strict):
    scheme: Literal["linear", "log"] | None = Field(
        None,
        description="c = 1 + α·log(1 + r/ε) (robust to heavy-tailed counts), or c = 1 + α·r; omitted: chosen by "
        f"the search on weighted data, {wals_defaults.CONFIDENCE} otherwise.",
    )
    alpha: float | None = Field(
        None,
        ge=0,
        le=1e6,
        description=f"α (0..1e6); omitted: chosen by the search ({wals_defaults.ALPHA:g} with `search.mode` off).",
    )
    eps: float = Field(
        wals_defaults.EPS, gt=0, le=1e9, description="ε of the log scheme, in the weights' units (ignored by linear)."
    )


_L2, _W0 = wals_defaults.L2, wals_defaults.UNOBSERVED_WEIGHT


class WALSSpec(_Strict):
    iterations: int | None = Field(
        None,
        ge=1,
        le=1000,
        description=f"Alternating sweeps (users, then items); default {wals_defaults.ITERATIONS}. "
        "UNFOLD_MAX_WALS_ITERATIONS may lower the ceiling of 1000.",
    )
    l2: float | None = Field(
        None,
        ge=0,
        le=1e6,
        description=f"λ; default {_L2['frequency']:g} with frequency scaling, lowered from the data's counts where "
        f"that would over-shrink (docs/defaults.md); {_L2['none']:g} with one λ.",
    )
    l2_scaling: Literal["none", "frequency"] | None = Field(
        None,
        description="frequency: each row's λ_u = λ·(|I_u| + w0·n_items)^l2_exponent (Rendle et al. 2022); none: one λ; "
        f"omitted: chosen by the search ({wals_defaults.L2_SCALING} with `search.mode` off).",
    )
    l2_exponent: float = Field(wals_defaults.L2_EXPONENT, ge=0, le=2, description="ν of the frequency scaling.")
    unobserved_weight: float | None = Field(
        None,
        ge=0,
        le=1e3,
        description=f"w0: weight of every unobserved (user, item) pair; default {_W0['frequency']:g} with frequency "
        f"scaling, {_W0['none']:g} with one λ. Near 0 the model learns from positives only and unrelated groups fold "
        "together.",
    )
    confidence: ConfidenceSpec = Field(
        default_factory=ConfidenceSpec,
        description="How an interaction's weight r (rating, count) becomes its confidence c.",
    )
    solver: Literal["cg", "cholesky"] = Field(
        wals_defaults.SOLVER, description="Row solver: a few CG steps or exact Cholesky."
    )
    cg_steps: int = Field(wals_defaults.CG_STEPS, ge=1, le=100, description="CG steps per row solve.")


class NegativesSpec(_Strict):
    strategy: Literal["none", "uniform", "popularity", "in_batch", "hard", "mixed"] = Field(
        "in_batch",
        description="How negatives are drawn. none: positives only (folds); uniform: random items the user has not "
        "interacted with; popularity: drawn ∝ count^popularity_power; in_batch: the other positives of the batch; "
        "hard: the best-scoring of hard_candidates random items; mixed: in_batch plus per_positive uniform ones.",
    )
    per_positive: int = Field(
        4,
        ge=1,
        le=1024,
        description="Sampled negatives per positive (uniform, popularity, hard, and the uniform part of mixed).",
    )
    popularity_power: float = Field(0.75, ge=0, le=2, description="popularity: P(j) ∝ count_j^power.")
    logq_correction: bool = Field(True, description="Subtract log Q(j) from logits of non-uniform samplers.")
    hard_candidates: int = Field(64, ge=1, le=100_000, description="hard: random items scored per positive.")


class SGDSpec(_Strict):
    """Defaults are the best recipe measured on ml-1m-implicit (README): in-batch sampled softmax
    with logQ correction, adam 0.005, l2 0.05, batches of 1024 — recall@20 0.278 at dim 64."""

    variant: Literal["sgd", "minibatch", "minibatch_sgd"] = Field(
        "minibatch_sgd",
        description="sgd: one example per update; minibatch: fixed-order batches; minibatch_sgd: shuffled batches.",
    )
    batch_size: int = Field(
        1024,
        ge=1,
        le=1_000_000,
        description="Positive examples per update of the mini-batch variants (variant sgd uses 1); in_batch and "
        "mixed negatives need at least 2.",
    )
    epochs: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Passes over every positive interaction; omitted: chosen by the search's early stopping on "
        "validation, at most 20 (16 with `search.mode` off). UNFOLD_MAX_SGD_EPOCHS may lower the ceiling of 1000.",
    )
    learning_rate: float | None = Field(
        None,
        gt=0,
        le=100,
        description="η, the optimiser's step size (> 0); omitted: chosen by the search (0.005 for adam, 0.05 for "
        "adagrad and sgd with `search.mode` off).",
    )
    optimizer: Literal["sgd", "adagrad", "adam"] = Field(
        "adam", description="Row-wise and lazy (only touched rows change): sgd, adagrad, or adam with β (0.9, 0.999)."
    )
    loss: Literal["bce", "bpr", "softmax", "mse"] = Field(
        "softmax",
        description="bce / mse: the positive towards 1, each negative towards 0 (work without negatives); "
        "bpr: the positive above each negative; softmax: sampled softmax of the positive against its negatives "
        "(bpr and softmax need a negative strategy other than none).",
    )
    l2: float | None = Field(
        None,
        ge=0,
        le=1e3,
        description="λ on the positive pair's user and item rows; omitted: chosen by the search (0.05 with "
        "`search.mode` off).",
    )
    negatives: NegativesSpec = Field(
        default_factory=NegativesSpec, description="Which items serve as negatives for each positive example."
    )


class EvaluationSpec(_Strict):
    split: Literal["random", "leave_last_out", "temporal", "none"] = Field(
        "random",
        description="random: each interaction held out with probability test_fraction; leave_last_out: each "
        "user's latest interaction; temporal: everything at or after the (1 − test_fraction) time quantile "
        "(both need a timestamp column); none: no held-out metrics, no early stopping.",
    )
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share held out by `random`/`temporal`.")
    k: list[int] = Field(
        default_factory=lambda: [10, 20],
        min_length=1,
        max_length=10,
        description=f"Cut-offs at which recall@k and ndcg@k are computed (1 to 10 values, each 1..{MAX_K}).",
    )

    @model_validator(mode="after")
    def _check_k(self) -> EvaluationSpec:
        for k in self.k:
            if not 1 <= k <= MAX_K:
                raise ValueError(f"evaluation.k values must be within 1..{MAX_K}, got {k}")
        return self


class IndexSpec(_Strict):
    """The nearest-neighbour index the worker builds for serving; defaults reach recall@10 >= 0.95."""

    metric: Literal["dot", "cosine"] = Field("dot", description="Score users against items by dot product or cosine.")
    exact_max_items: int = Field(
        20_000, ge=0, le=100_000_000, description="Catalogs up to this size are searched exactly; larger use HNSW."
    )
    hnsw_m: int = Field(32, ge=4, le=128, description="HNSW links per node.")
    ef_construction: int = Field(400, ge=8, le=4096, description="HNSW build beam (graph quality).")
    ef_search: int | None = Field(
        None,
        ge=8,
        le=8192,
        description="HNSW search beam; omitted: the smallest beam whose measured recall@10 reaches target_recall.",
    )
    target_recall: float = Field(
        0.98, gt=0, le=1, description="Recall@10 against exact search that the automatic ef_search aims for."
    )


class SearchSpec(_Strict):
    """How omitted settings are chosen: measured on a validation split of the training data (auto), or the
    fixed defaults (off). docs/defaults.md describes the search and its budget."""

    mode: Literal["auto", "off"] = Field(
        "auto",
        description="auto: the settings the spec leaves out (WALS: confidence, α, w0, λ, iterations) are chosen "
        "by successive halving on a per-user validation split, then the final model trains on all the training "
        "data; off: fixed defaults, no validation split.",
    )
    budget: float | None = Field(
        None,
        ge=1.5,
        le=20,
        description="Most the search plus the final fit may cost, in fits with fixed settings at the same dim "
        "(1.5..20); omitted: UNFOLD_SEARCH_BUDGET (default 3).",
    )
    validation_fraction: float = Field(
        0.1,
        ge=0.05,
        le=0.5,
        description="Share of each user's training interactions held out for validation (0.1: a larger share "
        "leaves the fit part sparser than the data the model is trained on, and favours too strong a λ).",
    )


class EarlyStoppingSpec(_Strict):
    metric: str = Field("ndcg@20", description="A metric the evaluation computes, e.g. recall@20.")
    patience: int = Field(3, ge=1, le=100, description="Steps without improvement before stopping.")


MAX_RANKS = 64


class DistributedSpec(_Strict):
    """One model trained by several workers at once (docs/distributed.md): WALS with its rows sharded over ranks."""

    workers: int = Field(
        1,
        ge=1,
        le=MAX_RANKS,
        description=f"Ranks that train the model together (1..{MAX_RANKS}), each on its own worker; 1: one worker "
        "as usual. More than 1 needs algorithm wals, search.mode off and as many free workers.",
    )


class TrainingSpec(_Strict):
    """What to train (API.md, "Training spec"): every field but dataset_id has a default, and only the block
    of the chosen algorithm is read. Unknown fields and out-of-range values are a 422 naming the field."""

    model_config = ConfigDict(json_schema_extra={"examples": [e["value"] for e in SPEC_EXAMPLES.values()]})

    dataset_id: str = Field(
        min_length=1, max_length=40, description="An uploaded dataset of yours (`ds_…`); 404 when there is none."
    )
    dataset_version: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="Which version of the dataset to train on (1: the upload; later ones fold in posted events, "
        "docs/events.md); omitted: the latest when the job is submitted, written into the job's spec.",
    )
    warm_start: str | None = Field(
        None,
        min_length=1,
        max_length=100,
        description="A model id or alias (WALS) whose factors start this fit for the users and items it knows; "
        "new ones start as usual. The settings this spec leaves out are the model's own (no search runs), and "
        "the job's spec records the model's id.",
    )
    algorithm: Literal["wals", "sgd"] = Field(
        "wals", description="wals (reads the `wals` block) or sgd (reads the `sgd` block)."
    )
    dim: int = Field(
        64, ge=1, le=4096, description="Embedding dimension; UNFOLD_MAX_DIM may lower the ceiling of 4096."
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="Seeds the initial factors, the evaluation split and all sampling, so a run can be repeated.",
    )
    wals: WALSSpec = Field(
        default_factory=WALSSpec, description="WALS settings, read when algorithm is wals; omitted ones are chosen."
    )
    sgd: SGDSpec = Field(default_factory=SGDSpec, description="SGD settings, read when algorithm is sgd.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec,
        description="The held-out split the metrics come from; the served model is then refit on every interaction.",
    )
    early_stopping: EarlyStoppingSpec | None = Field(
        None,
        description="Optional: stop fitting when `metric` has not improved for `patience` steps; the refit then "
        "runs the best step count. Needs a split other than none.",
    )
    index: IndexSpec = Field(default_factory=IndexSpec, description="The nearest-neighbour index built for serving.")
    search: SearchSpec = Field(
        default_factory=SearchSpec,
        description="Settings the spec leaves out are measured on the data (auto, the default) or fixed (off).",
    )
    distributed: DistributedSpec = Field(
        default_factory=DistributedSpec, description="Train one model on several workers at once (WALS)."
    )

    @field_validator("wals", "sgd")
    @classmethod
    def _check_block_is_read(cls, block: BaseModel, info: ValidationInfo) -> BaseModel:
        # Only the chosen algorithm's block is read, so settings in the other would be silently
        # ignored. A block equal to its defaults says nothing (a stored spec repeats both) and passes.
        algorithm = info.data.get("algorithm")
        if algorithm is not None and algorithm != info.field_name and block != type(block)():
            raise ValueError(
                f"the {info.field_name} block is read only when algorithm is {info.field_name!r}, and this spec's "
                f"algorithm is {algorithm!r}: remove the block or set the algorithm"
            )
        return block

    @model_validator(mode="after")
    def _check_sgd_combination(self) -> TrainingSpec:
        # The same torch-free rules the worker applies, so an impossible combination is a 422 now,
        # not a failed job later.
        if self.algorithm == "sgd":
            try:
                sgd_config_from_spec(self.sgd.model_dump(), dim=self.dim, seed=self.seed)
            except ValueError as exc:
                raise ValueError(f"sgd: {exc}") from None
        return self

    @model_validator(mode="after")
    def _check_distributed(self) -> TrainingSpec:
        workers = self.distributed.workers
        if workers > 1 and self.algorithm != "wals":
            raise ValueError(f"distributed.workers {workers} needs algorithm 'wals': only WALS trains on several ranks")
        if workers > 1 and self.search.mode != "off":
            raise ValueError(
                f"distributed.workers {workers} needs search.mode 'off': the settings search runs on one worker"
            )
        return self

    @model_validator(mode="after")
    def _check_warm_start(self) -> TrainingSpec:
        if self.warm_start is None:
            return self
        if self.algorithm != "wals":
            raise ValueError("warm_start needs algorithm 'wals': an SGD fit cannot start from another model's factors")
        if self.distributed.workers > 1:
            raise ValueError("warm_start trains on one worker: distributed.workers must be 1")
        if self.search.mode == "auto" and "search" in self.model_fields_set and "mode" in self.search.model_fields_set:
            raise ValueError(
                "warm_start takes the settings its model was trained with: search.mode 'auto' would choose them "
                "again from scratch; leave search out"
            )
        return self

    @model_validator(mode="after")
    def _check_early_stopping(self) -> TrainingSpec:
        es = self.early_stopping
        if es is None:
            return self
        if self.evaluation.split == "none":
            raise ValueError("early_stopping needs a held-out split: evaluation.split is 'none'")
        m = re.fullmatch(r"(recall|ndcg)@(\d+)", es.metric)
        if not m or int(m.group(2)) not in self.evaluation.k:
            raise ValueError(
                f"early_stopping.metric {es.metric!r} is not computed: use recall@k or ndcg@k "
                f"with k in evaluation.k {self.evaluation.k}"
            )
        return self
