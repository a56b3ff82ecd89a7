"""ddc-env: reinforcement-learning model compression as a Gymnasium environment.

``import ddc_env`` registers the environment ids (``DDC-ResNet18-CIFAR10``, ...) with Gymnasium.
"""
from . import registration
from .env import DDCEnv, EnvConfig
from .forking import guard_forks
from .registration import ENV_IDS

guard_forks()  # forked workers (gymnasium's AsyncVectorEnv default) would deadlock in torch's thread pool

__version__ = "0.2.0"
__all__ = ["DDCEnv", "ENV_IDS", "EnvConfig", "__version__"]
