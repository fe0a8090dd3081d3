"""`koopscope reproduce`: every figure and table of a preset from one command, skipping what is current.

``stages``: the plan per preset (which analyses/ script or command, its inputs and outputs);
``runner``: content-and-code keys, the manifest, running and skipping stages.
"""

from .runner import reproduce, statuses
from .stages import PRESETS, Layout, Stage, plan

__all__ = ["PRESETS", "Layout", "Stage", "plan", "reproduce", "statuses"]
