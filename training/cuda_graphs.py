"""CUDA graphs over the decoder layers, for packed micro-batches of one fixed length (train.cuda_graphs).

Why: at a micro-batch of 2 x 1,024 tokens without recompute, a 7B LoRA step needs ~918 ms of GPU
time per 16k tokens (~17,850 tokens/s at 100% busy), but the host launches ~2,000 kernels per
micro-batch and the GPU waits on them: it was 40% busy under the profiler, and 13,000-14,100
tokens/s without it (benches/gpu/NOTES.md, runs 9-10). A CUDA graph replays a layer's kernels with
one launch.

How (`torch.cuda.make_graphed_callables`, one forward and one backward graph per layer, captured in
the order they run, sharing one memory pool):
- **One shape.** Every micro-batch is padding-free (TRL's packing: one row, position ids restart
  per sample). The first layer pads it to `tokens` (micro-batch x max_length) with one more
  "sample" of zeros, whose position ids restart at 0, so it attends to nothing real and nothing
  real attends to it; the last layer cuts the padding off again. Padded tokens have no labels.
- **One mask.** Flex attention reads its block mask from tensors: the graphs were captured with a
  static `BlockMask` whose `mask_mod` reads a static document-id tensor. Before the first layer
  replays, the micro-batch's document ids are copied into that tensor and a block mask built from
  it is copied into the static one's tensors. (With sdpa, a static boolean mask of tokens x
  tokens is rewritten instead.) The base model's own mask (and transformers' host
  sync in `find_packed_sequence_indices`) is skipped: a forward pre-hook hands the layers an
  already "prepared" mask mapping.
- **Dropout.** Inside a graph the fused LoRA branch keeps its dropout mask (1 byte an element)
  instead of replaying the generator's state (training/lora_fused.py): `Generator.get_state` is
  not allowed while capturing. Each replay draws new masks (PyTorch registers the generator with
  the graph and advances its Philox offset per replay).
- **Gradients.** A graph writes each parameter's gradient into the same static tensor at every
  replay; autograd would take that tensor as `.grad` on the first micro-batch of a step and the
  next replay would overwrite it. A hook on each trainable parameter hands autograd a copy on the
  first micro-batch of a step (`.grad` is None). Later micro-batches could accumulate in place
  (`.grad += grad`, read before the next replay writes) without a copy (`COPY_FIRST_GRAD_ONLY`:
  6 of 8 copies a fast-preset step, each a kernel for every LoRA tensor; off until checked and
  measured on a GPU).
- **Anything else runs eagerly:** evaluation, `no_grad`, a micro-batch longer than `tokens`,
  batches with an attention mask. The graphs are captured at the first training forward, under
  the Trainer's own autocast (with its weight cache off, which capture requires).

On a CPU (CI) there are no CUDA graphs: `GraphedLayers(capture=False)` runs the same padding and
static-mask path with the plain layers, which is what tests/test_cuda_graphs.py holds to the
model's own outputs and gradients.
"""
from __future__ import annotations

import logging
import os
import types
from typing import Any, Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

_MASK_TENSORS = ("kv_num_blocks", "kv_indices", "full_kv_num_blocks", "full_kv_indices",
                 "q_num_blocks", "q_indices", "full_q_num_blocks", "full_q_indices")


def document_ids(position_ids: Any, tokens: int) -> Any:
    """(1, tokens) int32 document ids of a padding-free row padded to `tokens`: a new document
    wherever the position id does not follow the previous one (as transformers'
    `find_packed_sequence_indices`), and the padding one more document (its positions restart at 0)."""
    pos = position_ids.reshape(-1)
    pad = tokens - pos.numel()
    if pad:
        pos = torch.cat([pos, torch.arange(pad, device=pos.device, dtype=pos.dtype)])
    step = torch.diff(pos, prepend=pos[:1] - 1)
    return (step != 1).cumsum(0).to(torch.int32).unsqueeze(0)


class _LayerBody(torch.nn.Module):
    """One decoder layer as make_graphed_callables wants it: tensors in, a tensor out, and the
    layer's parameters as this module's (it reads `parameters()` for the gradients). The body is
    not part of the model, so the model's names and state-dict keys do not change. Without a
    capture the bodies themselves run (the CPU path)."""

    def __init__(self, layer: Any, forward: Callable[..., Any], state: "GraphedLayers") -> None:
        super().__init__()
        self.layer = layer
        self._forward = forward
        self._state = state

    def forward(self, hidden: Any, cos: Any, sin: Any) -> Any:
        return self._forward(hidden, attention_mask=self._state.mask, position_ids=None,
                             position_embeddings=(cos, sin))


def unavailable() -> str | None:
    """Why the graphs cannot run in this process, or None when they can."""
    if not torch.cuda.is_available():
        return "there is no CUDA GPU"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # DDP's gradient hooks beside the graphs: not measured
        return "they are not used with several GPUs yet (untested)"
    return None


class GraphedLayers:
    """The decoder layers of one model, run as CUDA graphs of one micro-batch length (module docstring).

    `install()` patches each layer's `forward` (an instance attribute: the model's modules, names
    and state-dict keys stay as they are) and adds a forward pre-hook to the base model. With
    `capture=False` nothing is captured: the same padded, static-mask path runs through the plain
    layers (for CPU tests)."""

    def __init__(self, model: Any, tokens: int, *, capture: bool = True) -> None:
        from .layers import decoder_layers

        self.tokens = int(tokens)
        self.capture = capture
        self.layers = decoder_layers(model)
        if not self.layers:
            raise ValueError("no decoder layers found in the model")
        self.base = _base_model(model, self.layers)
        self.originals = [layer.forward for layer in self.layers]
        self.bodies = [_LayerBody(layer, fwd, self) for layer, fwd in zip(self.layers, self.originals)]
        self.graphed: list[Callable[..., Any]] | None = None
        self.active = False
        self.real = 0  # tokens of the current micro-batch
        self.attn = getattr(model.config, "_attn_implementation", None)
        if self.attn not in ("flex_attention", "sdpa"):
            raise ValueError(f"CUDA graphs over the layers need flex_attention or sdpa, not {self.attn}")
        self.doc: Any = None
        self.mask: Any = None  # flex: a BlockMask; sdpa: a (1, 1, tokens, tokens) boolean mask
        self.cos: Any = None
        self.sin: Any = None
        self.failed = False  # the capture failed: every micro-batch runs the layers as they are
        self.replays = 0  # micro-batches that took the graphed (or, without capture, padded) path
        self.eager = 0  # training micro-batches that could not
        self._handles: list[Any] = []

    # --- set-up ---------------------------------------------------------------------------------

    def install(self) -> "GraphedLayers":
        for i, layer in enumerate(self.layers):
            layer.forward = types.MethodType(_layer_forward(self, i), layer)
        self._handles.append(self.base.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        return self

    def _mask_mod(self):
        doc = self.doc

        def mask_mod(b, h, q, kv):
            return (q >= kv) & (doc[b, q] == doc[b, kv])

        return mask_mod

    def _new_block_mask(self) -> Any:
        from torch.nn.attention.flex_attention import create_block_mask  # only for flex attention

        # compiled on a GPU: the eager one vmaps the mask function in Python, ~1.2 ms of host time a
        # call during which the GPU ran dry (run 11's profile)
        return create_block_mask(self._mask_mod(), 1, None, self.tokens, self.tokens, device=self.doc.device,
                                 _compile=self.doc.is_cuda)

    def _dense_mask(self) -> Any:
        q = torch.arange(self.tokens, device=self.doc.device)
        same = self.doc[0][:, None] == self.doc[0][None, :]
        return ((q[:, None] >= q[None, :]) & same)[None, None]

    def _update_mask(self) -> None:
        """The current `doc` into the static mask the graphs read, in place."""
        if self.attn != "flex_attention":
            self.mask.copy_(self._dense_mask())
            return
        fresh = self._new_block_mask()
        for name in _MASK_TENSORS:
            dst, src = getattr(self.mask, name, None), getattr(fresh, name, None)
            if (dst is None) != (src is None):
                raise RuntimeError(f"flex block mask field {name} appeared or went between micro-batches")
            if dst is not None:
                dst.copy_(src)

    def _prepare_static(self, device: Any, dtype: Any) -> None:
        self.doc = torch.zeros(1, self.tokens, dtype=torch.int32, device=device)
        self.mask = self._new_block_mask() if self.attn == "flex_attention" else self._dense_mask()
        pos = torch.arange(self.tokens, device=device).unsqueeze(0)
        probe = torch.zeros(1, self.tokens, 1, dtype=dtype, device=device)
        cos, sin = self.base.rotary_emb(probe, pos)
        self.cos, self.sin = cos.clone(), sin.clone()

    def _capture(self, dtype: Any) -> None:
        """make_graphed_callables over every layer, under the current autocast with its cache off."""
        bodies = tuple(self.bodies)
        hidden = self.base.config.hidden_size
        dev = self.doc.device
        samples = []
        for i in range(len(bodies)):
            # the first layer's input is the embeddings' output, which needs no gradient in LoRA
            h = torch.randn(1, self.tokens, hidden, dtype=dtype, device=dev, requires_grad=i > 0)
            samples.append((h, self.cos, self.sin))  # shared: replays read them where they are
        auto = torch.is_autocast_enabled("cuda")
        with torch.autocast("cuda", dtype=torch.get_autocast_dtype("cuda"), enabled=auto, cache_enabled=False):
            graphed = torch.cuda.make_graphed_callables(bodies, tuple(samples), num_warmup_iters=2)
        self.graphed = list(graphed)
        for layer in self.layers:  # the gradient copies (module docstring)
            for p in layer.parameters():
                if p.requires_grad:
                    self._handles.append(p.register_hook(_copy_grad(p)))
        log.info("CUDA graphs captured for %d decoder layers at %d tokens a micro-batch", len(bodies), self.tokens)

    # --- each forward ---------------------------------------------------------------------------

    def _pre_hook(self, module: Any, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        self.active = False
        pos = kwargs.get("position_ids")
        ids = kwargs.get("input_ids", args[0] if args else None)
        embeds = kwargs.get("inputs_embeds")
        lead = ids if ids is not None else embeds
        if not (module.training and torch.is_grad_enabled()) or pos is None or lead is None:
            return None
        if kwargs.get("attention_mask") is not None or lead.shape[0] != 1 or pos.shape[-1] > self.tokens \
                or pos.shape[-1] != lead.shape[1]:
            self.eager += 1
            return None
        if self.failed:
            return None
        if self.doc is None:
            dtype = self.base.get_input_embeddings().weight.dtype  # the hidden states' dtype
            self._prepare_static(pos.device, dtype)
            if self.capture:
                try:
                    self._capture(dtype)
                except Exception as e:  # noqa: BLE001 - whatever a capture meets, the run trains on without graphs
                    log.warning("CUDA graphs could not be captured (%s: %s): training without them",
                                type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                    self.failed, self.graphed = True, None
                    return None
        self.active = True
        self.real = int(pos.shape[-1])
        # this micro-batch's documents into the static mask the graphs read
        self.doc.copy_(document_ids(pos, self.tokens))
        self._update_mask()
        kinds = getattr(self.base.config, "layer_types", None) or ["full_attention"]
        kwargs["attention_mask"] = {kind: None for kind in kinds}  # "already prepared": no mask built
        return args, kwargs

    def run(self, i: int, hidden: Any, kwargs: dict) -> Any:
        if i == 0:
            cos, sin = kwargs["position_embeddings"]
            # every layer reads the same static cos/sin (no copy per layer); the padding keeps the
            # static tail, any values do for tokens that attend only to themselves
            self.cos[:, : self.real].copy_(cos)
            self.sin[:, : self.real].copy_(sin)
            if self.real < self.tokens:
                hidden = F.pad(hidden, (0, 0, 0, self.tokens - self.real))
            self.replays += 1
        out = (self.graphed or self.bodies)[i](hidden, self.cos, self.sin)
        if i == len(self.layers) - 1 and self.real < self.tokens:
            out = out[:, : self.real]
        return out

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for layer in self.layers:
            if "forward" in vars(layer):
                del layer.forward
        self.graphed = None


COPY_FIRST_GRAD_ONLY = False
"""Copy a graph's static gradient only when the parameter has no `.grad` yet (module docstring).
Off until `benches/gpu/graphs_check.py` passes with it on a GPU and a call measures it
(`+mod.training.cuda_graphs.COPY_FIRST_GRAD_ONLY=true`): no machine could be started for that in
run 13. tests/test_cuda_graphs.py holds both settings to the sum of the micro-batches on the CPU."""


def _copy_grad(param: Any) -> Callable[[Any], Any]:
    def hook(grad: Any) -> Any:
        # with a .grad, autograd adds in place (AccumulateGrad, first-order backward): nothing
        # keeps the static tensor past this backward
        if COPY_FIRST_GRAD_ONLY and param.grad is not None:
            return grad
        return grad.clone()

    return hook


def _layer_forward(state: GraphedLayers, i: int) -> Callable[..., Any]:
    original = state.originals[i]

    def forward(self: Any, hidden_states: Any, *args: Any, **kwargs: Any) -> Any:
        if not state.active:
            return original(hidden_states, *args, **kwargs)
        return state.run(i, hidden_states, kwargs)

    return forward


def _base_model(model: Any, layers: list[Any]) -> Any:
    """The module that owns the decoder layers and builds their masks (Qwen2Model, LlamaModel)."""
    first = layers[0]
    for mod in model.modules():
        if hasattr(mod, "layers") and hasattr(mod, "rotary_emb") and len(mod.layers) and mod.layers[0] is first:
            return mod
    raise ValueError("no base model with decoder layers and rotary embeddings found")


def graphs_callback(tokens: int):
    """A TrainerCallback that installs `GraphedLayers` on the Trainer's model at train begin (after
    the LoRA fusing callback, which must come first in the list); the capture happens at the first
    training forward. On a machine without CUDA it logs why and does nothing."""
    from transformers import TrainerCallback

    class CudaGraphs(TrainerCallback):
        graphs: GraphedLayers | None = None

        def on_train_begin(self, args, state, control, model=None, **kw):
            if model is None or self.graphs is not None:
                return
            why = unavailable()
            if why:
                log.warning("train.cuda_graphs=true but %s: the layers run as they are", why)
                return
            try:
                self.graphs = GraphedLayers(model, tokens).install()
            except ValueError as e:
                log.warning("train.cuda_graphs=true but %s: the layers run as they are", e)

    return CudaGraphs()
