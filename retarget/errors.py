"""Exception types that the CLI turns into one-line messages and exit codes.

Library code raises these for problems the user can fix (bad input files, missing weights, ...).
Anything else is a bug and is shown with a traceback.

The classes are those of the standalone DensePose package (:mod:`densepose_adapter.errors`):
``retarget`` depends on ``densepose_adapter``, never the other way round, and sharing one hierarchy
means an error raised inside the DensePose package is caught and reported exactly like one raised by
``retarget`` itself (``except RetargetError`` catches both).
"""

from densepose_adapter.errors import DensePoseError, InputError, UsageError, WeightsError

#: Base of every user-fixable error; the CLI prints ``error: <message>`` and exits with ``exit_code``
#: (1; :class:`UsageError`: 2).
RetargetError = DensePoseError

__all__ = ["DensePoseWeightsMissing", "InputError", "RetargetError", "UsageError", "WeightsError"]


class DensePoseWeightsMissing(WeightsError):
    """No DensePose checkpoint was given and none is installed.

    Attributes:
        model: the manifest name of the checkpoint that would be used (``densepose-r50-fpn-s1x`` ...).
    """

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model
