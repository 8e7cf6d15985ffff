"""Non-neural baselines: k-nearest neighbours, Gaussian naive Bayes, probes on features, rule learners.

- :class:`KNeighborsClassifier` (:mod:`.knn`): exact k-NN under L2 / L1 / cosine, batched in bounded memory,
  with documented tie-breaks; fast integer paths for pixel data.
- :class:`GaussianNB` (:mod:`.bayes`): Bayes' rule with per-class Gaussian likelihoods, in log space.
- :func:`extract_features` / :func:`load_feature_source` (:mod:`.features`): pre-logit features of a trained
  run or a registered model, for k-NN and linear-probe evaluation; :func:`train_probe` (:mod:`.probe`).
- :class:`FindS` and :class:`CandidateElimination` (:mod:`.rules`): Mitchell's concept learners on CSV
  tables of categorical attributes.
- :func:`run_baseline` / :func:`run_rules` (:mod:`.baseline`): what ``imgcls baseline METHOD`` runs.

The linear softmax classifier and the MLP on pixels are registered models (:mod:`imgcls.models.linear`).
"""

from imgcls.classic.baseline import METHODS, BaselineResult, RuleResult, run_baseline, run_rules
from imgcls.classic.bayes import GaussianNB
from imgcls.classic.features import FeatureSource, extract_features, load_feature_source
from imgcls.classic.knn import KNeighborsClassifier, SearchStats, pixel_grid, topk_accuracy
from imgcls.classic.probe import FeatureProbe, train_probe
from imgcls.classic.rules import (
    AttributeTable,
    CandidateElimination,
    FindS,
    Hypothesis,
    read_attribute_csv,
)

__all__ = [
    "METHODS",
    "AttributeTable",
    "BaselineResult",
    "CandidateElimination",
    "FeatureProbe",
    "FeatureSource",
    "FindS",
    "GaussianNB",
    "Hypothesis",
    "KNeighborsClassifier",
    "RuleResult",
    "SearchStats",
    "extract_features",
    "load_feature_source",
    "pixel_grid",
    "read_attribute_csv",
    "run_baseline",
    "run_rules",
    "topk_accuracy",
    "train_probe",
]
