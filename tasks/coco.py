"""COCO 2014 captions on the Karpathy split (Karpathy & Fei-Fei, CVPR 2015).

113,287 training images (Karpathy's "train" + "restval"), 5,000 validation and 5,000 test images, about
five captions each, all drawn from COCO's train2014 and val2014 image sets. Image ids are COCO's
`cocoid`, as the official caption evaluation expects.

Layout under the root (`root` option or $COCO_ROOT):

    dataset_coco.json                 from caption_datasets.zip (Karpathy's NeuralTalk page)
    train2014/COCO_train2014_*.jpg    82,783 images (train2014.zip)
    val2014/COCO_val2014_*.jpg        40,504 images (val2014.zip)

`bench data check --task coco` verifies it; `bench data prepare --task coco` arranges downloaded archives
into it. The benchmark never downloads.
"""

from __future__ import annotations

from tasks.karpathy import PublishedKarpathyTask, Source

KARPATHY_SPLITS_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"


class CocoTask(PublishedKarpathyTask):
    """COCO 2014 on the Karpathy split (113,287 / 5,000 / 5,000 images, restval in train).

    Args:
        root: folder holding dataset_coco.json, train2014/ and val2014/ (default: $COCO_ROOT).
        split_file, image_root: override the layout's paths (image_root holds train2014/ and val2014/).
        split_map, max_images, expected: as for `KarpathyTask`.
    """

    name = "coco"
    env_var = "COCO_ROOT"
    split_filename = "dataset_coco.json"
    image_subdir = ""  # entries carry filepath "train2014" / "val2014"
    version = "karpathy-2014"
    licence = ("annotations CC BY 4.0 (COCO Consortium); images under the Flickr terms of use of "
               "their owners")
    expected_sizes = {"train": 113_287, "val": 5_000, "test": 5_000}
    layout_sources = (
        Source("dataset_coco.json", KARPATHY_SPLITS_URL, "Karpathy split file inside the zip", folder=False),
        Source("train2014", "http://images.cocodataset.org/zips/train2014.zip", "82,783 images, ~13 GB"),
        Source("val2014", "http://images.cocodataset.org/zips/val2014.zip", "40,504 images, ~6 GB"),
    )
