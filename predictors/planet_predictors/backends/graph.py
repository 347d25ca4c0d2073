"""A compiled UNet graph behind the diffusers UNet's call: what the ONNX Runtime and TensorRT backends share.

The pipeline keeps its UNet module (config, dtype, device) and only its ``forward`` is replaced by a
:class:`GraphForward`, which flattens diffusers' call into the graph's named inputs
(:data:`~planet_contracts.engines.UNET_INPUTS`) and wraps the one output back.
"""

from __future__ import annotations

import abc
from typing import Any

import torch

from planet_contracts.engines import UNET_INPUTS


class GraphForward(abc.ABC):
    """``unet.forward`` for a graph; subclasses run the named inputs and return the output."""

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        encoder_hidden_states: torch.Tensor,
        *args: Any,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        return_dict: bool = True,
        **kwargs: Any,
    ) -> Any:
        """What ``UNet2DConditionModel.forward`` returns, computed by the graph."""
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        if added_cond_kwargs is None:
            raise ValueError("SDXL UNet needs text_embeds and time_ids")
        # Graphs take one timestep per sample; the scheduler passes a scalar for the whole batch.
        steps = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(sample.shape[0])
        values = (sample, steps, encoder_hidden_states, added_cond_kwargs["text_embeds"],
                  added_cond_kwargs["time_ids"])  # fmt: skip
        result = self.run(dict(zip(UNET_INPUTS, values, strict=True))).to(sample.device, sample.dtype)
        return UNet2DConditionOutput(sample=result) if return_dict else (result,)

    @abc.abstractmethod
    def run(self, feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        """The graph's output for ``feeds`` (named as ``UNET_INPUTS``; any device and dtype)."""
