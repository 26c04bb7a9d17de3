"""Training data: talking videos -> filtered clips with keypoints, region labels and audio (and back)."""

from .dataset import ClipDataset, DatasetError, collate_clips
from .options import FORMAT_VERSION, PrepareError, PrepareOptions
from .pipeline import format_report, prepare_dataset
from .store import check_output_dir

__all__ = [
    "FORMAT_VERSION",
    "ClipDataset",
    "DatasetError",
    "PrepareError",
    "PrepareOptions",
    "check_output_dir",
    "collate_clips",
    "format_report",
    "prepare_dataset",
]
