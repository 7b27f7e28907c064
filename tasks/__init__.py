"""Built-in tasks. Entries are lazy: the modules are imported only when a task is built."""

from bench.registry import tasks as _tasks

_tasks.register("shapes", "tasks.shapes:ShapesTask",
                "Procedural coloured-shapes captioning, offline and deterministic; lengths ~5-20 words.")
_tasks.register("karpathy", "tasks.karpathy:KarpathyTask",
                "Any dataset in the Karpathy JSON split format (Flickr8k, ...), configured by path.")
_tasks.register("coco", "tasks.coco:CocoTask",
                "COCO 2014 on the Karpathy split (113,287 / 5,000 / 5,000 images, restval in train).")
_tasks.register("flickr30k", "tasks.flickr30k:Flickr30kTask",
                "Flickr30k on the Karpathy split (29,000 / 1,014 / 1,000 images).")
_tasks.register("nocaps", "tasks.nocaps:NocapsTask",
                "NoCaps validation (4,500 Open Images images), overall and in-/near-/out-domain.")
