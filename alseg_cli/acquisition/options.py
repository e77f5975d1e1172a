"""Every tunable of the acquisition methods, with its default written once."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Optional

from ..errors import AlsegError

REDUCTIONS = ("mean", "max", "sum")
TYPICALITIES = ("l2", "sqeuclidean")


@dataclass(frozen=True)
class SelectOptions:
    """Options of ``select`` and the methods it runs (unused ones are ignored by a method)."""

    mc_samples: int = 40            # MC-dropout passes (bald, mc-variance)
    batch_slices: int = 10          # slices per random batch (stochastic-batches)
    reduce: str = "mean"            # pixel scores -> slice score: mean, max or sum
    batch_size: int = 16            # slices per prediction batch (model-based methods)
    chunk_size: Optional[int] = None  # k-center rows per chunk (any value gives the same picks)
    typicality: str = "l2"          # typiclust: the paper's mean L2, or the official squared L2
    typiclust_knn: int = 20         # typiclust: neighbours of the typicality
    max_clusters: int = 500         # typiclust: cap on K = |L| + budget
    gcn_max_nodes: int = 2048       # coregcn: unlabelled pool subsampled to this many graph nodes
    gcn_hidden: int = 128           # coregcn: hidden width
    gcn_epochs: int = 200           # coregcn: training epochs
    vaal_batch: int = 32            # vaal: batch size
    vaal_epochs: int = 5            # vaal: epochs over the unlabelled pool

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise AlsegError(f"--reduce {self.reduce}: choose {', '.join(REDUCTIONS)}")
        if self.typicality not in TYPICALITIES:
            raise AlsegError(f"--typicality {self.typicality}: choose {' or '.join(TYPICALITIES)}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("reduce", "typicality") or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise AlsegError(f"select option {f.name} = {value}: not a whole number")
            if value < 1:
                raise AlsegError(f"--{f.name.replace('_', '-')} {value}: must be at least 1")

    @classmethod
    def build(cls, options=None, **values) -> "SelectOptions":
        """From a SelectOptions or a dict, updated by keyword values (None = not given)."""
        base = asdict(options) if isinstance(options, SelectOptions) else dict(options or {})
        base.update({k: v for k, v in values.items() if v is not None})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(base) - known)
        if unknown:
            raise AlsegError(f"unknown select option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**base)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


DEFAULTS = SelectOptions()
