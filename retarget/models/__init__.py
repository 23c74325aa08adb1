"""Neural networks of the method and loading of their official checkpoints."""

from retarget.models.inpainter import Inpainter
from retarget.models.loading import (
    convert_official_inpainter_state,
    convert_official_refiner_state,
    load_official_inpainter,
    load_official_refiner,
)
from retarget.models.refiner import Refiner, SourceFeatures

__all__ = [
    "Inpainter",
    "Refiner",
    "SourceFeatures",
    "convert_official_inpainter_state",
    "convert_official_refiner_state",
    "load_official_inpainter",
    "load_official_refiner",
]
