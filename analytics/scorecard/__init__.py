"""Build experiments' scorecards from their units per variant and sufficient statistics.

Every metric of an experiment is compared, treatment by treatment, with the control:
conversion metrics with the two-proportion z test (Newcombe's interval when counts are
small, Wilson intervals for each arm's rate), count and sum metrics with Welch's t test,
mean and ratio metrics with the delta method, CUPED metrics with Welch's t test on the
adjusted values. Each comparison also gets its p-value adjusted for the experiment's
many comparisons (the experiment's ``correction``), an always-valid sequential test,
Bayesian chance to beat control and expected loss, and the effect detectable with the
units so far. The sample-ratio check decides whether the scorecard can be trusted.

Where things are:

- ``inputs``: ``ScorecardInput``, one experiment to score;
- ``build``: ``scorecard_documents`` (the one path: many experiments in one vectorised
  pass, each scorecard a ``ScorecardDoc``), ``build_scorecards`` / ``build_scorecard``
  (the same validated into ``schemas.results.Scorecard``);
- ``documents``: the documents' ``TypedDict``s, field for field the models';
- ``cells``: every (experiment, metric, treatment) cell gathered into named columns;
- ``figures``: one vectorised analysis per kind of metric, corrections per family;
- ``comparisons``: the ``MetricComparisonDoc`` of every cell;
- ``trust``: sample-ratio check, warnings and the stopping advice.
"""

from analytics.scorecard.build import (
    DEFAULT_ALPHA,
    build_scorecard,
    build_scorecards,
    scorecard_documents,
)
from analytics.scorecard.documents import MetricComparisonDoc, ScorecardDoc
from analytics.scorecard.inputs import ScorecardInput, StatsByCell, SumsByMetric, SumsSource

__all__ = [
    "DEFAULT_ALPHA",
    "MetricComparisonDoc",
    "ScorecardDoc",
    "ScorecardInput",
    "StatsByCell",
    "SumsByMetric",
    "SumsSource",
    "build_scorecard",
    "build_scorecards",
    "scorecard_documents",
]
