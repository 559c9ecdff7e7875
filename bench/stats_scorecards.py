"""Full scorecards for 10,000 experiment x metric cells, against a per-cell statsmodels loop.

2,500 experiments, each with a conversion and a mean (revenue) metric and two treatments:
10,000 treatment-vs-control cells. Timed in the same process on the same data, in
``--rounds`` interleaved rounds (best of each reported, plus the ratio per round):

- ``scorecards``: ``analytics.scorecard.scorecard_documents`` over all experiments, from
  the per-variant sufficient statistics to every scorecard's complete content (the
  fields of ``schemas.results.Scorecard``), the one path every scorecard takes. Each
  cell gets the fixed-horizon test and intervals, Wilson arm intervals, Holm per
  experiment, the sequential test, Bayesian summaries and the detectable effect; each
  experiment its sample-ratio check, warnings and stopping advice. ``+ JSON`` adds
  ``orjson.dumps`` of each (byte-identical to ``Scorecard.model_dump_json``, checked).
- ``Scorecard objects``: ``build_scorecards``, the same validated into pydantic models
  (about 10 objects per cell; what ``build_scorecard``, called by the results API for
  one experiment, returns).
- ``figures only``: ``analytics.stats`` over all cells, nothing assembled.
- ``statsmodels loop``: per cell, statsmodels' own functions for the same figures
  (``proportions_ztest``, ``confint_proportions_2indep``, ``proportion_confint``, the
  Welch t statistic and interval of ``CompareMeans``), with the sequential and Bayesian
  closed forms in plain Python. It assembles no results. The Holm step
  (``multipletests`` per experiment) is timed apart on ``--correction-sample``
  experiments and *not* added to the loop: its ``gc.collect()`` per call would make the
  baseline look far slower than the work is.
- ``build_scorecard`` one experiment at a time on ``--single-sample`` experiments (the
  cost of one results API request).

Times are CPU time of this process (``time.process_time``): the machine is shared, and
other processes' load moves wall-clock times by 2-3x between runs. Wall-clock times are
printed too. Before printing, the bench checks that the scorecards' p-values equal the
vectorised ones and the loop's, that the documents' JSON equals the validated models'
JSON, and that batch and one-at-a-time scorecards are identical.

Run: ``.venv/bin/python -m bench.stats_scorecards [--experiments 2500] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from scipy import special
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)
from statsmodels.stats.weightstats import _tconfint_generic, _tstat_generic

from analytics.scorecard import (
    ScorecardInput,
    build_scorecard,
    build_scorecards,
    scorecard_documents,
)
from analytics.stats import adjust_p_values
from analytics.stats.analysis import analyse_conversions, analyse_means
from analytics.stats.sequential import DEFAULT_PLANNED_UNITS, optimal_mixing_factor
from schemas.experiment import Aggregation, Experiment
from schemas.results import Scorecard

VARIANTS = ("control", "b", "c")
EXPERIMENT = Experiment.model_validate(
    {
        "key": "bench",
        "variants": [{"key": key, "weight": 100 / 3} for key in VARIANTS[:-1]]
        + [{"key": VARIANTS[-1], "weight": 100 - 2 * (100 / 3)}],
        "metrics": [
            {"name": "converted", "event": "purchase", "type": "conversion"},
            {"name": "revenue", "event": "purchase", "type": "sum"},
        ],
    }
)
Array = npt.NDArray[np.float64]


def _data(experiments: int, seed: int = 1) -> dict[str, Array]:
    """Per experiment and variant: units, conversions, revenue Σx and Σx².

    Units are split across the variants by their weights (a healthy assignment), so
    the sample-ratio check passes as it does for most real experiments.
    """
    rng = np.random.default_rng(seed)
    shape = (experiments, len(VARIANTS))
    shares = [variant.weight / 100 for variant in EXPERIMENT.variants]
    units = rng.multinomial(rng.integers(600, 60_000, experiments), shares).astype(float)
    conversions = rng.binomial(units.astype(int), rng.uniform(0.01, 0.2, shape)).astype(float)
    mean_spend = rng.uniform(5, 50, shape)
    revenue = conversions * mean_spend
    # Σx² of gamma(2, spend/2) spends over the converted units: n (var + mean²).
    revenue_sq = conversions * (mean_spend**2 / 2 + mean_spend**2)
    return {"n": units, "x": conversions, "s": revenue, "ss": revenue_sq}


def vectorised(data: dict[str, Array]) -> Array:
    """All figures for all cells; returns the fixed-horizon p-values (cells in order)."""
    n, x, s, ss = data["n"], data["x"], data["s"], data["ss"]
    c, t = (slice(None), [0, 0]), (slice(None), [1, 2])
    conversions = analyse_conversions((n[c], x[c]), (n[t], x[t]))
    means = analyse_means((n[c], s[c], ss[c]), (n[t], s[t], ss[t]))
    p_values = np.ma.concatenate([conversions.comparison.p_value, means.comparison.p_value], 1)
    families = np.broadcast_to(np.arange(len(n))[:, None], p_values.shape)
    adjust_p_values(p_values, "holm", families=families)
    return np.ma.filled(p_values, np.nan).ravel()


def scorecard_inputs(data: dict[str, Array]) -> list[ScorecardInput]:
    """Per experiment: variant -> units and (variant, event, aggregation) -> (Σx, Σx²)."""
    inputs = []
    n, x, s, ss = (data[k].tolist() for k in ("n", "x", "s", "ss"))
    for e in range(len(n)):
        units = {v: int(n[e][i]) for i, v in enumerate(VARIANTS)}
        stats = {}
        for i, v in enumerate(VARIANTS):
            stats[(v, "purchase", Aggregation.CONVERSION)] = (x[e][i], x[e][i])
            stats[(v, "purchase", Aggregation.SUM)] = (s[e][i], ss[e][i])
        inputs.append(ScorecardInput("bench", EXPERIMENT, units, stats))
    return inputs


def documents_json(inputs: list[ScorecardInput]) -> list[bytes]:
    return [orjson.dumps(document) for document in scorecard_documents(inputs)]


def one_at_a_time(inputs: list[ScorecardInput]) -> list[Scorecard]:
    return [
        build_scorecard(item.tenant_id, item.experiment, item.units, item.stats) for item in inputs
    ]


def p_values_of(documents: list[dict[str, Any]]) -> Array:
    return np.array(
        [
            np.nan if m["p_value"] is None else m["p_value"]
            for document in documents
            for m in document["metrics"]
        ]
    )


def _extras(difference: float, variance: float, units: float) -> None:
    """Sequential p and sequence, Bayesian chance and losses, detectable effect."""
    tau2 = variance * units / DEFAULT_PLANNED_UNITS * optimal_mixing_factor(0.05)
    log_ratio = 0.5 * math.log(variance / (variance + tau2)) + tau2 * difference**2 / (
        2 * variance * (variance + tau2)
    )
    _ = math.exp(-max(log_ratio, 0.0))
    _ = math.sqrt(
        variance
        * (variance + tau2)
        / tau2
        * (math.log((variance + tau2) / variance) + 2 * math.log(20))
    )
    sd = math.sqrt(variance)
    z = difference / sd
    density = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    _ = special.ndtr(z), sd * density - difference * special.ndtr(-z)
    _ = (1.959964 + 0.841621) * sd


def statsmodels_loop(data: dict[str, Array]) -> Array:
    p_values = []
    for e in range(len(data["n"])):
        n, x, s, ss = (data[k][e] for k in ("n", "x", "s", "ss"))
        cell_p = []
        for i in (1, 2):  # conversion cells
            _, p = proportions_ztest([x[i], x[0]], [n[i], n[0]])
            small = min(x[0], n[0] - x[0], x[i], n[i] - x[i]) < 10
            confint_proportions_2indep(
                x[i], n[i], x[0], n[0], method="newcomb" if small else "wald", compare="diff"
            )
            proportion_confint(x[0], n[0], method="wilson")
            proportion_confint(x[i], n[i], method="wilson")
            rate_c, rate_t = x[0] / n[0], x[i] / n[i]
            variance = rate_c * (1 - rate_c) / n[0] + rate_t * (1 - rate_t) / n[i]
            _extras(rate_t - rate_c, variance, n[0] + n[i])
            cell_p.append(p)
        for i in (1, 2):  # mean cells: CompareMeans' Welch statistic and interval
            var_c = (ss[0] - s[0] ** 2 / n[0]) / (n[0] - 1)
            var_t = (ss[i] - s[i] ** 2 / n[i]) / (n[i] - 1)
            mv_c, mv_t = var_c / n[0], var_t / n[i]
            dof = (mv_c + mv_t) ** 2 / (mv_c**2 / (n[0] - 1) + mv_t**2 / (n[i] - 1))
            difference, std_diff = s[i] / n[i] - s[0] / n[0], math.sqrt(mv_c + mv_t)
            _, p = _tstat_generic(s[i] / n[i], s[0] / n[0], std_diff, dof, "two-sided", 0)
            _tconfint_generic(difference, std_diff, dof, 0.05, "two-sided")
            _extras(difference, std_diff**2, n[0] + n[i])
            cell_p.append(p)
        # Scorecard order: metric-major (converted b, c; revenue b, c).
        p_values.extend(cell_p)
    return np.array(p_values)


def holm_per_experiment(p_values: Array) -> None:
    for row in p_values.reshape(-1, 4):
        multipletests(row, method="holm")


def _timed(function: Callable[[Any], Any], data: Any) -> tuple[float, float, Any]:
    """(CPU seconds, wall-clock seconds, result).

    Starts from a collected heap, so no earlier run's garbage is charged here, and ends
    with a young-generation collection, so the collector's first pass over the objects
    this run made is charged to it (``build_scorecards`` pauses the collector).
    """
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(data)
    gc.collect(0)
    return time.process_time() - cpu, time.perf_counter() - wall, result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--experiments", type=int, default=2500)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    parser.add_argument("--correction-sample", type=int, default=50)
    parser.add_argument("--single-sample", type=int, default=100)
    args = parser.parse_args()
    data = _data(args.experiments)
    inputs = scorecard_inputs(data)
    cells = args.experiments * 4
    vectorised(data)  # warm-up (imports, first-call costs)
    build_scorecards(inputs[:10])
    runs: dict[str, Callable[[Any], Any]] = {
        "scorecards": scorecard_documents,
        "scorecards + JSON": documents_json,
        "Scorecard objects": build_scorecards,
        "figures only": vectorised,
        "statsmodels loop": statsmodels_loop,
    }
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(args.rounds):  # interleaved, so load from other work hits all alike
        for name, function in runs.items():
            results[name] = None  # the previous round's result is freed outside the timing
            on_arrays = function in (vectorised, statsmodels_loop)
            t_cpu, t_wall, results[name] = _timed(function, data if on_arrays else inputs)
            cpu[name].append(t_cpu)
            wall[name].append(t_wall)
    t_single, _, singles = _timed(one_at_a_time, inputs[: args.single_sample])

    documents, p_loop = results["scorecards"], results["statsmodels loop"]
    p_cards = p_values_of(documents)
    assert np.allclose(results["figures only"], p_cards, rtol=1e-12, equal_nan=True)
    assert np.allclose(p_cards, p_loop, rtol=1e-8, equal_nan=True), "loop disagrees"
    model_json = [card.model_dump_json().encode() for card in results["Scorecard objects"]]
    assert results["scorecards + JSON"] == model_json, "documents and models disagree"
    assert [card.model_dump_json().encode() for card in singles] == model_json[: len(singles)]
    _, t_holm, _ = _timed(holm_per_experiment, p_loop[: 4 * args.correction_sample])

    loop = min(cpu["statsmodels loop"])
    print(f"{cells:,} experiment x metric cells ({args.experiments:,} experiments)")
    print(f"CPU time, best of {args.rounds} interleaved rounds (wall-clock best in brackets):")
    for name in runs:
        best = min(cpu[name])
        speed_up = "" if name == "statsmodels loop" else f"{loop / best:8.1f}x faster"
        print(f"  {name:<19}{best * 1000:9.1f} ms  ({min(wall[name]) * 1000:8.1f} ms) {speed_up}")
    for name in ("scorecards", "scorecards + JSON", "Scorecard objects"):
        ratios = ", ".join(
            f"{lo / t:.1f}x" for lo, t in zip(cpu["statsmodels loop"], cpu[name], strict=True)
        )
        print(f"  {name} vs loop within each round: {ratios}")
    per_experiment = t_single / args.single_sample
    print(
        f"  build_scorecard one experiment at a time: {per_experiment * 1000:.2f} ms each "
        f"({args.single_sample} timed), {per_experiment * args.experiments:.1f} s for all"
    )
    print(
        f"  (multipletests Holm per experiment, not in the loop: "
        f"{t_holm / args.correction_sample * 1000:.1f} ms wall per call)"
    )


if __name__ == "__main__":
    main()
