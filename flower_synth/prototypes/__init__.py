"""Feature-space prototypes: per-class Gaussian mixtures (GFPL-style) and per-class
means (FedProto), their fusion on the server and their wire format."""

from flower_synth.prototypes.fusion import (
    bhattacharyya_distance,
    fuse_components,
    fuse_mixtures,
    merge_moments,
)
from flower_synth.prototypes.means import ClassPrototypes, aggregate_prototypes, class_means
from flower_synth.prototypes.mixtures import (
    COVARIANCE_TYPES,
    ClassMixtures,
    fit_class_mixtures,
    top_up_counts,
)
from flower_synth.prototypes.wire import (
    PROTOTYPE_DTYPES,
    decode_mixtures,
    decode_prototypes,
    encode_mixtures,
    encode_prototypes,
)

__all__ = [
    "COVARIANCE_TYPES",
    "PROTOTYPE_DTYPES",
    "ClassMixtures",
    "ClassPrototypes",
    "aggregate_prototypes",
    "bhattacharyya_distance",
    "class_means",
    "decode_mixtures",
    "decode_prototypes",
    "encode_mixtures",
    "encode_prototypes",
    "fit_class_mixtures",
    "fuse_components",
    "fuse_mixtures",
    "merge_moments",
    "top_up_counts",
]
