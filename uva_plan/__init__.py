"""uva_plan: model-predictive planning with a learned Unified Video Action model."""

from uva_plan import envs  # noqa: F401  (registers the gymnasium environments)

__version__ = "0.1.0"
