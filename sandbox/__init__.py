"""Fakes of the six platform APIs, for tests and for trying Social Queue out.

`create_sandbox()` serves them all in one app; `python -m sandbox` runs it.
"""

from sandbox.app import ALL_FAKES, create_sandbox

__all__ = ["ALL_FAKES", "create_sandbox"]
