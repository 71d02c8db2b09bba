"""Errors the workbench raises on bad input: each message says what is wrong and what to do."""

from __future__ import annotations


class WorkbenchError(ValueError):
    """Base class: a user-facing error (bad name, bad file, bad prompt)."""


class ModelError(WorkbenchError):
    """Unknown model, missing weights, a model the workbench did not load."""


class PromptError(WorkbenchError):
    """Empty prompt sets, prompts longer than the context, names that are not single tokens."""


class HookError(WorkbenchError):
    """A hook name the model does not have."""


class InterventionError(WorkbenchError):
    """An intervention that names heads, positions or sources the model or prompts do not have."""


class InputError(WorkbenchError):
    """A number that is not finite, out of range or of the wrong type; an output path that cannot be written."""


class DeviceError(WorkbenchError):
    """A device or dtype this machine or model cannot use (CUDA asked for where there is none)."""
