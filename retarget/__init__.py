"""retarget: make the person in one photo perform the motion of a driving video.

Implements "Coordinate-based texture inpainting for pose-guided human image generation"
(Grigorev et al., CVPR 2019).
"""

__version__ = "0.1.0"
