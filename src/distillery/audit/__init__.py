"""The extraction audit: find the accounts that are distilling from their usage logs.

traffic.py (format) and simulate.py (personas) make traffic; replay.py sends it through the
gateway; passes.py reads the usage store incrementally (features.py, embed.py), scores windows
(mmd.py, prada.py, calibrate.py), groups coordinated accounts (cluster.py) and applies the
policy (policy.py, decisions.py); report.py renders a pass.
"""

from distillery.audit.calibrate import Calibration, WindowScore, calibrate
from distillery.audit.config import AuditConfig
from distillery.audit.passes import Auditor, EntityScore, PassResult

__all__ = ["AuditConfig", "Auditor", "Calibration", "EntityScore", "PassResult", "WindowScore",
           "calibrate"]
