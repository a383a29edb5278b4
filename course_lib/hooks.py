"""Forward and backward hooks that always clean up after themselves.

Every helper here registers its hooks inside ``try`` and removes them in ``finally``, so a model
is left without stray hooks whether the ``with`` block finishes or raises. ``count_hooks`` lets
tests (and curious students) check that.

Example:
    >>> with capture_activations({"layer4": model.layer4}) as acts:
    ...     logits = model(x)                  # x: batch x 3 x 224 x 224
    >>> acts["layer4"].shape                    # batch x 512 x 7 x 7 for a ResNet-34
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

__all__ = [
    "LayerNotReachedError",
    "StopForward",
    "capture_activations",
    "capture_gradients",
    "count_hooks",
    "forward_until",
    "forward_progress",
    "layer_summary",
]


class StopForward(Exception):
    """Raised by a forward hook to end a forward pass early; carries the layer's output.

    Args:
        output: The output tensor of the layer at which the pass stopped.
    """

    def __init__(self, output: Tensor) -> None:
        super().__init__("forward pass stopped early by course_lib.hooks.forward_until")
        self.output = output


class LayerNotReachedError(ValueError):
    """The layer given to ``forward_until`` is not part of the model or never ran."""


def _as_tensor(name: str, output: Any) -> Tensor:
    """Return ``output`` if it is a tensor, else raise a TypeError naming the module."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"Expected module {name!r} to return a Tensor, got {type(output).__name__}. "
            "Hook a submodule that returns a single tensor instead."
        )
    return output


def _remove_all(handles: list[RemovableHandle]) -> None:
    """Remove every hook handle in ``handles`` and empty the list."""
    for handle in handles:
        handle.remove()
    handles.clear()


@contextmanager
def capture_activations(
    modules: Mapping[str, nn.Module], *, detach: bool = True
) -> Iterator[dict[str, Tensor]]:
    """Record the output of each module on every forward pass inside the ``with`` block.

    Args:
        modules: Name -> module to watch, e.g. ``{"layer1": model.layer1}``.
        detach: If True (default) store ``output.detach().clone()``: no graph kept, and a copy,
            so an in-place operation after the module (VGG16's ``ReLU(inplace=True)`` after
            each conv) cannot overwrite it. If False store the output itself, so one can
            backpropagate from it (an in-place op that follows then changes it too).

    Yields:
        A dict filled during each forward pass: name -> output tensor of that module (for a
        conv stage: batch x channels x height x width). A later pass overwrites earlier
        values, and a module called twice in one pass keeps its last output.

    Raises:
        TypeError: During the forward pass, if a watched module returns something other than
            a tensor.
    """
    captured: dict[str, Tensor] = {}
    handles: list[RemovableHandle] = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _as_tensor(name, output)
            captured[name] = tensor.detach().clone() if detach else tensor

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield captured
    finally:
        _remove_all(handles)


@contextmanager
def capture_gradients(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, Tensor]]:
    """Record d(loss)/d(output) of each module when ``backward`` runs inside the ``with`` block.

    Implementation: a forward hook on each module registers a *tensor* hook on the module's
    output. We do not use ``register_full_backward_hook``: it wraps the module's inputs and
    outputs in an extra autograd function, and backward then fails ("Output 0 of
    BackwardHookFunction is a view and is being modified inplace") whenever the model modifies
    them in place, as a stock torchvision ResNet does to every ``bn1`` output
    (``ReLU(inplace=True)``) and ``bn2`` output (``out += identity``). A tensor hook receives
    the gradient with respect to the output as the module returned it, even if it is modified
    in place afterwards, and works on any module, ``model.layer4[-1]`` (Grad-CAM) included.

    Args:
        modules: Name -> module whose output gradient is wanted.

    Yields:
        A dict filled during ``backward``: name -> gradient, same shape as the module's output
        (batch x channels x height x width for a conv block). Outputs computed without
        gradient tracking (``torch.no_grad()``, or no input requiring grad) get no entry.

    Raises:
        TypeError: During the forward pass, if a watched module returns something other than
            a tensor.
    """
    grads: dict[str, Tensor] = {}
    module_handles: list[RemovableHandle] = []
    tensor_handles: list[RemovableHandle] = []

    def make_forward_hook(name: str):
        def store(grad: Tensor) -> None:
            grads[name] = grad.detach()

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            tensor = _as_tensor(name, output)
            if tensor.requires_grad:
                tensor_handles.append(tensor.register_hook(store))

        return hook

    try:
        for name, module in modules.items():
            module_handles.append(module.register_forward_hook(make_forward_hook(name)))
        yield grads
    finally:
        _remove_all(module_handles)
        _remove_all(tensor_handles)  # a graph kept alive after the block must not write here


def _raise_stop(module: nn.Module, args: Any, output: Any) -> None:
    """Forward hook that ends the pass by raising StopForward with the output."""
    raise StopForward(output)


def forward_until(model: nn.Module, layer: nn.Module, x: Tensor) -> Tensor:
    """Run ``model`` on ``x`` only until ``layer`` has produced its output, and return it.

    Nothing after ``layer`` is computed, which makes this the cheap way to optimise an input
    for one filter's activation. The autograd graph from ``x`` to the output is intact.

    Args:
        model: The network, e.g. a ResNet in eval mode.
        layer: A submodule of ``model`` (for example ``model.layer3``).
        x: Input batch, batch x 3 x height x width for an image model.

    Returns:
        The output of ``layer``, e.g. batch x channels x h x w for a conv stage.

    Raises:
        LayerNotReachedError: If ``layer`` is not a submodule of ``model``, or the forward pass
            finished without calling it.
    """
    if not any(module is layer for module in model.modules()):
        raise LayerNotReachedError(
            f"Expected a submodule of the model, got a {type(layer).__name__} that is not part "
            "of it. Pick the layer from the same model object, e.g. model.layer3."
        )
    handle = layer.register_forward_hook(_raise_stop)
    try:
        model(x)
    except StopForward as stop:
        return stop.output
    finally:
        handle.remove()
    raise LayerNotReachedError(
        f"The {type(layer).__name__} is part of the model but its forward() was never called "
        "(its parent uses its weights directly). Choose a layer that runs, such as its parent."
    )


@contextmanager
def forward_progress(
    model: nn.Module, total: int | None = None, *, desc: str = "forward passes", unit: str = "image"
) -> Iterator[Any]:
    """A progress bar that counts the inputs ``model`` is evaluated on inside the ``with`` block.

    For a slow cell whose loop is not the notebook's own (an attribution library evaluating the
    model on many perturbed or interpolated copies of an image): a forward hook on ``model``
    adds each batch's size (rows of its first tensor argument) to a ``tqdm.auto`` bar. The hook
    is removed when the block ends, also when it raises.

    Args:
        model: The module whose forward passes to count (usually the whole network).
        total: The number of inputs expected, if known (e.g. ``n_steps`` of Integrated
            Gradients); None shows a plain counter. A bar that gets more grows its total.
        desc: The bar's label.
        unit: What one input is called on the bar.

    Yields:
        The tqdm bar (``bar.n`` is the number of inputs counted so far).

    Example:
        >>> with forward_progress(model, total=50, desc="Integrated Gradients"):
        ...     attributions = ig.attribute(x, target=3, n_steps=50, internal_batch_size=25)
    """
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc=desc, unit=unit)

    def count(module: nn.Module, args: Any, output: Any) -> None:
        first = args[0] if isinstance(args, tuple) and args else None
        rows = int(first.shape[0]) if isinstance(first, Tensor) and first.dim() else 1
        if bar.total is not None and bar.n + rows > bar.total:
            bar.total = bar.n + rows  # more passes than expected: stretch, never overflow
        bar.update(rows)

    handle = model.register_forward_hook(count)
    try:
        yield bar
    finally:
        handle.remove()
        bar.close()


def _shape_text(output: Any) -> str:
    """``1 x 64 x 56 x 56`` for a tensor, the shapes of a tuple's tensors, else the type name."""
    if isinstance(output, Tensor):
        return " x ".join(str(size) for size in output.shape) or "scalar"
    if isinstance(output, (tuple, list)):
        return ", ".join(_shape_text(item) for item in output if isinstance(item, Tensor)) or "-"
    return type(output).__name__


def layer_summary(model: nn.Module, x: Tensor, *, depth: int = 1) -> str:
    """A table of ``model``'s modules by name, like Keras' ``model.summary()``.

    One row per submodule down to ``depth`` levels of names (``depth=1``: ``features``,
    ``classifier``; ``depth=2``: also ``features.0``, ``features.1``, ...), in the order the model
    defines them: its name (the path that ``model.get_submodule`` and ``course_lib.models``
    accept), its type, the shape of its output in one forward pass on ``x`` (run without
    gradients; ``-`` for a module that did not run) and its number of parameters. Only shapes are
    kept; the hooks are removed afterwards, also when the pass raises.

    Args:
        model: The network, e.g. VGG16 in eval mode.
        x: An input it accepts, e.g. a ``1 x 3 x 224 x 224`` image batch.
        depth: How many levels of the module tree to list (at least 1).

    Returns:
        The table as text, ending with the model's total number of parameters.

    Example:
        >>> print(layer_summary(vgg, torch.zeros(1, 3, 224, 224), depth=2))
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth!r}.")
    import torch  # the module otherwise needs torch's types only

    rows = [(name, module) for name, module in model.named_modules()
            if name and name.count(".") < depth]
    shapes: dict[str, str] = {}
    handles: list[RemovableHandle] = []

    def make_hook(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            shapes[name] = _shape_text(output)  # a module called twice keeps its last shape

        return hook

    try:
        for name, module in rows:
            handles.append(module.register_forward_hook(make_hook(name)))
        with torch.no_grad():
            model(x)
    finally:
        _remove_all(handles)
    table = [("name", "type", "output shape", "parameters")] + [
        ("  " * name.count(".") + name, type(module).__name__, shapes.get(name, "-"),
         f"{sum(p.numel() for p in module.parameters()):,}") for name, module in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    lines = [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:<{widths[2]}}  {d:>11}"
             for a, b, c, d in table]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"total parameters: {sum(p.numel() for p in model.parameters()):,}")
    return "\n".join(lines)


def count_hooks(model: nn.Module) -> int:
    """Count forward, forward-pre, backward and backward-pre hooks on ``model`` and submodules.

    Args:
        model: Any module.

    Returns:
        The total number of module hooks registered on ``model`` and all its submodules
        (tensor hooks and global hooks are not counted).
    """
    return sum(
        len(module._forward_hooks)
        + len(module._forward_pre_hooks)
        + len(module._backward_hooks)
        + len(module._backward_pre_hooks)
        for module in model.modules()
    )
