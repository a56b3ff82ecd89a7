"""The project's PEP 517 build backend: setuptools' own (every hook is ``setuptools.build_meta``'s), without the notice
setuptools prints on every editable install of a project whose packages are not under one source folder ("Editable
installation. Please be careful with folders in your working directory with the same name as your package"): here
``agents/``, ``baselines/`` and ``configs/`` install as ``ddc_env.agents`` etc., which setuptools serves through an
import finder and announces each time. The notice is information, not a problem of this layout; every other
setuptools warning still shows (``tests/test_wheel.py`` checks that a build prints none)."""
from __future__ import annotations

import warnings

from setuptools.build_meta import *  # noqa: F403  (the PEP 517 hooks, unchanged)
from setuptools.warnings import InformationOnly

warnings.filterwarnings("ignore", message="Editable installation", category=InformationOnly)
