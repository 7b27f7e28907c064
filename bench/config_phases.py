"""The per-phase sections of a suite in bench.yaml (`train`, `eval`, `latency`, `errprop`, `diversity`,
`compare`): typed and validated here, assembled into suites by bench/config.py."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainConfig(_Strict):
    """The shared training loop's settings (bench/train.py)."""

    epochs: float | None = Field(1.0, gt=0, description="budget in epochs (None: use minutes only)")
    minutes: float | None = Field(None, gt=0, description="wall-clock budget; whichever ends first")
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup: float = Field(0.1, ge=0, lt=1, description="fraction of steps with linear warm-up")
    schedule: Literal["linear", "constant", "cosine"] = "linear"
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient's global L2 norm to this "
                                    "(MDLM: 1.0; None: off)")
    # EMA of the trainable weights, updated after every optimizer step; the averaged weights are the
    # ones evaluated and saved. It averages over about 1 / (1 - decay) steps and the initial weights
    # keep a share decay ** steps, so the decay must suit the run's length: MDLM's 0.9999 (a window of
    # 10k steps) fits its ~1M steps and a COCO run (60 epochs, ~100k steps); the shapes suite's runs
    # have ~2k steps, where 0.9999 would keep 80% of the initial weights: 0.99 (a window of 100 steps,
    # the initial weights' share below 1e-8) suits them.
    ema: float | None = Field(None, gt=0, lt=1, description="EMA decay of the weights evaluated and saved "
                                                            "(None: off; 0.99 for runs of ~2k steps)")
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    num_workers: int = Field(0, ge=0)
    captions_per_image: int | None = Field(None, ge=1, description="None: every reference is a sample")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: the job's cpus)")

    @model_validator(mode="before")
    @classmethod
    def _former_clip_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and "max_grad_norm" in data:  # the key's former name
            data = dict(data)
            value = data.pop("max_grad_norm")
            if "grad_clip" in data and data["grad_clip"] != value:
                raise ValueError("the gradient clip given twice, as train.max_grad_norm and train.grad_clip: "
                                 "keep grad_clip")
            data["grad_clip"] = value
        return data

    @model_validator(mode="after")
    def _some_budget(self) -> TrainConfig:
        if self.epochs is None and self.minutes is None:
            raise ValueError("set at least one of epochs or minutes")
        return self


class EvalConfig(_Strict):
    batch_size: int = Field(64, ge=1)
    split: Literal["val", "test"] = "test"
    num_workers: int = Field(0, ge=0)
    bootstrap: int = Field(1000, ge=0, description="resamples for 95% intervals (0: none)")
    clip: str | None = Field(None, description="CLIP hub id or directory: CLIPScore and RefCLIPScore (None: off)")
    instances: list[str] = Field(default_factory=list, description="COCO instances_*.json files: CHAIR (none: off)")


class LatencyConfig(_Strict):
    """The latency phase: a fixed image set, warm-up, repeats, batch sizes and the values swept.

    Which knobs are swept is the captioner's declaration (its `cost=True` knobs); `sweep` only chooses
    their values (a knob not named keeps its own `sweep`). `lengths`: forced generated lengths, for
    captioners with the `forced_length` probe. The former `steps` / `num_beams` keys still work: they
    are read as `sweep: {steps: [...]}` / `sweep: {num_beams: [...]}`.
    """

    images: int = Field(16, ge=1, description="the first N readable images of the eval split")
    warmup: int = Field(1, ge=0)
    repeats: int = Field(3, ge=1, description="times every image is timed at batch 1 (median and spread)")
    batch_sizes: list[int] = Field(default_factory=lambda: [1, 8, 32], min_length=1)
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="knob -> values timed at batch 1")
    lengths: list[int] = Field(default_factory=lambda: [8, 10, 12, 14, 16, 18, 20],
                               description="forced generated lengths (tokens), forced_length probe")
    dtype: Literal["fp32", "bf16"] = Field("fp32", description="weights' dtype (bf16: converted, not autocast)")
    stack: Literal["eager", "compiled", "graph"] = Field("eager", description="inference stack (the captioner's "
                                                         "`stacks`)")

    @model_validator(mode="before")
    @classmethod
    def _former_knob_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"steps", "num_beams"} & set(data):
            data = dict(data)
            sweep = dict(data.get("sweep") or {})
            for key in ("steps", "num_beams"):
                if key in data:
                    values = data.pop(key)
                    if key in sweep and sweep[key] != values:
                        raise ValueError(f"{key} given twice, as latency.{key} and latency.sweep.{key}: keep one")
                    sweep[key] = values
            data["sweep"] = sweep
        return data


class ErrpropConfig(_Strict):
    """The errprop phase: how many images, which positions, how many wrong words (the levels an
    injection is made at are the captioner's `injection_levels`)."""

    images: int = Field(100, ge=1, description="the first N readable images of the eval split (probes)")
    positions: int = Field(12, ge=1, description="inject at the first N reference slots (role words) of each image")
    wrong_words: int = Field(3, ge=1, description="wrong words of the slot's role drawn per image and slot")
    seed: int = Field(0, description="seed of the wrong-word draws (the same words for every model)")
    n_resamples: int = Field(1000, ge=1, description="bootstrap resamples of each interval")
    batch_size: int = Field(50, ge=1)


class DiversityConfig(_Strict):
    """The diversity phase: k captions per image by each of the captioner's sampling methods."""

    images: int = Field(100, ge=1, description="the first N readable images of the eval split")
    k: int = Field(5, ge=2, description="captions sampled per image")
    batch_size: int = Field(25, ge=1, description="images per sampling call")
    temperatures: list[float] = Field(default_factory=lambda: [0.5, 1.0, 1.5], min_length=1,
                                      description="sampling temperatures swept by every stochastic method")
    top_p: list[float] = Field(default_factory=lambda: [0.5, 1.0],
                               description="top-p values swept at temperature 1 by methods that have a top-p")

    @field_validator("temperatures", "top_p")
    @classmethod
    def _sampling_values(cls, values: list[float], info: Any) -> list[float]:
        bad = [v for v in values if not (v > 0 and (info.field_name == "temperatures" or v <= 1))]
        if bad:
            accepted = "numbers > 0" if info.field_name == "temperatures" else "numbers in (0, 1]"
            raise ValueError(f"diversity.{info.field_name}: {bad} not accepted; accepted: {accepted}")
        return values


def _primary_metrics() -> list[str]:
    from bench.metrics.quality import TABLE_METRICS  # BLEU-4, METEOR, ROUGE-L, CIDEr, SPICE

    return list(TABLE_METRICS)


class CompareConfig(_Strict):
    """The comparisons after the jobs (bench/paired.py): which tests form the primary family."""

    primary: list[str] = Field(
        default_factory=_primary_metrics, min_length=1,
        description="quality metrics whose cross-paradigm tests are the primary family (Holm-adjusted on "
                    "their own); every other test is secondary")

    @model_validator(mode="after")
    def _known(self) -> CompareConfig:
        from bench.metrics.quality import TABLE_METRICS

        unknown = [m for m in self.primary if m not in TABLE_METRICS]
        if unknown:
            raise ValueError(f"compare.primary: {unknown} are not quality metrics; accepted: {list(TABLE_METRICS)}")
        return self
