"""Sample-quality metrics on TF-Inception pool3 features: FID, KID, improved precision/recall."""

from koopscope.metrics.fid import fid_from_features, fid_from_stats
from koopscope.metrics.inception import InceptionFeatures
from koopscope.metrics.kid import kid_from_features
from koopscope.metrics.prdc import precision_recall
from koopscope.metrics.reference import cache_dir, load_reference, reference, reference_features
from koopscope.metrics.scores import evaluate, real_vs_real_floor

__all__ = [
    "InceptionFeatures",
    "cache_dir",
    "evaluate",
    "fid_from_features",
    "fid_from_stats",
    "kid_from_features",
    "load_reference",
    "precision_recall",
    "real_vs_real_floor",
    "reference",
    "reference_features",
]
