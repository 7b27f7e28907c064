"""Errors meant for the user: the CLI prints their message alone (no traceback) and exits 2."""

from bench.config import ConfigError
from bench.registry import RegistryError
from bench.stacks import StackError
from models.weights import WeightsNotFound
from tasks.karpathy import DatasetError

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, RegistryError, WeightsNotFound, DatasetError,
                                                    StackError)
