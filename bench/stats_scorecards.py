"""Full scorecards for 10,000 experiment x metric cells, against a per-cell scipy loop.

2,500 experiments, each with a conversion and a mean (revenue) metric and two treatments:
10,000 treatment-vs-control cells. Timed in the same process on the same data, in
``--rounds`` interleaved rounds (best of each reported, plus the ratio per round):

- ``scorecards``: ``analytics.scorecard.scorecard_documents`` over all experiments at the
  default (relative) scale, from the per-variant sufficient statistics to every
  scorecard's complete content (the fields of ``schemas.results.Scorecard``), the one
  path every scorecard takes. Each cell gets the fixed-horizon test and intervals on
  both scales, Wilson arm intervals, Holm per experiment and metric role with adjusted
  intervals, the sequential test tuned to the experiment's plan, Bayesian summaries and
  the detectable effect; each experiment its planned units, sample-ratio check,
  warnings and stopping advice. ``+ JSON`` adds ``orjson.dumps`` of each
  (byte-identical to ``Scorecard.model_dump_json``, checked).
- ``Scorecard objects``: ``build_scorecards``, the same validated into pydantic models
  (about 10 objects per cell; what ``build_scorecard``, called by the results API for
  one experiment, returns).
- ``figures only``: ``analytics.stats`` over all cells, nothing assembled.
- ``scipy loop`` (the baseline): per cell, ``scipy.stats.ttest_ind_from_stats`` (Welch)
  on the cell's means, standard deviations and counts, and the Welch interval of the
  difference with ``scipy.stats.t.interval`` at the Welch-Satterthwaite degrees of
  freedom. Nothing else: no relative effect, correction, sequential or Bayesian figures.
  ``ttest only`` is the same loop without the interval (for reference).
- ``build_scorecard`` one experiment at a time on ``--single-sample`` experiments (the
  cost of one results API request).

Times are CPU time of this process (``time.process_time``): the machine is shared, and
other processes' load moves wall-clock times by 2-3x between runs. Wall-clock times are
printed too. Before printing, the bench checks that the absolute-scale scorecards'
p-values of the mean cells equal the loop's Welch p-values (and their intervals the
loop's), that the documents' JSON equals the validated models' JSON, and that batch and
one-at-a-time scorecards are identical.

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
from scipy import stats

from analytics.scorecard import (
    ScorecardInput,
    build_scorecard,
    build_scorecards,
    scorecard_documents,
)
from analytics.stats import adjust_p_values
from analytics.stats.analysis import analyse_conversions, analyse_means
from analytics.stats.arms import MeanArms, ProportionArms
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
    conversions = analyse_conversions(ProportionArms(n[c], x[c]), ProportionArms(n[t], x[t]))
    means = analyse_means(MeanArms(n[c], s[c], ss[c]), MeanArms(n[t], s[t], ss[t]))
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


def _cells(data: dict[str, Array]) -> list[tuple[float, ...]]:
    """Per cell, in scorecard order: (mean, sd, n) of the treatment, then of the control."""
    cells = []
    n, x, s, ss = (data[k].tolist() for k in ("n", "x", "s", "ss"))
    for e in range(len(n)):
        for kind in ("conversion", "mean"):
            for i in (1, 2):
                arms = []
                for j in (i, 0):
                    if kind == "conversion":
                        mean = x[e][j] / n[e][j]
                        var = mean * (1 - mean) * n[e][j] / (n[e][j] - 1)
                    else:
                        mean = s[e][j] / n[e][j]
                        var = (ss[e][j] - s[e][j] ** 2 / n[e][j]) / (n[e][j] - 1)
                    arms.extend((mean, math.sqrt(var), n[e][j]))
                cells.append(tuple(arms))
    return cells


def scipy_loop(cells: list[tuple[float, ...]]) -> Array:
    """Per cell: Welch's t test and the Welch interval of the difference."""
    p_values = []
    for mean_t, sd_t, n_t, mean_c, sd_c, n_c in cells:
        result = stats.ttest_ind_from_stats(mean_t, sd_t, n_t, mean_c, sd_c, n_c, equal_var=False)
        v_t, v_c = sd_t**2 / n_t, sd_c**2 / n_c
        dof = (v_t + v_c) ** 2 / (v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))
        stats.t.interval(0.95, dof, loc=mean_t - mean_c, scale=math.sqrt(v_t + v_c))
        p_values.append(result.pvalue)
    return np.array(p_values)


def ttest_only(cells: list[tuple[float, ...]]) -> None:
    for mean_t, sd_t, n_t, mean_c, sd_c, n_c in cells:
        stats.ttest_ind_from_stats(mean_t, sd_t, n_t, mean_c, sd_c, n_c, equal_var=False)


def mean_cells(values: Array) -> Array:
    """The mean (revenue) cells of the cells in scorecard order (2 of every 4)."""
    return values.reshape(-1, 4)[:, 2:].ravel()


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
    parser.add_argument("--single-sample", type=int, default=100)
    args = parser.parse_args()
    data = _data(args.experiments)
    inputs = scorecard_inputs(data)
    cells = _cells(data)
    vectorised(data)  # warm-up (imports, first-call costs)
    build_scorecards(inputs[:10])
    scipy_loop(cells[:10])
    runs: dict[str, tuple[Callable[[Any], Any], Any]] = {
        "scorecards": (scorecard_documents, inputs),
        "scorecards + JSON": (documents_json, inputs),
        "Scorecard objects": (build_scorecards, inputs),
        "figures only": (vectorised, data),
        "scipy loop": (scipy_loop, cells),
        "ttest only": (ttest_only, cells),
    }
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(args.rounds):  # interleaved, so load from other work hits all alike
        for name, (function, argument) in runs.items():
            results[name] = None  # the previous round's result is freed outside the timing
            t_cpu, t_wall, results[name] = _timed(function, argument)
            cpu[name].append(t_cpu)
            wall[name].append(t_wall)
    t_single, _, singles = _timed(one_at_a_time, inputs[: args.single_sample])

    p_loop = results["scipy loop"]
    absolute = scorecard_documents(inputs, scale="absolute")
    p_absolute = mean_cells(p_values_of(absolute))
    assert np.allclose(p_absolute, mean_cells(p_loop), rtol=1e-8), "loop disagrees"
    assert np.allclose(results["figures only"], p_values_of(absolute), rtol=1e-12, equal_nan=True)
    model_json = [card.model_dump_json().encode() for card in results["Scorecard objects"]]
    assert results["scorecards + JSON"] == model_json, "documents and models disagree"
    assert [card.model_dump_json().encode() for card in singles] == model_json[: len(singles)]

    loop = min(cpu["scipy loop"])
    print(f"{len(cells):,} experiment x metric cells ({args.experiments:,} experiments)")
    print(f"CPU time, best of {args.rounds} interleaved rounds (wall-clock best in brackets):")
    for name in runs:
        best = min(cpu[name])
        speed_up = "" if name == "scipy loop" else f"{loop / best:8.1f}x faster"
        print(f"  {name:<19}{best * 1000:9.1f} ms  ({min(wall[name]) * 1000:8.1f} ms) {speed_up}")
    for name in ("scorecards", "scorecards + JSON", "Scorecard objects"):
        ratios = ", ".join(
            f"{lo / t:.1f}x" for lo, t in zip(cpu["scipy loop"], cpu[name], strict=True)
        )
        print(f"  {name} vs loop within each round: {ratios}")
    per_experiment = t_single / args.single_sample
    print(
        f"  build_scorecard one experiment at a time: {per_experiment * 1000:.2f} ms each "
        f"({args.single_sample} timed), {per_experiment * args.experiments:.1f} s for all"
    )


if __name__ == "__main__":
    main()
