"""Tests for course_lib.models and the ``python -m course_lib`` command line.

No test reaches the network: an autouse fixture makes every torch.hub download fail, and each
test that needs weights points TORCH_HOME at a temporary folder of stand-in weights.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from captum.attr import DeepLift, GuidedBackprop, IntegratedGradients
from skimage import data
from torch import nn
from torchvision.models import ResNet34_Weights, resnet34
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from course_lib import models
from course_lib.__main__ import main
from course_lib.models import (
    MODEL_SPECS,
    STANDIN_MARKER,
    ModelSpec,
    ModulePathError,
    UnknownModelError,
    WeightsUnavailableError,
    fetch_weights,
    get_module,
    get_stages,
    get_target_layer,
    load_model,
    prepare_for_attribution,
    standin_weights_active,
    weights_notice,
    write_standin_weights,
)

RESNET34_FILE = "resnet34-b627a593.pth"


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every torch.hub download fails as it would offline; the list records attempted URLs."""
    attempts: list[str] = []

    def offline(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True):
        attempts.append(url)
        raise URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return attempts


@pytest.fixture(scope="module")
def standin_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TORCH_HOME holding stand-in ResNet-34 weights (seed 0), written once per module."""
    home = tmp_path_factory.mktemp("torch-standin")
    write_standin_weights(home, ["resnet34"], seed=0)
    return home


@pytest.fixture()
def use_standins(monkeypatch: pytest.MonkeyPatch, standin_home: Path) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(standin_home))
    return standin_home


@pytest.fixture()
def fake_user_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME in a temporary folder, so refusing "~/.cache/torch" never touches the real one."""
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    return home


@pytest.fixture(scope="module")
def random_resnet() -> nn.Module:
    """ResNet-34 with torchvision's random init (identity BatchNorm, bias-free convs)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return resnet34().eval()


def photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-image photograph, resized and ImageNet-normalised: 1 x 3 x size x size."""
    pixels = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255
    pixels = nn.functional.interpolate(pixels[None], size=(size, size), mode="bilinear")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (pixels - mean) / std


def meta_model(name: str) -> nn.Module:
    """The architecture without allocating weights (VGG-16 would take 528 MB)."""
    with torch.device("meta"):
        return MODEL_SPECS[name].builder(weights=None)


# --------------------------------------------------------------------------- specs and paths


def test_specs_cover_the_course_architectures() -> None:
    assert set(MODEL_SPECS) >= {"resnet34", "resnet50", "vgg16", "vit_b_16"}
    for name, spec in MODEL_SPECS.items():
        assert spec.name == name
        assert spec.weights.url.endswith(spec.checkpoint_name)
    assert MODEL_SPECS["resnet34"].checkpoint_name == RESNET34_FILE
    assert MODEL_SPECS["resnet50"].checkpoint_name == "resnet50-0676ba61.pth"
    assert MODEL_SPECS["vgg16"].checkpoint_name == "vgg16-397923af.pth"
    assert MODEL_SPECS["vit_b_16"].checkpoint_name == "vit_b_16-c867db91.pth"


@pytest.mark.parametrize(("name", "block"), [("resnet34", BasicBlock), ("resnet50", Bottleneck)])
def test_resnet_stages_and_target_layer(name: str, block: type[nn.Module]) -> None:
    model = meta_model(name)
    stages = get_stages(model, name)
    assert list(stages) == ["layer1", "layer2", "layer3", "layer4"]
    assert all(stages[f"layer{i}"] is getattr(model, f"layer{i}") for i in range(1, 5))
    target = get_target_layer(model, name)
    assert target is model.layer4[-1]
    assert type(target) is block


def test_vgg16_stages_are_the_pools_and_target_is_the_last_conv() -> None:
    model = meta_model("vgg16")
    stages = get_stages(model, "vgg16")
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert list(stages) == ["pool1", "pool2", "pool3", "pool4", "pool5"]
    assert [id(m) for m in stages.values()] == [id(m) for m in pools]
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert get_target_layer(model, "vgg16") is convs[-1]


def test_vit_b_16_stages_are_the_encoder_blocks() -> None:
    model = meta_model("vit_b_16")
    stages = get_stages(model, "vit_b_16")
    assert list(stages) == [f"block{i}" for i in range(12)]
    assert [id(m) for m in stages.values()] == [id(m) for m in model.encoder.layers]
    assert get_target_layer(model, "vit_b_16") is model.encoder.layers[-1].ln_1


def test_standin_recipe_replaces_zero_initialised_weights() -> None:
    # torchvision's ViT starts with an all-zero classifier head: every image would get the same
    # uniform softmax, so the stand-in recipe draws it like any other layer.
    head = nn.Linear(64, 10)
    nn.init.zeros_(head.weight)
    kept = nn.Linear(64, 10)
    before = kept.weight.detach().clone()
    generator = torch.Generator().manual_seed(0)
    models._randomise_before_calibration(nn.Sequential(head, kept), generator)
    drawn = head.weight.detach()
    assert drawn.any() and 0.08 < float(drawn.std()) < 0.17  # ~ 1/sqrt(64) = 0.125
    assert torch.equal(kept.weight, before)
    assert not head.bias.any() and not kept.bias.any()


def test_model_spec_is_frozen() -> None:
    spec = MODEL_SPECS["resnet34"]
    assert isinstance(spec, ModelSpec)
    with pytest.raises(AttributeError):
        spec.target_layer = "layer3"  # type: ignore[misc]
    with pytest.raises(TypeError):
        MODEL_SPECS["mine"] = spec  # type: ignore[index]


def test_get_module_walks_names_and_indices() -> None:
    model = meta_model("resnet34")
    assert get_module(model, "") is model
    assert get_module(model, "layer4.2") is model.layer4[2]
    assert get_module(model, "layer4.-1") is model.layer4[2]
    assert get_module(model, "layer4.-3.conv1") is model.layer4[0].conv1
    assert get_module(model, "layer2.0.downsample.1") is model.layer2[0].downsample[1]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("layer5", "ResNet has no child 'layer5'; its children are: conv1, bn1, relu"),
        ("layer4.3", "Sequential has no child '3'; its children are: 0, 1, 2"),
        ("layer4.-4", "Sequential has no child '-4'"),
        ("fc.weight", r"Linear has no child 'weight'; its children are: \(no children\)"),
    ],
)
def test_get_module_errors_list_the_children(path: str, message: str) -> None:
    with pytest.raises(ModulePathError, match=message):
        get_module(meta_model("resnet34"), path)


def test_unknown_model_names_list_the_known_ones() -> None:
    expected = "Unknown model 'resnet18'; expected one of: resnet34, resnet50, vgg16, vit_b_16"
    with pytest.raises(UnknownModelError, match=expected):
        load_model("resnet18")
    with pytest.raises(UnknownModelError, match=expected):
        get_stages(nn.Identity(), "resnet18")
    with pytest.raises(UnknownModelError, match=expected):
        write_standin_weights("unused", ["resnet18"])
    assert issubclass(UnknownModelError, ValueError)


# --------------------------------------------------------------------------- load_model


def test_load_model_random_init_needs_no_weights(no_network: list[str]) -> None:
    model = load_model("resnet34", weights=None)
    assert not model.training
    assert model.fc.out_features == 1000
    assert no_network == []


def test_load_model_marks_its_model_as_the_helpers(no_network: list[str]) -> None:
    """Lab 1's Task 1 gives no points for this model: its tests read the mark, which survives
    a copy and prepare_for_attribution, and stays out of the state dict."""
    from course_lib.preprocessing import made_by_course_lib

    model = load_model("resnet34", weights=None)
    assert made_by_course_lib(model) == "load_model('resnet34')"
    assert made_by_course_lib(prepare_for_attribution(model)) == "load_model('resnet34')"
    assert made_by_course_lib(resnet34()) is None
    assert all("course_lib" not in key for key in model.state_dict())


def test_load_model_rejects_unknown_weights() -> None:
    with pytest.raises(ValueError, match="Unknown weights 'IMAGENET1K_V9' for resnet34; expected"):
        load_model("resnet34", "IMAGENET1K_V9")


def test_load_model_without_cache_or_network_says_how_to_prefetch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as info:
        load_model("resnet34", progress=False)
    message = str(info.value)
    assert f"{RESNET34_FILE} is missing from {tmp_path / 'hub' / 'checkpoints'}" in message
    assert "python -m course_lib fetch-weights resnet34" in message
    assert "checkpoints folder" in message
    assert isinstance(info.value.__cause__, URLError)
    assert no_network == [ResNet34_Weights.IMAGENET1K_V1.url]


def test_load_model_reads_cached_standins(use_standins: Path, no_network: list[str]) -> None:
    from course_lib.preprocessing import made_by_course_lib

    model = load_model("resnet34", progress=False)
    assert not model.training
    assert made_by_course_lib(model) == "load_model('resnet34')"
    saved = torch.load(use_standins / "hub" / "checkpoints" / RESNET34_FILE)
    torch.testing.assert_close(model.state_dict(), saved)
    assert no_network == []


def test_torchvision_itself_loads_standins_offline(
    use_standins: Path, no_network: list[str]
) -> None:
    """torch.hub uses a cached file as is: it checks the hash only when it downloads."""
    model = torchvision.models.resnet34(weights=ResNet34_Weights.IMAGENET1K_V1)
    saved = torch.load(use_standins / "hub" / "checkpoints" / RESNET34_FILE)
    torch.testing.assert_close(model.state_dict(), saved)
    assert no_network == []


# --------------------------------------------------------------------------- fetch_weights


def test_fetch_weights_downloads_with_hash_check_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[tuple[str, str | None, bool]] = []

    def fake_download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True):
        calls.append((url, hash_prefix, progress))
        torch.save({"weight": torch.ones(1)}, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / RESNET34_FILE
    assert fetch_weights(progress=False) == [expected]
    assert fetch_weights(["resnet34"], progress=False) == [expected]  # cached: no download
    assert calls == [(ResNet34_Weights.IMAGENET1K_V1.url, "b627a593", False)]
    assert expected.is_file()


def test_fetch_weights_reports_a_failed_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: list[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError, match="vgg16-397923af.pth is missing"):
        fetch_weights(["vgg16"], progress=False)
    with pytest.raises(UnknownModelError):
        fetch_weights(["resnet34", "alexnet"], progress=False)
    assert len(no_network) == 1  # names are checked before anything is downloaded


def test_fetch_weights_refuses_a_standin_torch_home(
    use_standins: Path, no_network: list[str]
) -> None:
    with pytest.raises(ValueError, match="holds stand-in weights"):
        fetch_weights(["vgg16"], progress=False)
    assert no_network == []


# --------------------------------------------------------------------------- stand-in weights


def test_standin_files_and_marker(standin_home: Path) -> None:
    checkpoint = standin_home / "hub" / "checkpoints" / RESNET34_FILE
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == [RESNET34_FILE]
    assert 80e6 < checkpoint.stat().st_size < 90e6  # 21.8 M float32 parameters
    marker = (standin_home / STANDIN_MARKER).read_text()
    assert "NOT the real ImageNet weights" in marker
    assert f"checkpoint: {RESNET34_FILE} arch=resnet34 seed=0" in marker
    assert f"torch: {torch.__version__}" in marker
    assert f"torchvision: {torchvision.__version__}" in marker


def test_standin_batchnorm_is_randomised(standin_home: Path) -> None:
    state = torch.load(standin_home / "hub" / "checkpoints" / RESNET34_FILE)
    weights = torch.cat([v for k, v in state.items() if k.endswith("bn1.weight")])
    biases = torch.cat([v for k, v in state.items() if k.endswith("bn1.bias")])
    means = torch.cat([v for k, v in state.items() if k.endswith("running_mean")])
    variances = torch.cat([v for k, v in state.items() if k.endswith("running_var")])
    assert weights.min() >= 0.5 and weights.max() <= 1.5 and weights.std() > 0.2
    assert 0.05 < biases.std() < 0.2
    assert means.abs().max() > 0.01 and (variances - 1).abs().max() > 0.1
    assert variances.min() > 0


def test_standin_logits_are_finite_and_not_degenerate(use_standins: Path) -> None:
    model = load_model("resnet34", progress=False)
    with torch.no_grad():
        logits = model(torch.cat([photo("chelsea"), photo("coffee")]))
    assert torch.isfinite(logits).all()
    probabilities = logits.softmax(dim=1)
    assert probabilities.max() < 0.9  # not one-hot
    assert (logits.std(dim=1) > 0.3).all()  # not constant
    assert (logits[0] - logits[1]).abs().max() > 0.5  # depends on the image


def test_standins_break_homogeneity_that_a_fresh_init_has(
    use_standins: Path, random_resnet: nn.Module
) -> None:
    """Fresh init: f(2x) - f(0) = 2 (f(x) - f(0)) exactly and IG completeness is exact.

    Stand-ins: neither holds, so a completeness test on them means something.
    """
    standin = load_model("resnet34", progress=False)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    zero = torch.zeros_like(x)
    relative_errors = {}
    for label, model in [("fresh", random_resnet), ("standin", standin)]:
        with torch.no_grad():
            f0, f1, f2 = model(zero), model(x), model(2 * x)
        relative_errors[label] = ((f2 - f0) - 2 * (f1 - f0)).abs().max() / (f1 - f0).abs().max()
        _, delta = IntegratedGradients(model).attribute(
            x, baselines=zero, target=5, n_steps=8, return_convergence_delta=True
        )
        relative_errors[f"{label} IG"] = delta.abs().item() / (f1 - f0)[0, 5].abs().item()
    assert relative_errors["fresh"] < 1e-5 and relative_errors["fresh IG"] < 1e-4
    assert relative_errors["standin"] > 0.1 and relative_errors["standin IG"] > 0.01
    with torch.no_grad():  # a fresh init maps 0 to fc.bias (|b| < 0.05); stand-ins do not
        assert standin(zero).abs().max() > 1


def tiny_spec() -> ModelSpec:
    """A one-block-per-stage ResNet with 10 classes: stand-in generation in about a second."""
    return ModelSpec(
        name="tiny",
        builder=lambda weights=None, progress=True: ResNet(BasicBlock, [1, 1, 1, 1], 10),
        weights=ResNet34_Weights.IMAGENET1K_V1,
        stages={},
        target_layer="layer4.0",
    )


def test_standin_state_dict_is_seeded_and_leaves_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    first = models._standin_state_dict(tiny_spec(), seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.testing.assert_close(models._standin_state_dict(tiny_spec(), seed=3), first)
    other = models._standin_state_dict(tiny_spec(), seed=4)
    assert not torch.equal(other["fc.weight"], first["fc.weight"])


@pytest.fixture()
def cheap_standins(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Replace the generator by a tiny state dict; records (architecture, seed) per call."""
    calls: list[tuple[str, int]] = []

    def fake(spec: ModelSpec, seed: int) -> dict[str, torch.Tensor]:
        calls.append((spec.name, seed))
        return {"seed": torch.tensor(seed)}

    monkeypatch.setattr(models, "_standin_state_dict", fake)
    return calls


def test_write_standin_weights_is_idempotent_per_seed(
    tmp_path: Path, cheap_standins: list[tuple[str, int]]
) -> None:
    folder = tmp_path / "hub" / "checkpoints"
    paths = write_standin_weights(tmp_path, ["resnet34", "resnet50"], seed=0)
    assert paths == [folder / RESNET34_FILE, folder / "resnet50-0676ba61.pth"]
    assert write_standin_weights(tmp_path, ["resnet34"], seed=0) == paths[:1]
    assert cheap_standins == [("resnet34", 0), ("resnet50", 0)]  # second call: nothing new
    write_standin_weights(tmp_path, ["resnet34"], seed=1)
    assert cheap_standins[-1] == ("resnet34", 1)
    assert torch.load(paths[0])["seed"] == 1
    marker = (tmp_path / STANDIN_MARKER).read_text()
    assert f"checkpoint: {RESNET34_FILE} arch=resnet34 seed=1" in marker
    assert "checkpoint: resnet50-0676ba61.pth arch=resnet50 seed=0" in marker
    (folder / RESNET34_FILE).unlink()  # a missing file is written again
    write_standin_weights(tmp_path, ["resnet34"], seed=1)
    assert cheap_standins[-1] == ("resnet34", 1) and len(cheap_standins) == 4


def test_write_standin_weights_refuses_the_default_cache(
    fake_user_home: Path, cheap_standins: list[tuple[str, int]], tmp_path: Path
) -> None:
    default = fake_user_home / ".cache" / "torch"
    with pytest.raises(ValueError, match="it is the default torch cache"):
        write_standin_weights("~/.cache/torch")
    link = tmp_path / "link-to-cache"
    default.mkdir(parents=True)
    link.symlink_to(default)
    with pytest.raises(ValueError, match="it is the default torch cache"):
        write_standin_weights(link)  # a symlink to the cache is the cache
    assert list(default.iterdir()) == []
    assert cheap_standins == []


def test_write_standin_weights_refuses_xdg_cache(
    monkeypatch: pytest.MonkeyPatch, fake_user_home: Path, cheap_standins: list[tuple[str, int]]
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(fake_user_home / "xdg"))
    with pytest.raises(ValueError, match="default torch cache"):
        write_standin_weights(fake_user_home / "xdg" / "torch")
    assert not (fake_user_home / "xdg").exists()


@pytest.mark.parametrize("existing", [RESNET34_FILE, "resnet50-0676ba61.pth"])
def test_write_standin_weights_refuses_a_folder_with_real_checkpoints(
    tmp_path: Path, cheap_standins: list[tuple[str, int]], existing: str
) -> None:
    real = tmp_path / "hub" / "checkpoints" / existing
    real.parent.mkdir(parents=True)
    real.write_bytes(b"real weights")
    with pytest.raises(ValueError, match=f"not stand-ins \\({existing}\\)"):
        write_standin_weights(tmp_path, ["resnet34"])
    assert real.read_bytes() == b"real weights"
    assert not (tmp_path / STANDIN_MARKER).exists()
    assert cheap_standins == []


def test_standin_detection_and_notice(
    monkeypatch: pytest.MonkeyPatch, standin_home: Path, tmp_path: Path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert not standin_weights_active()
    assert weights_notice() == ""
    monkeypatch.setenv("TORCH_HOME", str(standin_home))
    assert standin_weights_active()
    notice = weights_notice()
    assert "stand-in random weights" in notice and "meaningless" in notice
    assert "\n" not in notice


# --------------------------------------------------------------------------- attribution


def relu_calls(model: nn.Module, x: torch.Tensor) -> list[int]:
    """How many times each nn.ReLU of ``model`` runs in one forward pass on ``x``."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    counts = [0] * len(relus)

    def counter(i: int):
        def hook(*_: object) -> None:
            counts[i] += 1

        return hook

    handles = [relu.register_forward_hook(counter(i)) for i, relu in enumerate(relus)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def test_prepare_for_attribution_splits_and_copies(random_resnet: nn.Module) -> None:
    x = torch.randn(1, 3, 64, 64)
    prepared = prepare_for_attribution(random_resnet)
    assert not prepared.training
    assert all(not m.inplace for m in prepared.modules() if isinstance(m, nn.ReLU))
    assert set(relu_calls(prepared, x)) == {1}  # every ReLU runs exactly once
    assert isinstance(prepared.layer1[0], BasicBlock)
    assert not hasattr(prepared.layer1[0], "relu")
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), random_resnet(x), rtol=0, atol=0)
    # the original is untouched
    assert type(random_resnet.layer1[0]) is BasicBlock
    assert random_resnet.layer1[0].relu.inplace
    assert max(relu_calls(random_resnet, x)) == 2
    # preparing twice changes nothing
    again = prepare_for_attribution(prepared)
    with torch.no_grad():
        torch.testing.assert_close(again(x), prepared(x), rtol=0, atol=0)


def test_prepare_for_attribution_splits_bottlenecks() -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    prepared = prepare_for_attribution(model)
    assert set(relu_calls(prepared, x)) == {1}
    assert hasattr(prepared.layer1[0], "relu3")
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), model(x), rtol=0, atol=0)


def test_deeplift_fails_on_a_stock_resnet(random_resnet: nn.Module) -> None:
    """The trap prepare_for_attribution removes: a ReLU module used twice per block."""
    stock = copy.deepcopy(random_resnet)
    with pytest.raises(RuntimeError, match="used more than once"):
        DeepLift(stock).attribute(torch.randn(1, 3, 64, 64), target=0)


def test_captum_hook_methods_run_on_a_prepared_resnet(random_resnet: nn.Module) -> None:
    prepared = prepare_for_attribution(random_resnet)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    attributions, delta = DeepLift(prepared).attribute(x, target=3, return_convergence_delta=True)
    assert attributions.shape == x.shape and torch.isfinite(attributions).all()
    with torch.no_grad():
        change = (prepared(x) - prepared(torch.zeros_like(x)))[0, 3]
    assert delta.abs().item() < 1e-3 * change.abs().item()  # DeepLift sums to f(x) - f(0)
    guided = GuidedBackprop(prepared).attribute(x, target=3)
    assert guided.shape == x.shape and torch.isfinite(guided).all()
    assert guided.abs().sum() > 0


# --------------------------------------------------------------------------- command line


def test_cli_standin_weights(
    tmp_path: Path, cheap_standins: list[tuple[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["standin-weights", "--torch-home", str(tmp_path), "resnet50", "--seed", "3"])
    assert status == 0
    assert cheap_standins == [("resnet50", 3)]
    out = capsys.readouterr().out
    assert str(tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth") in out
    assert f"TORCH_HOME={tmp_path}" in out
    assert "arch=resnet50 seed=3" in (tmp_path / STANDIN_MARKER).read_text()


def test_cli_default_name_is_resnet34(
    tmp_path: Path, cheap_standins: list[tuple[str, int]]
) -> None:
    assert main(["standin-weights", "--torch-home", str(tmp_path)]) == 0
    assert cheap_standins == [("resnet34", 0)]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["standin-weights", "--torch-home", "~/.cache/torch"], "default torch cache"),
        (["standin-weights", "--torch-home", "x", "resnet18"], "Unknown model 'resnet18'"),
        (["fetch-weights", "--quiet"], "python -m course_lib fetch-weights resnet34"),
    ],
)
def test_cli_errors_are_one_line(
    argv: list[str],
    message: str,
    fake_user_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(fake_user_home / "empty-home"))
    monkeypatch.chdir(fake_user_home)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert message in err and "Traceback" not in err


def test_cli_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["standin-weights"])  # --torch-home is required
    assert info.value.code == 2
    assert "--torch-home" in capsys.readouterr().err


def test_python_m_course_lib_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "course_lib", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "fetch-weights" in result.stdout and "standin-weights" in result.stdout


def test_load_model_skips_the_random_init_and_matches_torchvision(
    use_standins: Path, no_network: list[str]
) -> None:
    """The fast path (meta device, checkpoint assigned) gives torchvision's model exactly."""
    torch.manual_seed(0)
    model = load_model("resnet34", progress=False)
    after_fast = torch.randn(3)
    reference = torchvision.models.resnet34(weights=ResNet34_Weights.IMAGENET1K_V1).eval()
    torch.testing.assert_close(model.state_dict(), reference.state_dict())
    assert all(not t.is_meta for t in (*model.parameters(), *model.buffers()))
    assert all(p.requires_grad for p in model.parameters())
    x = photo("astronaut", 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    torch.manual_seed(0)
    assert torch.equal(torch.randn(3), after_fast), "no random numbers drawn for the init"
    assert no_network == []
