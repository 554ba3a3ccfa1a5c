"""The alternatives a site owner would pick instead of firstpaint, as policies over one stream.

Each arm decides a slot for a visitor and is shown the outcome of its own decision (a
CONTRACT §8 log record) right after. The learning benchmark replays one simulated stream
through all of them with common random numbers, so differences come from the policies alone:
- `UniformRandom`: every variant equally often (what an A/B/n test does while it runs);
- `SingleVariant`: one variant for everybody (the winner of an A/B test, no context);
- `Oracle`: the best variant for each visitor by the simulator's ground truth;
- `NightlyBatch`: firstpaint's own model and policy, retrained once a simulated day on
  everything logged so far (batch personalization);
- `VowpalWabbit`: `--cb_explore_adf` over the same features, learning after every decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from model_export import policy
from model_export.features import features

DAY_MS = 86_400_000

Record = dict[str, Any]
Trainer = Callable[[Sequence[Record], Mapping[str, Any]], dict[str, Any]]
Truth = Callable[[Mapping[str, Any], str, str], float]


class Arm(Protocol):
    name: str

    def decide(
        self, t_ms: int, visitor_id: str, context: Mapping[str, Any], slot: str, decision_id: str
    ) -> tuple[str, float]:
        """The variant shown and its propensity."""

    def observe(self, record: Record) -> None:
        """The outcome of one of this arm's decisions (`engaged` filled in)."""


def draw(u: float, variants: Sequence[str], probabilities: Sequence[float]) -> str:
    """The first variant whose cumulative probability exceeds `u` (the last if rounding)."""
    cumulative = 0.0
    for variant, p in zip(variants, probabilities, strict=True):
        cumulative += p
        if u < cumulative:
            return variant
    return variants[-1]


def _unit(visitor_id: str, slot: str, decision_id: str) -> float:
    # The same deterministic draw the policy uses (CONTRACT §6.4), so arms share randomness.
    return policy.fnv1a32(decision_id, policy._draw_basis(visitor_id, slot)) / policy._TWO_32


class UniformRandom:
    name = "uniform random"

    def __init__(self, variants: Mapping[str, Sequence[str]]) -> None:
        self.variants = variants

    def decide(self, t_ms, visitor_id, context, slot, decision_id):
        variants = self.variants[slot]
        k = len(variants)
        return draw(_unit(visitor_id, slot, decision_id), variants, [1 / k] * k), 1 / k

    def observe(self, record: Record) -> None:
        pass


class SingleVariant:
    name = "best single variant"

    def __init__(self, choice: Mapping[str, str]) -> None:
        self.choice = choice

    def decide(self, t_ms, visitor_id, context, slot, decision_id):
        return self.choice[slot], 1.0

    def observe(self, record: Record) -> None:
        pass


def best_single_variants(
    rows: Iterable[tuple[str, Mapping[str, float]]],
) -> dict[str, str]:
    """Per slot, the variant with the highest summed true engagement over `(slot, p_v)` rows."""
    totals: dict[str, dict[str, float]] = {}
    for slot, p in rows:
        table = totals.setdefault(slot, {})
        for variant, value in p.items():
            table[variant] = table.get(variant, 0.0) + value
    return {slot: max(table, key=table.__getitem__) for slot, table in totals.items()}


class Oracle:
    name = "oracle"

    def __init__(self, variants: Mapping[str, Sequence[str]], truth: Truth) -> None:
        self.variants = variants
        self.truth = truth

    def decide(self, t_ms, visitor_id, context, slot, decision_id):
        return max(self.variants[slot], key=lambda v: self.truth(context, slot, v)), 1.0

    def observe(self, record: Record) -> None:
        pass


def exploration_ceiling(config: Mapping[str, Any], p: Mapping[str, float]) -> float:
    """Expected engagement of the *true* scores `p` under the slot's exploration and holdout.

    The best any learner can do while it keeps exploring as the model says: the ceiling for
    firstpaint's online and nightly policies, which the oracle (greedy on the truth) is not
    held to.
    """
    pi = policy.choice_probabilities(config, p)
    explored = sum(pi[v] * p[v] for v in config["variants"])
    holdout = config.get("holdout", 0.0)
    return (1 - holdout) * explored + holdout * p[config["default"]]


def uniform_share(config: Mapping[str, Any]) -> float:
    """The share of a slot's traffic its exploration spreads uniformly over the variants.

    ε for ε-greedy, K·floor for softmax: the ε to give an ε-greedy learner (Vowpal Wabbit) so
    that it explores as much as firstpaint's policy does on the same slot.
    """
    exploration = config["exploration"]
    if exploration["kind"] == "egreedy":
        return float(exploration["epsilon"])
    return len(config["variants"]) * float(exploration["floor"])


class NightlyBatch:
    """firstpaint's model and policy, retrained at each simulated midnight (UTC)."""

    name = "nightly batch"

    def __init__(
        self, model: Mapping[str, Any], trainer: Trainer, history: Sequence[Record] = ()
    ) -> None:
        self.trainer = trainer
        self.model_ = dict(model)
        self.log_: list[Record] = list(history)
        self.next_night_ms_: int | None = None
        self.retrained_ = 0

    def decide(self, t_ms, visitor_id, context, slot, decision_id):
        if self.next_night_ms_ is None:
            self.next_night_ms_ = (t_ms // DAY_MS + 1) * DAY_MS
        if t_ms >= self.next_night_ms_:
            self.model_ = self.trainer(self.log_, self.model_)
            self.retrained_ += 1
            self.next_night_ms_ = (t_ms // DAY_MS + 1) * DAY_MS
        made = policy.decide(self.model_, context, slot, visitor_id, decision_id)
        return made.variant, made.propensity

    def observe(self, record: Record) -> None:
        self.log_.append(record)


class VowpalWabbit:
    """Vowpal Wabbit contextual bandit (`--cb_explore_adf`), one workspace per slot.

    Shared features are the contract's active features; `-q sa` crosses them with the
    variant, which makes VW's model a per-variant linear one, like firstpaint's. `epsilon` is
    one ε for every slot or a mapping slot → ε (see `uniform_share`).
    """

    name = "vowpal wabbit"

    def __init__(
        self,
        variants: Mapping[str, Sequence[str]],
        spec: Mapping[str, Any],
        epsilon: float | Mapping[str, float] = 0.1,
        seed: int = 0,
        extra: str = "",
    ) -> None:
        from vowpalwabbit import Workspace

        self.variants = variants
        self.spec = spec
        per_slot = epsilon if isinstance(epsilon, Mapping) else dict.fromkeys(variants, epsilon)
        self.workspaces_ = {
            slot: Workspace(
                f"--cb_explore_adf --epsilon {per_slot[slot]} -q sa --quiet "
                f"--random_seed {seed} {extra}"
            )
            for slot in variants
        }
        self._pending: dict[str, tuple[list[str], int, float]] = {}
        self._shared: tuple[Mapping[str, Any] | None, str] = (None, "")

    def _example(self, context: Mapping[str, Any], slot: str) -> list[str]:
        if self._shared[0] is not context:  # slots of one page share the context's features
            active = features(context, self.spec)
            self._shared = (context, " ".join(f"{_vw_name(n)}:{v:.6g}" for n, v in active))
        shared = self._shared[1]
        return [f"shared |s {shared}"] + [f"|a v={_vw_name(v)}" for v in self.variants[slot]]

    def decide(self, t_ms, visitor_id, context, slot, decision_id):
        example = self._example(context, slot)
        pmf = self.workspaces_[slot].predict(example)
        variants = self.variants[slot]
        variant = draw(_unit(visitor_id, slot, decision_id), variants, pmf)
        index = variants.index(variant)
        self._pending[decision_id + "\x1f" + slot] = (example, index, pmf[index])
        return variant, float(pmf[index])

    def observe(self, record: Record) -> None:
        example, index, p = self._pending.pop(record["decision_id"] + "\x1f" + record["slot"])
        labelled = list(example)
        cost = -float(record["engaged"])
        labelled[index + 1] = f"0:{cost}:{p} {labelled[index + 1]}"
        self.workspaces_[record["slot"]].learn(labelled)

    def close(self) -> None:
        for workspace in self.workspaces_.values():
            workspace.finish()


def _vw_name(name: str) -> str:
    # `:` and `|` and white space are VW syntax; the contract's names never need them.
    return name.replace(":", "_").replace("|", "_").replace(" ", "_")
