"""Parametrized over the registry itself: a newly registered model is tested the moment it exists."""

import pytest
import torch
import torch.nn.functional as F

from cnn_core.core.errors import CnnError
from cnn_core.models import build_model, count_parameters, get_spec, list_models


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_shape(name):
    spec = get_spec(name)
    size = 32 if spec.accepts(32) else spec.default_size
    torch.manual_seed(0)
    model = build_model(name, num_classes=7, in_channels=3, input_size=size)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert next(model.parameters()).dtype == torch.float32 and next(model.parameters()).device.type == "cpu"


@pytest.mark.parametrize("name", list_models())
def test_one_channel_and_default_size(name):
    spec = get_spec(name)
    model = build_model(name, num_classes=3, in_channels=1, input_size=spec.default_size)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, spec.default_size, spec.default_size)).shape == (1, 3)


@pytest.mark.parametrize("name,params", [("lenet5", 62_006), ("resnet18", 11_173_962)])
def test_published_parameter_counts(name, params):
    assert count_parameters(build_model(name, 10, 3, 32)) == params


def test_lenet_wide_is_three_times_wider():
    m = build_model("lenet5_wide", 10, 3, 32)
    convs = [l for l in m.modules() if isinstance(l, torch.nn.Conv2d)]
    fcs = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [18, 48]
    assert [f.out_features for f in fcs[:2]] == [360, 252]


def test_mnist_lenet_takes_28x28():
    m = build_model("lenet5", 10, 1, 28)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_vgg16_has_13_conv_layers_with_batch_norm():
    m = build_model("vgg16", 10, 3, 32)
    assert sum(isinstance(l, torch.nn.Conv2d) for l in m.modules()) == 13
    assert sum(isinstance(l, torch.nn.BatchNorm2d) for l in m.modules()) == 13


def test_alexnet_five_conv_three_fc_at_224_and_32():
    for size in (224, 32):
        m = build_model("alexnet", 10, 3, size)
        assert sum(isinstance(l, torch.nn.Conv2d) for l in m.modules()) == 5
        assert sum(isinstance(l, torch.nn.Linear) for l in m.modules()) == 3


def test_unknown_model_names_the_choices():
    with pytest.raises(CnnError, match="lenet5"):
        get_spec("lenet6")


def test_wrong_input_size_is_refused():
    with pytest.raises(CnnError, match="32/28|32, 28"):
        get_spec("lenet5").pick_size(None, 64)


def test_registry_refuses_duplicates():
    from cnn_core.models import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5", description="again")(lambda **k: None)


def _lenet_reference(model, x):
    """LeNet-5 written the textbook way (conv, ReLU, pool; no channel padding) with the model's own weights."""
    c1, c2 = model.features[0], model.features[3]
    x = F.max_pool2d(F.relu(F.conv2d(x, c1.weight, c1.bias, padding=c1.padding)), 2)
    x = F.max_pool2d(F.relu(F.conv2d(x, c2.weight, c2.bias)), 2)
    return model.classifier(x.flatten(1))


@pytest.mark.parametrize("in_channels,size", [(3, 32), (1, 28)])
def test_lenet_fast_cpu_path_matches_the_textbook_network(in_channels, size):
    """The CPU path pools before ReLU and pads 6 filters to 8: same outputs and the same gradients."""
    torch.manual_seed(0)
    model = build_model("lenet5", 10, in_channels, size).to(memory_format=torch.channels_last)
    x = torch.randn(16, in_channels, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,))
    grads = []
    for forward in (model, lambda t: _lenet_reference(model, t)):
        model.zero_grad()
        out = forward(x)
        F.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    (out_fast, g_fast), (out_ref, g_ref) = grads
    assert torch.allclose(out_fast, out_ref, atol=1e-5)
    assert len(g_fast) == len(g_ref) == 10  # the padding never becomes a parameter
    for a, b in zip(g_fast, g_ref):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 convs, float32 head
        out = model(x)
    assert out.dtype == torch.float32 and torch.allclose(out, out_ref, atol=0.05)
