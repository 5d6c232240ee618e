"""The training spec: what a client POSTs to /v1/jobs, validated at the edge.

Fields left out (or null) are chosen by Unfold; the trained model records the values it used.
Unknown fields are refused so a typo (`"l2_reg"`) is a 422, not a silently ignored setting.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.recsys.sgd_config import sgd_config_from_spec

MAX_K = 1000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfidenceSpec(_Strict):
    scheme: Literal["linear", "log"] = Field(
        "log", description="c = 1 + α·log(1 + r/ε) (robust to heavy-tailed counts), or c = 1 + α·r."
    )
    alpha: float | None = Field(None, ge=0, le=1e6, description="α; chosen by Unfold when omitted.")
    eps: float = Field(1.0, gt=0, le=1e9, description="ε of the log scheme.")


class WALSSpec(_Strict):
    iterations: int | None = Field(None, ge=1, le=1000, description="Alternating sweeps (users, then items).")
    l2: float | None = Field(
        None,
        ge=0,
        le=1e6,
        description="λ; default 0.01 with frequency scaling, lowered from the data's counts where that would "
        "over-shrink (README, 'How the defaults are chosen'); 100 with one λ.",
    )
    l2_scaling: Literal["none", "frequency"] = Field(
        "frequency",
        description="frequency: each row's λ_u = λ·(|I_u| + w0·n_items)^l2_exponent (Rendle et al. 2022); none: one λ.",
    )
    l2_exponent: float = Field(1.0, ge=0, le=2, description="ν of the frequency scaling.")
    unobserved_weight: float | None = Field(
        None, ge=0, le=1e3, description="w0: weight of every unobserved (user, item) pair."
    )
    confidence: ConfidenceSpec = Field(default_factory=ConfidenceSpec)
    solver: Literal["cg", "cholesky"] = Field("cg", description="Row solver: a few CG steps or exact Cholesky.")
    cg_steps: int = Field(3, ge=1, le=100, description="CG steps per row solve.")


class NegativesSpec(_Strict):
    strategy: Literal["none", "uniform", "popularity", "in_batch", "hard", "mixed"] = Field(
        "in_batch", description="How negatives are drawn; `none` trains on positives only (folds)."
    )
    per_positive: int = Field(4, ge=1, le=1024, description="Sampled negatives per positive.")
    popularity_power: float = Field(0.75, ge=0, le=2, description="popularity: P(j) ∝ count_j^power.")
    logq_correction: bool = Field(True, description="Subtract log Q(j) from logits of non-uniform samplers.")
    hard_candidates: int = Field(64, ge=1, le=100_000, description="hard: random items scored per positive.")


class SGDSpec(_Strict):
    """Defaults are the best recipe measured on ml-1m-implicit (README): in-batch sampled softmax
    with logQ correction, adam 0.005, l2 0.05, batches of 1024 — recall@20 0.279 at dim 64."""

    variant: Literal["sgd", "minibatch", "minibatch_sgd"] = Field(
        "minibatch_sgd",
        description="sgd: one example per update; minibatch: fixed-order batches; minibatch_sgd: shuffled batches.",
    )
    batch_size: int = Field(1024, ge=1, le=1_000_000)
    epochs: int = Field(20, ge=1, le=1000)
    learning_rate: float = Field(0.005, gt=0, le=100)
    optimizer: Literal["sgd", "adagrad", "adam"] = "adam"
    loss: Literal["bce", "bpr", "softmax", "mse"] = "softmax"
    l2: float = Field(0.05, ge=0, le=1e3, description="λ on the positive pair's user and item rows.")
    negatives: NegativesSpec = Field(default_factory=NegativesSpec)


class EvaluationSpec(_Strict):
    split: Literal["random", "leave_last_out", "temporal", "none"] = "random"
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share held out by `random`/`temporal`.")
    k: list[int] = Field(default_factory=lambda: [10, 20], min_length=1, max_length=10)

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


class EarlyStoppingSpec(_Strict):
    metric: str = Field("ndcg@20", description="A metric the evaluation computes, e.g. recall@20.")
    patience: int = Field(3, ge=1, le=100, description="Steps without improvement before stopping.")


class TrainingSpec(_Strict):
    dataset_id: str = Field(min_length=1, max_length=40)
    algorithm: Literal["wals", "sgd"] = "wals"
    dim: int = Field(64, ge=1, le=4096, description="Embedding dimension.")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    wals: WALSSpec = Field(default_factory=WALSSpec)
    sgd: SGDSpec = Field(default_factory=SGDSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    early_stopping: EarlyStoppingSpec | None = None
    index: IndexSpec = Field(default_factory=IndexSpec)

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
