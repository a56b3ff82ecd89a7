"""Scorers: how a student spec of a task becomes a metrics record (see :mod:`ddc_env.scoring.base`)."""
from .base import Scorer, done_future, make_record
from .cached import CachedScorer
from .live import LATENCY_MODES, LiveScorer

__all__ = ["LATENCY_MODES", "CachedScorer", "LiveScorer", "Scorer", "done_future", "make_record"]
