"""Flickr30k captions on the Karpathy split (Young et al., TACL 2014; split of Karpathy & Fei-Fei 2015).

29,000 training, 1,014 validation and 1,000 test images, five captions each. Image ids are the file stems
(e.g. "1000092795"), as Flickr30k entries carry no numeric id of their own.

Layout under the root (`root` option or $FLICKR30K_ROOT):

    dataset_flickr30k.json            from caption_datasets.zip (Karpathy's NeuralTalk page)
    flickr30k-images/1000092795.jpg   the 31,783 Flickr30k images

The images are distributed by the University of Illinois after a request form (Denotation Graph page);
the archive is usually called flickr30k-images.tar.gz. `bench data prepare --task flickr30k` arranges it;
the benchmark never downloads.
"""

from __future__ import annotations

from tasks.coco import KARPATHY_SPLITS_URL
from tasks.karpathy import PublishedKarpathyTask, Source


class Flickr30kTask(PublishedKarpathyTask):
    """Flickr30k on the Karpathy split (29,000 / 1,014 / 1,000 images).

    Args:
        root: folder holding dataset_flickr30k.json and flickr30k-images/ (default: $FLICKR30K_ROOT).
        split_file, image_root: override the layout's paths (image_root holds the .jpg files).
        split_map, max_images, expected: as for `KarpathyTask`.
    """

    name = "flickr30k"
    env_var = "FLICKR30K_ROOT"
    split_filename = "dataset_flickr30k.json"
    image_subdir = "flickr30k-images"
    version = "karpathy"
    licence = ("captions under the terms accepted on the Illinois request form; images under the Flickr "
               "terms of use of their owners")
    expected_sizes = {"train": 29_000, "val": 1_014, "test": 1_000}
    layout_sources = (
        Source("dataset_flickr30k.json", KARPATHY_SPLITS_URL, "Karpathy split file inside the zip",
               folder=False),
        Source("flickr30k-images", "https://shannon.cs.illinois.edu/DenotationGraph/",
               "request form; usually flickr30k-images.tar.gz, 31,783 images",
               aliases=("flickr30k_images",)),
    )
