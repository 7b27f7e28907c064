"""Inference stacks as settings: the dtype and stack a captioner runs inference under (bench/api.py's
`Captioner` inherits `InferenceStacks`). Light: no torch at import time."""

from __future__ import annotations

from typing import Any, ClassVar, Self

#: Inference stacks (`Captioner.stacks`, `Captioner.dtypes`): how a captioner runs, not what it computes.
#: "eager": plain PyTorch; "compiled": torch.compile of the network passes (autoregressive: a static
#: KV cache too); "graph": the whole decoding loop replayed as one CUDA graph (CUDA only).
STACKS = ("eager", "compiled", "graph")
#: "bf16" converts the weights to bfloat16 (no autocast over float32 weights); sampler state and
#: noise stay float32, so the same noise reaches both dtypes.
DTYPES = ("fp32", "bf16")


class StackError(ValueError):
    """A dtype or inference stack the captioner does not support (the CLI prints it without a traceback)."""


class InferenceStacks:
    """What a captioner declares about its inference stacks, and how it is switched between them."""

    #: the inference stacks (STACKS) and weight dtypes (DTYPES) this captioner can run under.
    stacks: ClassVar[tuple[str, ...]] = ("eager",)
    dtypes: ClassVar[tuple[str, ...]] = ("fp32",)
    #: why a stack of STACKS is not offered, by stack name (recorded as "unsupported" with the reason).
    stack_notes: ClassVar[dict[str, str]] = {}
    #: the stack and dtype in use (`set_stack`); class defaults until one is chosen.
    inference_stack: str = "eager"
    inference_dtype: str = "fp32"

    @classmethod
    def check_stack(cls, dtype: str = "fp32", stack: str = "eager") -> tuple[str, str]:
        """(dtype, stack) when this captioner supports both; else a StackError (a ValueError) naming the
        captioner and what it supports (and, for a stack it declares unsupported, why)."""
        if dtype not in cls.dtypes:
            raise StackError(f"dtype {dtype!r} is not supported by {cls.__name__}; supported: "
                             f"{', '.join(cls.dtypes)} (known dtypes: {', '.join(DTYPES)})")
        if stack not in cls.stacks:
            why = f" ({cls.stack_notes[stack]})" if stack in cls.stack_notes else ""
            raise StackError(f"stack {stack!r} is not supported by {cls.__name__}{why}; supported: "
                             f"{', '.join(cls.stacks)} (known stacks: {', '.join(STACKS)})")
        return dtype, stack

    def set_stack(self, dtype: str = "fp32", stack: str = "eager") -> Self:
        """Run inference under `stack` with weights in `dtype` (validated by `check_stack`); the
        conversion itself is `apply_stack`, a captioner's own. Inference only: train in fp32/eager."""
        self.check_stack(dtype, stack)
        self.apply_stack(dtype, stack)
        self.inference_dtype, self.inference_stack = dtype, stack
        return self

    def apply_stack(self, dtype: str, stack: str) -> None:
        """Convert the weights to `dtype` (default; captioners with compiled paths extend this)."""
        if self.trainable and self.module_ready():
            self.convert_weights(dtype, [self.module])

    _fp32_weights: dict[str, Any] | None = None  # the exact fp32 weights while converted to bf16

    def convert_weights(self, dtype: str, modules: list[Any]) -> None:
        """`modules` (parts of `module`) to bfloat16, or back to the exact float32 weights: a copy of
        them is kept while in bf16, since bf16 -> fp32 would leave every later phase rounded weights."""
        import torch

        if dtype == "bf16":
            if self._fp32_weights is None:
                self._fp32_weights = {k: v.detach().clone() for k, v in self.module.state_dict().items()}
            for m in modules:
                m.to(torch.bfloat16)
        elif self._fp32_weights is not None:
            for m in modules:
                m.to(torch.float32)
            self.module.load_state_dict(self._fp32_weights)
            self._fp32_weights = None

    def stack_record(self) -> dict[str, Any]:
        """What a latency result records about the stack: the one in use and what else was possible."""
        return {"dtype": self.inference_dtype, "stack": self.inference_stack, "stacks": list(self.stacks),
                "dtypes": list(self.dtypes),
                "unsupported": {s: self.stack_notes.get(s, "not implemented") for s in STACKS if s not in self.stacks}}

