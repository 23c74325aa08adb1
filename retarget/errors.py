"""Exception types that the CLI turns into one-line messages and exit codes.

Library code raises these for problems the user can fix (bad input files, missing weights, ...).
Anything else is a bug and is shown with a traceback.
"""


class RetargetError(Exception):
    """An input or processing problem; the CLI prints ``error: <message>`` and exits with 1."""

    exit_code = 1


class UsageError(RetargetError):
    """A wrong combination of options; the CLI exits with 2."""

    exit_code = 2


class InputError(RetargetError):
    """A file given by the user cannot be used (missing, unreadable, wrong content)."""


class WeightsError(RetargetError):
    """A checkpoint is missing, corrupt or not the file expected for its slot."""


class DensePoseWeightsMissing(WeightsError):
    """No DensePose checkpoint was given and none is installed.

    Attributes:
        model: the manifest name of the checkpoint that would be used (``densepose-r50-fpn-s1x`` ...).
    """

    def __init__(self, message: str, model: str):
        super().__init__(message)
        self.model = model
