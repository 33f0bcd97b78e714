"""Suite-wide settings: hypothesis draws the same examples on every run (reproducible CI)."""

from hypothesis import settings

settings.register_profile("uva_plan", derandomize=True, deadline=None)
settings.load_profile("uva_plan")
