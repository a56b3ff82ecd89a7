"""The lab: the jobs run on top of the env, the agents and the baselines (searches, baseline runs, benchmarks,
benchmark tables), the run folders they write, and what reads those back (reports, export); the ``ddc`` command
(:mod:`ddc_env.cli`) only parses arguments and calls these.

It sits above the library: ``import ddc_env`` and ``gym.make`` import nothing of it, and it may import
:mod:`ddc_env.agents` and :mod:`ddc_env.baselines` (``tests/test_layering.py`` keeps the arrows one-way). Modules:
:mod:`~ddc_env.lab.runs` (run folders and their logs), :mod:`~ddc_env.lab.config` (YAML configs and overrides),
:mod:`~ddc_env.lab.backend` (where students are evaluated), :mod:`~ddc_env.lab.search`,
:mod:`~ddc_env.lab.baseline`, :mod:`~ddc_env.lab.benchmark`, :mod:`~ddc_env.lab.tables`, :mod:`~ddc_env.lab.report`,
:mod:`~ddc_env.lab.export` and :mod:`~ddc_env.lab.quickstart`.
"""
