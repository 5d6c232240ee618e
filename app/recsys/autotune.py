"""Settings chosen on the user's own data: successive halving over a few candidates, on a validation split.

Defaults tuned on one kind of data cost a quarter of the achievable recall on another (sparse check-ins
want a larger confidence and a weaker shrinkage than MovieLens). So a spec that leaves settings out has
them measured on a validation split carved from its own training data, at a bounded cost:

  1. validation: every user gives up 10 % of their interactions (the latest when timestamps exist;
     split.holdout_per_user), and keeps the rest to fit on;
  2. rungs of `rung_steps` steps each, scored on validation, at the real dimension when the budget buys two
     candidates there (up to dim 128), else at a proxy (smaller) one: a coordinate sweep over the free settings
     (breadth first: each axis' next value, the others held at the best point so far, so a handful of trials
     covers every axis), then the best third goes on from its own state for as many steps again. A candidate
     displaces the best so far only when its users' recalls beat it beyond a margin and the noise of their
     paired differences: on sparse data a few hundred users cannot tell 4 % apart;
  3. the winner trains at the real dimension on the fit part (going on from its rungs when they ran at that
     dimension), scored every few steps, until validation recall clearly falls: the latest step within noise
     of the best is the step count the model keeps;
  4. the final model sees all of the training data: warm-started from the winner's state at its chosen
     step for a few steps (`Space.warm_state`), else trained afresh for the chosen count.

Work is priced by a cost model (floating-point operations of a step and of an evaluation), not by the
clock, so the same data and spec always make the same choice. `budget` caps the whole (search and
final model) at that many fits with fixed settings; rungs get what the winner and the final model
leave, and the sweep runs as many trials as that pays for (each axis lists its best guess first).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from app.recsys.base import Callback, EmbeddingModel, Evaluator, Interrupt, TrainingState
from app.recsys.interactions import Interactions
from app.recsys.split import holdout_per_user

# (params, data, dim, steps) -> the core config of one candidate
ConfigFor = Callable[[dict[str, Any], Interactions, int, int], Any]
# (config, data) -> the cost of one step, in floating-point operations
StepCost = Callable[[Any, Interactions], float]
# progress(stage, done, planned, record): stage "rung" | "winner" | "final" after every step (record: params,
# step, metrics), "trial" when a candidate's rung ends (record: the trial); done and planned in fixed fits
Progress = Callable[[str, float, float, dict[str, Any]], None]

MIN_VALIDATION_USERS = 20
EVAL_PAIR_COST = 64  # see ValidationRecall.cost
# A sweep moves off its current point only for a score this much higher (noise and early-step bias).
SWEEP_MARGIN = 0.01
# ... and by this many standard errors of the users' paired differences. On sparse data most validation users hold
# one or two items, so 500 users' recall moves by ~5 % between settings that test cannot tell apart: yelp2018-sample
# at dim 32 preferred w0 0.25 by 3.8 %, which lost 4 % on test (docs/defaults.md).
MOVE_Z = 1.0
# The winner's validation curve has at most this many points (scores are costly; its plateau is wide).
WINNER_SCORES = 4
# The plan spends at most this share of the budget: the cost model is a model (on a busy 2-core machine wall
# time ran up to 1.4x its figure), and the budget is a ceiling.
PLANNED_SHARE = 0.75
# Each call of a fit costs a fixed part (starting the fit: both sides, its start, threads: 18-35 ms, about half a
# step on the README's planted set) and a pass over the nonzeros (a candidate's λ from the counts and the fit's
# setup: 75 ms on amazon-book-sample, a seventh of a dim-64 step). Priced as two steps each (the earlier model)
# it cost a big catalogue 10x what it measured and bought no trial there.
CALL_COST = 3e7
CALL_COST_PER_NONZERO = 800.0
# Validation recall on a few hundred users is noisy (a few % on sparse data): scores within TOLERANCE of the
# best count as the best, and only two in a row below it by DECLINE mean the curve has turned.
TOLERANCE = 0.02
DECLINE = 0.05
# Up to this dimension the sweep trains at the real one when the budget buys two candidates there (sweep_dims).
SWEEP_AT_REAL_DIM_UP_TO = 128


@dataclass(frozen=True)
class AutotuneConfig:
    """How much the search may cost and how it measures; see the module doc."""

    budget: float = 3.0  # the whole search + final model, in fits with fixed settings
    validation_fraction: float = 0.1
    eval_users: int = 1000  # most validation users scored per evaluation (a seeded sample)
    min_eval_users: int = 500
    k: int = 20  # candidates are ranked by validation recall@k
    rung_steps: int = 3
    keep: float = 1 / 3  # share of a rung that goes on to the next
    final_warm_steps: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1.0 <= self.budget <= 100.0:
            raise ValueError(f"budget must be within 1..100 fixed fits, got {self.budget}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie strictly between 0 and 1, got {self.validation_fraction}")
        for name in ("eval_users", "min_eval_users", "k", "rung_steps", "final_warm_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.keep < 1.0:
            raise ValueError(f"keep must lie strictly between 0 and 1, got {self.keep}")


@dataclass(frozen=True)
class Space:
    """What the search varies for one algorithm, and how to train and price a candidate.

    `axes` are the settings the spec left out, each with its values (best guess first), swept in order;
    `default_steps` is the step count of a fit with fixed settings (the budget's unit), `max_steps` the most
    the winner may train.
    `warm_state(state)` turns the winner's state at its chosen step into one the final fit on all the data
    starts from, at step 0 (None: train afresh for the chosen step count). `rung_steps`, when given,
    overrides the config's (an SGD epoch is a larger share of a fit than a WALS iteration).
    """

    algorithm: str
    axes: list[tuple[str, tuple[Any, ...]]]
    config_for: ConfigFor
    fit: Callable[..., EmbeddingModel]
    step_cost: StepCost
    default_steps: int
    max_steps: int
    steps_named: bool = False
    warm_state: Callable[[TrainingState], TrainingState] | None = None
    rung_steps: int | None = None


@dataclass
class Outcome:
    """What the search chose and measured; `model` is trained on all of the data it was given."""

    params: dict[str, Any]  # the chosen values (spec-shaped names)
    steps: int  # the step count a fit from scratch should run (the winner's best)
    model: EmbeddingModel
    trials: list[dict[str, Any]]  # every candidate: params, rung reached, validation scores per step
    validation: dict[str, Any]  # the winner's (None when it had no curve) and popularity's validation recall@k
    cost: dict[str, float]  # planned and spent, in fixed fits
    warnings: list[str] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        """The JSON-able record a job and a model keep of the search."""
        return {
            "chosen": {**self.params, "steps": self.steps},
            "validation": self.validation,
            "cost_in_fixed_fits": self.cost,
            "trials": self.trials,
            "warnings": self.warnings,
        }


class ValidationRecall:
    """recall@k of factors on a validation split, for a seeded sample of its users (torch top-k: an
    evaluation per step must stay cheap next to the step itself)."""

    CHUNK = 512

    def __init__(self, fit: Interactions, valid: Interactions, k: int, max_users: int, seed: int) -> None:
        users = np.flatnonzero(valid.user_counts() > 0)
        if users.size > max_users:
            users = np.sort(np.random.default_rng(seed).choice(users, size=max_users, replace=False))
        self.users = users
        self.k = min(k, fit.n_items)
        self.n_items = fit.n_items
        # Per chunk, built once: the seen entries to mask and the held-out (row, item) pairs as sorted keys.
        self.chunks: list[tuple[int, int, torch.Tensor, torch.Tensor, np.ndarray, np.ndarray]] = []
        for lo in range(0, users.size, self.CHUNK):
            hi = min(lo + self.CHUNK, users.size)
            seen = fit.select_rows(users[lo:hi])
            truth = valid.select_rows(users[lo:hi])
            keys = np.sort(truth.row_users().astype(np.int64) * self.n_items + truth.indices)
            rows, cols = torch.from_numpy(seen.row_users()), torch.from_numpy(seen.indices.astype(np.int64))
            self.chunks.append((lo, hi, rows, cols, keys, truth.user_counts()))

    def __call__(self, U: np.ndarray, V: np.ndarray) -> float:
        return float(self.per_user(U, V).mean()) if self.users.size else 0.0

    def per_user(self, U: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Each sampled user's recall@k (float64, in self.users' order)."""
        items = torch.from_numpy(np.ascontiguousarray(V, dtype=np.float32))
        recall = np.zeros(self.users.size)
        for lo, hi, rows, cols, keys, counts in self.chunks:
            scores = torch.from_numpy(np.ascontiguousarray(U[self.users[lo:hi]], dtype=np.float32)) @ items.T
            scores[rows, cols] = -math.inf
            top = torch.topk(scores, self.k, dim=1).indices.numpy()
            asked = (np.arange(hi - lo, dtype=np.int64)[:, None] * self.n_items + top).ravel()
            at = np.minimum(np.searchsorted(keys, asked), max(keys.size - 1, 0))
            found = (keys[at] == asked) if keys.size else np.zeros(asked.size, dtype=bool)
            hits = found.reshape(top.shape).sum(axis=1)
            recall[lo:hi] = hits / np.maximum(counts, 1)
        return recall

    def cost(self, dim: int) -> float:
        """Work of one evaluation: per (user, item) the score's dim-long product, then writing, masking and
        ranking it (the +64, as much again at dim 32: the score matrix is memory-bound), plus each user's share
        of the bookkeeping (+20_000); fitted to timings from ml-100k to amazon-book-sample."""
        return float(self.users.size) * (self.n_items * (2 * dim + EVAL_PAIR_COST) + 20_000)

    def popularity(self, fit: Interactions) -> float:
        """The same measure for ranking items by their count in `fit` (the baseline to beat)."""
        counts = fit.item_counts().astype(np.float32)
        return self(np.ones((fit.n_users, 1), dtype=np.float32), counts[:, None])


def _call_cost(data: Interactions) -> float:
    """What one call of a fit costs beyond its steps (see CALL_COST)."""
    return CALL_COST + CALL_COST_PER_NONZERO * data.nnz


def proxy_dim(dim: int) -> int:
    """The smaller dimension a sweep falls back to: half the real one, within 16..64."""
    return int(min(dim, max(16, min(64, dim // 2))))


def sweep_dims(dim: int) -> tuple[int, ...]:
    """The dimensions a sweep may train at, preferred first: the real one, then the proxy when the real one
    does not buy two candidates. Up to dim 128 a trial at the real dimension costs 1.5-4x one at the proxy, and the
    proxy's ranking of w0 did not carry over: yelp2018-sample at dim 32 preferred w0 0.25 (validation 0.0794
    against 0.0765), at dim 64 the two tie at 3 steps (0.0883, 0.0880) and w0 1 is the better on test;
    ml-latest-small at dim 64 preferred w0 1, at dim 128 w0 0.25 leads by 3 % and is the better on test
    (docs/defaults.md). Past 128 the cost grows as d² and only the proxy pays."""
    if dim > SWEEP_AT_REAL_DIM_UP_TO:
        return (proxy_dim(dim),)
    return tuple(dict.fromkeys((dim, proxy_dim(dim))))


def _rung_sizes(n: int, keep: float) -> list[int]:
    """Trials per rung: the sweep's n, then the best `keep` share of them (at least two) when n > 3 (with
    fewer, the sweep's ranking stands: a second rung would cost as much as the sweep)."""
    return [n] if n <= 3 else [n, max(2, math.ceil(n * keep))]


def sweep_size(axes: list[tuple[str, tuple[Any, ...]]]) -> int:
    """Trials in one coordinate sweep: the starting point, then every other value of every axis."""
    return 1 + sum(len(values) - 1 for _, values in axes)


def _better(new: np.ndarray, best: np.ndarray) -> bool:
    """Whether per-user recalls `new` beat `best` (the same users) by more than the margin and the noise: the mean
    paired difference must exceed SWEEP_MARGIN of the best and MOVE_Z standard errors of that difference."""
    diff = new - best
    noise = MOVE_Z * float(diff.std(ddof=1)) / math.sqrt(diff.size) if diff.size > 1 else 0.0
    return float(diff.mean()) > max(SWEEP_MARGIN * float(best.mean()), noise)


def _pick(alive: list[int], per_user: dict[int, np.ndarray]) -> int:
    """The winner of the last rung: the earliest candidate (the more trusted guess) holds unless another beats it
    beyond margin and noise (_better); challengers come best score first, each against the holder so far."""
    holder = min(alive)
    for i in sorted(alive, key=lambda j: (-float(per_user[j].mean()), j)):
        if i != holder and _better(per_user[i], per_user[holder]):
            holder = i
    return holder


def _sweep(axes: list[tuple[str, tuple[Any, ...]]], budget: int, score: Callable[[dict[str, Any]], np.ndarray]) -> None:
    """Coordinate sweep, breadth first: from every axis' first value, round r tries each axis' r-th value with
    the rest held at the best point so far, moving there when it scores higher; stops after `budget` trials.
    Breadth first because budgets are small: with three trials every axis gets its likeliest alternative
    (a sparse catalogue wants a lower w0, a planted set a stronger shrinkage) before any axis gets a second."""
    best = {name: values[0] for name, values in axes}
    best_score = score(dict(best))
    tried = 1
    for rank in range(1, max((len(values) for _, values in axes), default=0)):
        for name, values in axes:
            if rank >= len(values):
                continue
            if tried >= budget:
                return
            point = {**best, name: values[rank]}
            value_score = score(point)
            tried += 1
            # A move needs a margin (a few steps favour settings that learn fast, not those that end best) and
            # must stand out of the noise of a few hundred users.
            if _better(value_score, best_score):
                best_score, best = value_score, point


@dataclass
class _Run:
    """What one call of _Search.train_steps saw: (step, validation score) pairs, and the states it kept."""

    first: int
    seen: list[int] = field(default_factory=list)
    scores: list[tuple[int, float]] = field(default_factory=list)
    model: EmbeddingModel | None = None
    last: TrainingState | None = None
    chosen: TrainingState | None = None
    chosen_step: int = 0
    per_user: np.ndarray | None = None  # the latest scoring's per-user recalls

    @property
    def score(self) -> float:
        return self.scores[-1][1]


class _Search:
    """One run of the procedure in the module doc; state lives here so the steps read top to bottom."""

    def __init__(
        self,
        train: Interactions,
        space: Space,
        dim: int,
        config: AutotuneConfig,
        progress: Progress | None,
        interrupt: Interrupt | None,
        watch: tuple[Callback | None, Evaluator | None] = (None, None),
    ) -> None:
        self.train, self.space, self.dim, self.config = train, space, dim, config
        self.progress, self.interrupt, self.watch = progress, interrupt, watch
        self.fit_part, valid = holdout_per_user(train, config.validation_fraction, config.seed)
        self.guess = {name: values[0] for name, values in space.axes}
        step = space.step_cost(space.config_for(self.guess, train, dim, 1), train)
        self.unit = max(space.default_steps * step, 1.0)  # one fit with fixed settings
        # Every candidate is scored on the same users. Scoring every item for one costs n_items·(2·dim + 64):
        # on a big catalogue a few hundred users cost a training step. So the sample is as large as one step
        # pays for, within [min_eval_users, eval_users], and the winner is scored every few steps (at most
        # WINNER_SCORES times), as often as keeps its scoring within the cost of its training.
        fit_step = space.step_cost(space.config_for(self.guess, self.fit_part, dim, 1), self.fit_part)
        per_user = train.n_items * (2 * dim + EVAL_PAIR_COST) + 20_000
        users = int(np.clip(fit_step / per_user, config.min_eval_users, config.eval_users))
        self.recall = ValidationRecall(self.fit_part, valid, config.k, users, config.seed)
        self.winner_every = max(
            math.ceil(self.recall.cost(dim) / max(fit_step, 1.0)), math.ceil(space.max_steps / WINNER_SCORES)
        )
        self.spent = 0.0
        self.planned = 0.0
        self.winner_enabled = True
        self.sweep_dim = dim  # set by plan()
        self.rung_steps = space.rung_steps or config.rung_steps
        self.trials: list[dict[str, Any]] = []

    def _charge(self, stage: str, amount: float, record: dict[str, Any]) -> None:
        self.spent += amount
        if self.progress is not None:
            self.progress(stage, self.spent / self.unit, max(self.planned, self.spent) / self.unit, record)

    def _cost(self, params: dict[str, Any], data: Interactions, dim: int) -> float:
        return self.space.step_cost(self.space.config_for(params, data, dim, 1), data)

    def plan(self) -> int:
        """How many sweep trials the budget pays for once the winner and the final model are paid for.

        A budget too small for the winner's validation curve trains the first guess for the default step
        count instead (no search, but never over budget)."""
        space, c = self.space, self.config
        step_fit = self._cost(self.guess, self.fit_part, self.dim)
        step_all = self._cost(self.guess, self.train, self.dim)
        # Each call of a fit costs _call_cost on top of its steps: on small data a real share of a trial.
        winner_steps = 0 if space.steps_named else space.max_steps
        scores = math.ceil(winner_steps / self.winner_every)
        winner = 0.0
        if winner_steps:
            winner = winner_steps * step_fit + _call_cost(self.fit_part) + scores * self.recall.cost(self.dim)
        final_steps = c.final_warm_steps if space.warm_state is not None and winner_steps else space.max_steps
        final = final_steps * step_all + _call_cost(self.train)
        allowed = PLANNED_SHARE * c.budget * self.unit
        if winner + final > allowed:
            self.winner_enabled = False
            self.planned = space.default_steps * step_all + _call_cost(self.train)
            return 1
        self.planned = winner + final
        # The real dimension when it buys two candidates, else the proxy (see sweep_dims). At the real dimension
        # the winner goes on from its last rung's state, so the steps it trained there are not paid twice.
        dims = sweep_dims(self.dim)
        for d in dims:
            trial = self.rung_steps * self._cost(self.guess, self.fit_part, d) + _call_cost(self.fit_part)
            trial += self.recall.cost(d)
            for n in range(sweep_size(space.axes), 1, -1):
                rungs = _rung_sizes(n, c.keep)
                resumed = len(rungs) * self.rung_steps * step_fit if d == self.dim and winner_steps else 0.0
                cost = trial * sum(rungs) - resumed
                if cost <= allowed - self.planned:
                    self.planned += cost
                    self.sweep_dim = d
                    return n
        return 1

    def train_steps(
        self,
        stage: str,
        params: dict[str, Any],
        data: Interactions,
        dim: int,
        steps: int,
        resume: TrainingState | None = None,
        score_every: int = 0,
        early_stop: bool = False,
        watch: tuple[Callback | None, Evaluator | None] = (None, None),
    ) -> _Run:
        """Train to `steps` (from `resume`), scored on validation every `score_every` steps and at the last one
        (0: never). With `early_stop` it stops once two scores in a row fall DECLINE below the best, and keeps
        the state of the latest step scoring within TOLERANCE of the best: on a curve that
        rises and plateaus (WALS's usual shape) noise then costs steps of a plateau, not of the climb.
        `watch` is the caller's own callback and evaluator (the final fit's progress and test metrics)."""
        outer_callback, outer_evaluator = watch
        run = _Run(first=resume.step + 1 if resume is not None else 1)
        step_cost = self._cost(params, data, dim)
        eval_cost = self.recall.cost(dim)
        record = {"params": params, "dim": dim}

        def scored(step: int) -> bool:
            return score_every > 0 and (step == steps or step % score_every == 0)

        def evaluator(U: np.ndarray, V: np.ndarray) -> dict[str, float]:
            step = run.first + len(run.seen)
            run.seen.append(step)
            if scored(step):
                run.per_user = self.recall.per_user(U, V)
                run.scores.append((step, float(run.per_user.mean()) if run.per_user.size else 0.0))
                self._charge(stage, eval_cost, record)
                return {f"recall@{self.config.k}": run.scores[-1][1]}
            return outer_evaluator(U, V) if outer_evaluator is not None else {}

        def callback(step: int, elapsed: float, loss: float, metrics: dict[str, float]) -> bool:
            self._charge(stage, step_cost, {**record, "step": step, "metrics": metrics})
            if outer_callback is not None and outer_callback(step, elapsed, loss, metrics):
                return True
            if not early_stop or len(run.scores) < 3:
                return False
            best = max(score for _, score in run.scores)
            return all(score < best * (1 - DECLINE) for _, score in run.scores[-2:])

        def on_state(step: int, capture: Callable[[], TrainingState]) -> None:
            if step == steps:
                run.last = capture()
            if early_stop and run.scores and run.scores[-1][0] == step:
                best = max(score for _, score in run.scores)
                if run.scores[-1][1] >= best * (1 - TOLERANCE):
                    run.chosen, run.chosen_step = capture(), step

        config = self.space.config_for(params, data, dim, steps)
        run.model = self.space.fit(
            data, config, callback, evaluator, resume=resume, on_state=on_state, interrupt=self.interrupt
        )
        return run

    def run(self) -> Outcome:
        space, c = self.space, self.config
        n = self.plan()
        d = self.sweep_dim
        candidates: list[dict[str, Any]] = []
        states: list[TrainingState | None] = []
        per_user: dict[int, np.ndarray] = {}  # each candidate's latest per-user validation recalls

        def train_rung(i: int, rung: int, steps: int, resume: TrainingState | None) -> np.ndarray:
            run = self.train_steps("rung", candidates[i], self.fit_part, d, steps, resume, self.rung_steps)
            self._trial(i, candidates[i], rung, d, run)
            assert run.per_user is not None
            states[i], per_user[i] = run.last, run.per_user
            return run.per_user

        def rung0(params: dict[str, Any]) -> np.ndarray:
            candidates.append(params)
            states.append(None)
            return train_rung(len(candidates) - 1, 0, self.rung_steps, None)

        if n > 1:
            _sweep(space.axes, n, rung0)
            alive = list(range(len(candidates)))
            sizes = _rung_sizes(len(candidates), c.keep)
            if len(sizes) > 1:
                # Ties go to the earlier (more trusted) candidate: the ranking is a pure function of the scores.
                alive = sorted(alive, key=lambda j: (-float(per_user[j].mean()), j))[: sizes[1]]
                for i in alive:
                    train_rung(i, 1, 2 * self.rung_steps, states[i])
            winner_index = _pick(alive, per_user)
        else:
            candidates.append(dict(self.guess))
            winner_index = 0
        winner = candidates[winner_index]
        popularity = self.recall.popularity(self.fit_part)

        best_steps, best_score, best_state = space.max_steps, math.nan, None
        if not self.winner_enabled:
            best_steps = space.max_steps if space.steps_named else space.default_steps
        elif not space.steps_named:
            # At the real dimension the winner's rungs were the first steps of its curve: it goes on from there.
            went_on = states[winner_index] if d == self.dim and len(states) > winner_index else None
            run = self.train_steps(
                "winner", winner, self.fit_part, self.dim, space.max_steps, went_on, self.winner_every, True
            )
            self._trial(winner_index, winner, "winner", self.dim, run)
            best_steps, best_state = run.chosen_step, run.chosen
            best_score = max(score for _, score in run.scores)

        if space.warm_state is not None and best_state is not None:
            warm = space.warm_state(best_state)
            final = self.train_steps("final", winner, self.train, self.dim, c.final_warm_steps, warm, watch=self.watch)
        else:
            final = self.train_steps("final", winner, self.train, self.dim, best_steps, watch=self.watch)
        assert final.model is not None
        validation = {
            f"recall@{c.k}": None if math.isnan(best_score) else best_score,  # None: no curve was run
            f"popularity_recall@{c.k}": popularity,
            "users": int(self.recall.users.size),
        }
        warnings = []
        if best_score <= popularity:
            warnings.append(
                f"the model does not beat the popularity baseline on its validation split "
                f"(recall@{c.k} {best_score:.4f} against {popularity:.4f}): most-popular items would serve "
                "these users as well; more interactions per user or another algorithm may help"
            )
        cost = {
            "budget": c.budget,
            "planned": round(self.planned / self.unit, 3),
            "spent": round(self.spent / self.unit, 3),
        }
        return Outcome(dict(winner), best_steps, final.model, self.trials, validation, cost, warnings)

    def _trial(self, index: int, params: dict[str, Any], rung: int | str, dim: int, run: _Run) -> None:
        trial = {
            "candidate": index,
            "params": params,
            "rung": rung,
            "dim": dim,
            "steps": run.first + len(run.seen) - 1,
            "scores": {str(step): round(score, 5) for step, score in run.scores},
            "best": round(max(score for _, score in run.scores), 5) if run.scores else None,
        }
        self.trials.append(trial)
        if self.progress is not None:
            self.progress("trial", self.spent / self.unit, max(self.planned, self.spent) / self.unit, trial)


def autotune(
    train: Interactions,
    space: Space,
    dim: int,
    config: AutotuneConfig,
    progress: Progress | None = None,
    interrupt: Interrupt | None = None,
    watch: tuple[Callback | None, Evaluator | None] = (None, None),
) -> Outcome | None:
    """Choose the free settings of `space` on a validation split of `train` and train the final model on all
    of `train`; None when validation would be too thin to choose anything (the caller keeps fixed defaults).
    `watch` (a callback and an evaluator) follows the final fit the way a caller follows any fit."""
    if not space.axes and space.steps_named:
        return None
    search = _Search(train, space, dim, config, progress, interrupt, watch)
    if search.recall.users.size < MIN_VALIDATION_USERS:
        return None
    return search.run()
