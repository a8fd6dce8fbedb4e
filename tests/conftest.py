"""Test-suite settings: hypothesis is deterministic under CI (CI=true) so a run is reproducible, and no
test is judged by its timing (speed is measured by benchmarks/, not by tests)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
