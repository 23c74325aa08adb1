"""``retarget ui``: a web page (Gradio) that runs the ``retarget video`` job (docs/ui.md).

:mod:`retarget.ui.jobs` turns the page's uploads and settings into a
:class:`retarget.pipeline.job.VideoJob` and runs it with :func:`retarget.pipeline.job.run_video_job`, the
function ``retarget video`` runs (progress reported through :func:`retarget.io.progress.progress_listener`,
a cancel flag checked between frames); it does not import Gradio. :mod:`retarget.ui.app` builds the page
(Gradio, the optional extra ``retarget[ui]``, imported only there) and serves it.
"""

from __future__ import annotations

GRADIO_MISSING = ("the web page needs Gradio, which is not installed; install it with "
                  "`pip install 'retarget[ui]'` (or `make setup`)")


def require_gradio():
    """The ``gradio`` module; a :class:`retarget.errors.UsageError` naming the extra when it is missing."""
    try:
        import gradio
    except ImportError:
        from retarget.errors import UsageError

        raise UsageError(GRADIO_MISSING) from None
    return gradio
