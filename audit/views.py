"""The audit package's blueprint; the trail, retention and training pages add their routes to it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("audit", __name__)

from audit import wiring  # noqa: E402,F401  - registrations
from audit.retention import views as retention_views  # noqa: E402,F401  - routes
from audit.trail import views as trail_views  # noqa: E402,F401  - routes
from audit.training import views as training_views  # noqa: E402,F401  - routes
