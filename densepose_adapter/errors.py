"""The errors of ``densepose_adapter``: problems the caller can fix, each a one-line message.

Messages name the file or option concerned. ``exit_code`` is what a command line should exit with
(1 input/weights problem, 2 wrong option). Anything else raised from this package is a bug.

``retarget`` builds its own error model on these classes (:mod:`retarget.errors` re-exports them), so
an error raised here is reported by ``retarget``'s command line like one of its own.
"""


class DensePoseError(Exception):
    """An input, option or weights problem; a command line prints ``error: <message>`` and exits 1."""

    exit_code = 1


class UsageError(DensePoseError):
    """A wrong option or combination of options (exit code 2)."""

    exit_code = 2


class InputError(DensePoseError):
    """A file or array given by the caller cannot be used (missing, unreadable, wrong content)."""


class WeightsError(DensePoseError):
    """A checkpoint is missing, corrupt, unsafe or does not match the model config."""


class WeightsNotGiven(WeightsError):
    """A model backend was built without a weights file (and without a ready model).

    This package never looks for installed weights itself: an application that installs them (such as
    ``retarget``) catches this, finds the file for :attr:`depth` and builds the backend again with it.

    Attributes:
        depth: ResNet depth of the requested config (50 or 101).
    """

    def __init__(self, message: str, depth: int):
        super().__init__(message)
        self.depth = depth
