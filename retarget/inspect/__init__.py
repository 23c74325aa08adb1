"""Inspecting a job: every intermediate stage as viewable images, contact sheets and an HTML index.

- :mod:`retarget.inspect.visual`: colour codes (coordinates/UV, DensePose IUV), legend, contact sheets;
- :mod:`retarget.inspect.frames`: ``retarget frames`` (source stages once, stages of chosen frames);
- :mod:`retarget.inspect.html`: ``index.html``.

See ``docs/frames.md``.
"""
