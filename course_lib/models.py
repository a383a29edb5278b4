"""Pretrained CNNs for the labs: loading, named layers, offline weights, attribution-ready copies.

The labs look inside torchvision's ImageNet classifiers. This module knows, for each supported
architecture, which layers the labs call "stages" and which conv block Grad-CAM uses
(``MODEL_SPECS``), loads a model with its weights (``load_model``), pre-fetches weights for an
offline grading machine (``fetch_weights``), and writes *stand-in* weights for tests and demos
that must run without network (``write_standin_weights``; see docs/design.md "Weights and offline
use"). ``prepare_for_attribution`` returns a copy that Captum's DeepLift, Guided Backprop and
full backward hooks accept (docs/design.md, "Environment and known traps").
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse

import torch
import torchvision
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision import models
from torchvision.models import WeightsEnum
from torchvision.models.resnet import BasicBlock, Bottleneck

from course_lib.preprocessing import mark_helper_object

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_SPECS",
    "STANDIN_MARKER",
    "ModelSpec",
    "ModulePathError",
    "UnknownModelError",
    "WeightsUnavailableError",
    "fetch_weights",
    "get_module",
    "get_stages",
    "get_target_layer",
    "load_model",
    "prepare_for_attribution",
    "standin_weights_active",
    "weights_notice",
    "write_standin_weights",
]

STANDIN_MARKER = "STANDIN_WEIGHTS.txt"
"""File name of the marker that ``write_standin_weights`` puts in a stand-in TORCH_HOME."""

DEFAULT_MODEL = "resnet34"
"""The architecture the labs use unless told otherwise."""


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are not in the torch hub cache and could not be downloaded."""


class UnknownModelError(ValueError):
    """A model name that ``MODEL_SPECS`` does not know."""


class ModulePathError(LookupError):
    """A dotted module path that does not lead to a submodule."""


@dataclass(frozen=True)
class ModelSpec:
    """What the course needs to know about one torchvision architecture.

    Attributes:
        name: Key in ``MODEL_SPECS`` and torchvision's name, e.g. ``"resnet34"``.
        builder: torchvision constructor, called as ``builder(weights=..., progress=...)``.
        weights: The ImageNet weights the labs use, e.g. ``ResNet34_Weights.IMAGENET1K_V1``.
        stages: Stage name -> dotted module path (see ``get_module``), in forward order.
        target_layer: Dotted path of the last conv block, the layer Grad-CAM explains.
    """

    name: str
    builder: Callable[..., nn.Module]
    weights: WeightsEnum
    stages: dict[str, str]
    target_layer: str

    @property
    def checkpoint_name(self) -> str:
        """File name of the weights in ``<torch hub dir>/checkpoints``."""
        return _checkpoint_name(self.weights)


_RESNET_STAGES = {f"layer{i}": f"layer{i}" for i in range(1, 5)}
_VIT_B_16_STAGES = {f"block{i}": f"encoder.layers.encoder_layer_{i}" for i in range(12)}

# One entry per architecture.
MODEL_SPECS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "resnet34": ModelSpec(
            name="resnet34",
            builder=models.resnet34,
            weights=models.ResNet34_Weights.IMAGENET1K_V1,
            stages=dict(_RESNET_STAGES),
            target_layer="layer4.2",  # layer4[-1]: ResNet-34's layer4 has 3 BasicBlocks
        ),
        "resnet50": ModelSpec(
            name="resnet50",
            builder=models.resnet50,
            weights=models.ResNet50_Weights.IMAGENET1K_V1,
            stages=dict(_RESNET_STAGES),
            target_layer="layer4.2",  # layer4[-1]: ResNet-50's layer4 has 3 Bottlenecks
        ),
        "vgg16": ModelSpec(
            name="vgg16",
            builder=models.vgg16,
            weights=models.VGG16_Weights.IMAGENET1K_V1,
            stages={f"pool{i + 1}": f"features.{idx}" for i, idx in enumerate((4, 9, 16, 23, 30))},
            target_layer="features.28",  # the last Conv2d (its ReLU is features.29)
        ),
        "vit_b_16": ModelSpec(
            name="vit_b_16",
            builder=models.vit_b_16,
            weights=models.ViT_B_16_Weights.IMAGENET1K_V1,
            stages=dict(_VIT_B_16_STAGES),  # the 12 encoder blocks; tokens: 1 CLS + 14 x 14
            # The last block's first LayerNorm: its 197 x 768 tokens are what Grad-CAM for
            # transformers reshapes to 14 x 14 (pytorch-grad-cam's reshape_transform).
            target_layer="encoder.layers.encoder_layer_11.ln_1",
        ),
    }
)


def _checkpoint_name(weights: WeightsEnum) -> str:
    """File name torch.hub gives the checkpoint of ``weights``: the last part of its URL."""
    return Path(urlparse(weights.url).path).name


def _hub_checkpoint_dir() -> Path:
    """The folder torch.hub downloads checkpoints into (``<TORCH_HOME>/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _get_spec(name: str) -> ModelSpec:
    """Return ``MODEL_SPECS[name]`` or raise UnknownModelError listing the known names."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        known = ", ".join(sorted(MODEL_SPECS))
        raise UnknownModelError(
            f"Unknown model {name!r}; expected one of: {known}. "
            "Add a ModelSpec to course_lib.models.MODEL_SPECS to support another one."
        ) from None


def _resolve_weights(spec: ModelSpec, weights: str) -> WeightsEnum:
    """Turn a weights name such as ``"IMAGENET1K_V1"`` into the torchvision enum member."""
    enum_cls = type(spec.weights)
    try:
        return enum_cls[weights]
    except KeyError:
        known = ", ".join(enum_cls.__members__)
        raise ValueError(
            f"Unknown weights {weights!r} for {spec.name}; expected one of: {known}, "
            "or None for random initialisation."
        ) from None


# --------------------------------------------------------------------------- layers by name


def _child(module: nn.Module, part: str, path: str) -> nn.Module:
    """Return the child of ``module`` called ``part`` (an integer indexes a Sequential)."""
    if part in module._modules and module._modules[part] is not None:
        return module._modules[part]
    indexable = isinstance(module, (nn.Sequential, nn.ModuleList))
    if indexable and re.fullmatch(r"-?\d+", part):
        index = int(part)
        if -len(module) <= index < len(module):
            return module[index]
    children = ", ".join(name for name, _ in module.named_children()) or "(no children)"
    raise ModulePathError(
        f"Module path {path!r}: {type(module).__name__} has no child {part!r}; its children "
        f"are: {children}. Print the model to see its structure."
    )


def get_module(model: nn.Module, path: str) -> nn.Module:
    """Return the submodule at a dotted path, e.g. ``"layer4.-1"`` or ``"features.28"``.

    Args:
        model: The network to search.
        path: Dotted names of children; integer parts index a Sequential/ModuleList and may be
            negative. An empty path returns ``model`` itself.

    Returns:
        The submodule.

    Raises:
        ModulePathError: If a part of the path is missing; the message lists the children that
            exist at that point.
    """
    module = model
    for part in path.split(".") if path else []:
        module = _child(module, part, path)
    return module


def get_stages(model: nn.Module, name: str) -> dict[str, nn.Module]:
    """Return the spec's stages of ``model``, e.g. ``{"layer1": model.layer1, ...}``.

    Args:
        model: A model built for architecture ``name``.
        name: Key of ``MODEL_SPECS``.

    Returns:
        Stage name -> module, in forward order.
    """
    spec = _get_spec(name)
    return {stage: get_module(model, path) for stage, path in spec.stages.items()}


def get_target_layer(model: nn.Module, name: str) -> nn.Module:
    """Return the last conv block of ``model`` (the Grad-CAM layer), e.g. ``model.layer4[-1]``.

    Args:
        model: A model built for architecture ``name``.
        name: Key of ``MODEL_SPECS``.

    Returns:
        The module at ``MODEL_SPECS[name].target_layer``.
    """
    return get_module(model, _get_spec(name).target_layer)


# --------------------------------------------------------------------------- loading weights


def _unavailable(spec: ModelSpec, weights: WeightsEnum, exc: BaseException) -> str:
    """Message for a checkpoint that is neither cached nor downloadable."""
    folder = _hub_checkpoint_dir()
    return (
        f"Weights {weights} for {spec.name} are not available offline: file "
        f"{_checkpoint_name(weights)} is missing from {folder} and downloading it failed "
        f"({exc}). On a machine with network run `python -m course_lib fetch-weights "
        f"{spec.name}`, then copy that machine's torch.hub.get_dir()/checkpoints folder to "
        f"{folder} here (or point TORCH_HOME at a folder holding hub/checkpoints)."
    )


def load_model(
    name: str = DEFAULT_MODEL, weights: str | None = "IMAGENET1K_V1", *, progress: bool = True
) -> nn.Module:
    """Build a torchvision classifier with ImageNet weights, in eval mode.

    Missing weights are downloaded into the torch hub cache (with a progress bar and a hash
    check), exactly as torchvision does. The model expects batch x 3 x H x W images normalised
    with the ImageNet mean and std and returns batch x 1000 logits.

    Args:
        name: Key of ``MODEL_SPECS``, e.g. ``"resnet34"``.
        weights: Name of a member of the architecture's weights enum (``"IMAGENET1K_V1"``,
            ``"DEFAULT"``, ...), or None for torchvision's random initialisation.
        progress: Show a download progress bar.

    Returns:
        The model, in eval mode. It carries ``course_lib.preprocessing.HELPER_MARK`` (Lab 1's
        Task 1 asks students to load ResNet-34 with torchvision themselves, and its tests give
        no points for this one).

    Raises:
        UnknownModelError: If ``name`` is not in ``MODEL_SPECS``.
        ValueError: If ``weights`` is not a member of the weights enum.
        WeightsUnavailableError: If the checkpoint is not cached and cannot be downloaded.
    """
    spec = _get_spec(name)
    if weights is None:
        return mark_helper_object(spec.builder(weights=None).eval(), f"load_model({name!r})")
    member = _resolve_weights(spec, weights)
    try:
        model = _build_with_weights(spec, member, progress)
    except OSError as exc:  # urllib's URLError is an OSError
        raise WeightsUnavailableError(_unavailable(spec, member, exc)) from exc
    return mark_helper_object(model.eval(), f"load_model({name!r})")


def _build_with_weights(spec: ModelSpec, member: WeightsEnum, progress: bool) -> nn.Module:
    """``spec.builder(weights=member)`` without drawing a random initialisation first.

    torchvision builds the model with random weights and then overwrites them with the
    checkpoint: for VGG16's 138 M parameters the random draw takes seconds on a laptop CPU. The
    architecture is built on the meta device instead (no memory, no computation) and the
    checkpoint's tensors become its parameters. Anything that does not fit (a weights member
    whose architecture differs, a tensor left on the meta device) falls back to torchvision's
    own path. The checkpoint is read, downloaded and hash-checked exactly as torchvision does.
    """
    categories = member.meta.get("categories")
    kwargs = {"num_classes": len(categories)} if categories else {}
    with torch.device("meta"):
        model = spec.builder(weights=None, **kwargs)
    state = member.get_state_dict(progress=progress, check_hash=True)
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError:  # keys or shapes differ from the default architecture
        return spec.builder(weights=member, progress=progress)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        return spec.builder(weights=member, progress=progress)
    return model


def fetch_weights(names: Iterable[str] | None = None, *, progress: bool = True) -> list[Path]:
    """Download the labs' checkpoints into the torch hub cache ahead of time.

    Run this on a machine with network, then copy ``torch.hub.get_dir()/checkpoints`` to the
    offline grading machine. Files already cached are not downloaded again.

    Args:
        names: Keys of ``MODEL_SPECS``; None means ``[DEFAULT_MODEL]`` (``"resnet34"``).
        progress: Show download progress bars.

    Returns:
        The cached checkpoint paths, one per name.

    Raises:
        UnknownModelError: If a name is not in ``MODEL_SPECS`` (checked before downloading).
        ValueError: If the TORCH_HOME in force holds stand-in weights.
        WeightsUnavailableError: If a download fails.
    """
    specs = [_get_spec(name) for name in (names if names is not None else [DEFAULT_MODEL])]
    torch_home = Path(torch.hub.get_dir()).parent
    if (torch_home / STANDIN_MARKER).is_file():
        raise ValueError(
            f"TORCH_HOME={torch_home} holds stand-in weights ({STANDIN_MARKER}); real weights "
            "must not be mixed with them. Unset TORCH_HOME (or point it at the real torch "
            "cache) and run fetch-weights again."
        )
    paths = []
    for spec in specs:
        try:
            spec.weights.get_state_dict(progress=progress, check_hash=True)
        except OSError as exc:
            raise WeightsUnavailableError(_unavailable(spec, spec.weights, exc)) from exc
        paths.append(_hub_checkpoint_dir() / spec.checkpoint_name)
    return paths


# --------------------------------------------------------------------------- stand-in weights

_MARKER_LINE = re.compile(r"^checkpoint: (?P<file>\S+) arch=(?P<arch>\S+) seed=(?P<seed>-?\d+)$")

_MARKER_HEADER = """\
STAND-IN WEIGHTS: these are NOT the real ImageNet weights.

Written by course_lib.models.write_standin_weights for tests and demos that run without network:
seeded random weights of the same architectures (BatchNorm affine parameters and statistics
randomised too), saved under the real checkpoints' file names so that torchvision loads them from
this TORCH_HOME. Predictions and attributions computed with them are meaningless.
Delete this folder to get rid of them; never copy its checkpoints into a real torch cache.

torch: {torch}
torchvision: {torchvision}
"""


def _default_torch_homes() -> set[Path]:
    """The real torch caches: ``$XDG_CACHE_HOME/torch`` and ``~/.cache/torch``, resolved."""
    homes = {Path("~/.cache/torch").expanduser()}
    if os.environ.get("XDG_CACHE_HOME"):
        homes.add(Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "torch")
    return {home.resolve() for home in homes}


def _read_marker(torch_home: Path) -> dict[str, tuple[str, int]] | None:
    """Checkpoint file name -> (architecture, seed) listed in the marker; None if no marker."""
    marker = torch_home / STANDIN_MARKER
    if not marker.is_file():
        return None
    matches = (_MARKER_LINE.match(line) for line in marker.read_text("utf-8").splitlines())
    return {m["file"]: (m["arch"], int(m["seed"])) for m in matches if m}


def _write_marker(torch_home: Path, entries: Mapping[str, tuple[str, int]]) -> None:
    """Write the marker: a header, then one line per checkpoint (file -> (arch, seed))."""
    lines = [_MARKER_HEADER.format(torch=torch.__version__, torchvision=torchvision.__version__)]
    lines += [
        f"checkpoint: {file} arch={arch} seed={seed}" for file, (arch, seed) in entries.items()
    ]
    (torch_home / STANDIN_MARKER).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _check_standin_target(torch_home: Path, listed: Mapping[str, tuple[str, int]] | None) -> None:
    """Refuse a real torch cache and any folder holding checkpoints we did not write."""
    if torch_home in _default_torch_homes():
        raise ValueError(
            f"Refusing to write stand-in weights into {torch_home}: it is the default torch "
            "cache, where real pretrained weights belong. Use a folder of its own, e.g. "
            "--torch-home .cache/torch-standin, and point TORCH_HOME at it."
        )
    folder = torch_home / "hub" / "checkpoints"
    foreign = sorted(
        path.name
        for path in (folder.iterdir() if folder.is_dir() else [])
        if path.is_file() and path.name not in (listed or {}) and path.suffix != ".partial"
    )
    if foreign:
        raise ValueError(
            f"Refusing to write stand-in weights into {torch_home}: {folder} already holds "
            f"checkpoints that are not stand-ins ({', '.join(foreign)}), so it looks like a real "
            "torch cache. Choose an empty folder for stand-in weights."
        )


def _calibration_batch(generator: torch.Generator, size: int = 224, batch: int = 8) -> Tensor:
    """Random photo-like images, ImageNet-normalised: batch x 3 x size x size.

    Smooth noise octaves of equal energy (4 x 4, 8 x 8, ... up to 128 x 128 for ``size`` 224:
    the 1/f spectrum of photographs) plus hard-edged blocks, with colour, brightness and
    contrast varying between images, so that the network is calibrated on edges, textures,
    flat and saturated areas alike.
    """
    shape = (batch, 3, size, size)

    def noise(resolution: int, mode: str) -> Tensor:
        grey = torch.randn(batch, 1, resolution, resolution, generator=generator)
        colour = torch.randn(batch, 3, resolution, resolution, generator=generator)
        return nn.functional.interpolate(grey + colour, size=shape[2:], mode=mode)

    images = torch.zeros(shape)
    for octave in range(2, size.bit_length()):
        images += noise(2**octave, "bilinear")
    for resolution in (4, 8, 16):
        images += noise(resolution, "nearest")
    images = images - images.mean(dim=(1, 2, 3), keepdim=True)
    images = images / images.std(dim=(1, 2, 3), keepdim=True)
    contrast = 0.1 + 0.4 * torch.rand(batch, 1, 1, 1, generator=generator)
    brightness = 0.3 + 0.3 * torch.rand(batch, 1, 1, 1, generator=generator)
    pixels = (brightness + contrast * images).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _weighted_layers(model: nn.Module) -> list[nn.Conv2d | nn.Linear]:
    """All convolution and linear layers of ``model``."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@torch.no_grad()
def _calibrate(model: nn.Module, x: Tensor, logit_std: float) -> None:
    """Data-dependent init (LSUV-like): unit-variance layer outputs, matching BN statistics.

    In one forward pass on ``x`` (batch x 3 x H x W), each conv/linear layer is rescaled so
    its output has unit variance, and every BatchNorm records the exact mean and variance of
    its input. The last layer to run (the classifier) is then centred (its bias cancels the
    batch-mean logits, a part shared by every image) and scaled to logits of std
    ``logit_std``. Without this, BatchNorm statistics drawn independently of the data let
    activations grow tenfold per ResNet stage and every image gets the same one-hot softmax.
    Modifies the weights of ``model`` (a scratch model); biases must be zero on entry.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average: the statistics of exactly this batch
    ran: list[nn.Module] = []
    last_output: list[Tensor] = []

    def rescale(module: nn.Module, args: object, output: Tensor) -> Tensor | None:
        if any(module is seen for seen in ran):
            return None  # already rescaled; later calls use the new weight
        ran.append(module)
        scale = output.std().item()
        if scale > 1e-12:
            module.weight.div_(scale)
            output = output / scale
        last_output[:] = [output]
        return output

    handles = [layer.register_forward_hook(rescale) for layer in _weighted_layers(model)]
    model.eval()
    try:
        for norm in norms:
            norm.train()
        model(x)
    finally:
        for handle in handles:
            handle.remove()
        for norm, momentum in zip(norms, momenta, strict=True):
            norm.momentum = momentum
        model.eval()
    if not ran:
        raise ValueError(f"{type(model).__name__} ran no Conv2d or Linear layer to calibrate.")
    classifier = ran[-1]
    classifier.weight.mul_(logit_std)
    if classifier.bias is not None:
        classifier.bias.copy_(-logit_std * last_output[0].mean(dim=0))


def _uniform(like: Tensor, low: float, high: float, generator: torch.Generator) -> Tensor:
    """Tensor shaped like ``like`` drawn from U(low, high)."""
    return low + (high - low) * torch.rand(like.shape, generator=generator)


def _normal(like: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Tensor shaped like ``like`` drawn from N(0, std^2)."""
    return std * torch.randn(like.shape, generator=generator)


@torch.no_grad()
def _randomise_before_calibration(model: nn.Module, generator: torch.Generator) -> None:
    """BatchNorm weight ~ U(0.5, 1.5) and bias ~ N(0, 0.1); conv/linear biases zeroed.

    A conv/linear weight that torchvision initialises to zero (ViT's classifier head) gets
    N(0, 1/fan_in) first: a zero head gives every image the same uniform softmax.
    """
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not module.weight.any():
            fan_in = module.weight[0].numel()
            module.weight.copy_(_normal(module.weight, fan_in**-0.5, generator))
        if isinstance(module, _BatchNorm) and module.affine:
            module.weight.copy_(_uniform(module.weight, 0.5, 1.5, generator))
            module.bias.copy_(_normal(module.bias, 0.1, generator))
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.zero_()  # calibrate weights alone; biases are drawn afterwards


@torch.no_grad()
def _randomise_after_calibration(model: nn.Module, generator: torch.Generator) -> None:
    """Jitter BatchNorm statistics (mean + N(0, 0.1) std, var x U(0.8, 1.25)); add biases."""
    for module in model.modules():
        if isinstance(module, _BatchNorm):
            spread = module.running_var.sqrt()
            module.running_mean.add_(_normal(module.running_mean, 0.1, generator) * spread)
            module.running_var.mul_(_uniform(module.running_var, 0.8, 1.25, generator))
        elif isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
            module.bias.add_(_normal(module.bias, 0.1, generator))


def _standin_state_dict(spec: ModelSpec, seed: int) -> dict[str, Tensor]:
    """A seeded random state dict for ``spec``'s architecture that is not homogeneous.

    Starts from torchvision's random init (seeded); draws BatchNorm weight ~ U(0.5, 1.5) and
    bias ~ N(0, 0.1); calibrates on random photo-like images so activations stay in range and
    the running statistics are those of the data, as after training; then jitters them
    (mean + N(0, 0.1) std, var x U(0.8, 1.25)) and adds N(0, 0.1) to conv/linear biases.
    Statistics drawn independently of the data (e.g. var ~ U(0.5, 1.5)) compound over
    ResNet-34's 36 BatchNorms into logits in the hundreds and a one-hot softmax for any image.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.builder(weights=None)
    generator = torch.Generator().manual_seed(seed)
    _randomise_before_calibration(model, generator)
    _calibrate(model, _calibration_batch(generator), logit_std=4.0)
    _randomise_after_calibration(model, generator)
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()}


def _save_atomically(state: dict[str, Tensor], path: Path) -> None:
    """torch.save to a temporary name, then rename: no half-written checkpoint is ever seen."""
    partial = path.with_name(path.name + ".partial")
    try:
        torch.save(state, partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def write_standin_weights(
    torch_home: str | os.PathLike[str], names: Iterable[str] = (DEFAULT_MODEL,), *, seed: int = 0
) -> list[Path]:
    """Write seeded random weights under the real checkpoint names in a private TORCH_HOME.

    With ``TORCH_HOME=torch_home``, ``load_model(name)`` and torchvision load these files
    without network (torch.hub does not re-check the hash of a cached file). A marker file
    ``STANDIN_WEIGHTS.txt`` in ``torch_home`` says what they are; ``weights_notice()`` turns it
    into a warning. Re-running with the same seed skips files already written.

    Args:
        torch_home: Folder to use as TORCH_HOME, e.g. ``.cache/torch-standin``. Never the real
            torch cache.
        names: Keys of ``MODEL_SPECS``.
        seed: Seed of the random weights.

    Returns:
        Paths of the checkpoints, ``<torch_home>/hub/checkpoints/<checkpoint name>``.

    Raises:
        UnknownModelError: If a name is not in ``MODEL_SPECS``.
        ValueError: If ``torch_home`` is the default torch cache or already holds checkpoints
            that are not stand-ins.
    """
    home = Path(torch_home).expanduser().resolve()
    specs = [_get_spec(name) for name in names]
    listed = _read_marker(home)
    _check_standin_target(home, listed)
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    entries = dict(listed or {})
    paths = []
    for spec in specs:
        path = folder / spec.checkpoint_name
        paths.append(path)
        if path.is_file() and entries.get(path.name) == (spec.name, seed):
            continue  # written before with this seed
        entries[path.name] = (spec.name, seed)
        _write_marker(home, entries)  # marker first: a crash never leaves an unmarked file
        _save_atomically(_standin_state_dict(spec, seed), path)
    if listed is None:
        _write_marker(home, entries)
    return paths


def standin_weights_active() -> bool:
    """True when the TORCH_HOME in force holds the stand-in marker file.

    Returns:
        Whether ``Path(torch.hub.get_dir()).parent / STANDIN_MARKER`` exists.
    """
    return (Path(torch.hub.get_dir()).parent / STANDIN_MARKER).is_file()


def weights_notice() -> str:
    """A one-line warning when stand-in weights are in use, else ``""``.

    Returns:
        The text notebooks print next to predictions.
    """
    if not standin_weights_active():
        return ""
    home = Path(torch.hub.get_dir()).parent
    return (
        f"NOTE: stand-in random weights in use (TORCH_HOME={home}): predictions and "
        "attributions are meaningless; with real ImageNet weights they are not."
    )


# --------------------------------------------------------------------------- attribution


class _AttributionBasicBlock(BasicBlock):
    """A BasicBlock whose two ReLUs are separate modules and whose residual add is not in place."""

    relu1: nn.ReLU
    relu2: nn.ReLU

    def forward(self, x: Tensor) -> Tensor:  # batch x C x H x W -> batch x C' x H' x W'
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + identity)


class _AttributionBottleneck(Bottleneck):
    """A Bottleneck whose three ReLUs are separate modules and whose add is not in place."""

    relu1: nn.ReLU
    relu2: nn.ReLU
    relu3: nn.ReLU

    def forward(self, x: Tensor) -> Tensor:  # batch x C x H x W -> batch x C' x H' x W'
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + identity)


_SPLIT_BLOCKS: dict[type[nn.Module], tuple[type[nn.Module], int]] = {
    BasicBlock: (_AttributionBasicBlock, 2),
    Bottleneck: (_AttributionBottleneck, 3),
}


def _split_relus(block: nn.Module, new_class: type[nn.Module], count: int) -> None:
    """Give ``block`` ``count`` separate ReLU modules in place of its shared ``relu``."""
    block.__class__ = new_class
    del block.relu
    for i in range(1, count + 1):
        setattr(block, f"relu{i}", nn.ReLU(inplace=False))


def prepare_for_attribution(model: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``model`` that Captum's hook-based methods can explain.

    Every ``nn.ReLU`` gets ``inplace=False`` (Guided Backprop and full backward hooks fail on
    in-place ops), and each torchvision ResNet block, which calls one ``relu`` module two or
    three times, gets one ``nn.ReLU`` per use (``relu1``, ``relu2``[, ``relu3``]): DeepLift
    needs every nonlinearity to run exactly once. The copy computes the same function; the
    original model is not modified.

    Args:
        model: Any network, typically a torchvision ResNet.

    Returns:
        The prepared deep copy, in eval mode.
    """
    prepared = copy.deepcopy(model).eval()
    for module in list(prepared.modules()):
        if isinstance(module, nn.ReLU):
            module.inplace = False
        elif type(module) in _SPLIT_BLOCKS:
            _split_relus(module, *_SPLIT_BLOCKS[type(module)])
    return prepared
