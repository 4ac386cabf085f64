"""Each graph layer's own minimum input size (issue 33 item 15): a low layer takes images smaller than what torch
guarantees the whole graph for, and equals torch there; below its own minimum it is refused in one line."""

import jax
import numpy as np
import pytest
import torch

import converters
import deepvis_jax as dv


class Net(torch.nn.Module):
    """conv 3x3 (no padding) -> max-pool 2 -> conv 3x3 -> conv 3x3 -> global mean -> linear: the whole graph needs
    2 * (3 + 2) + 2 = 12 px, conv1 only 3 px."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3)
        self.pool = torch.nn.MaxPool2d(2)
        self.conv2 = torch.nn.Conv2d(4, 5, 3)
        self.conv3 = torch.nn.Conv2d(5, 6, 3)
        self.fc = torch.nn.Linear(6, 7)

    def forward(self, x):
        x = self.conv3(torch.relu(self.conv2(self.pool(torch.relu(self.conv1(x))))))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def model_and_net():
    torch.manual_seed(0)
    net = Net().eval()
    return converters.from_torch(net, torch.zeros(1, 3, 32, 32)), net


def test_each_layer_has_its_own_minimum(model_and_net):
    model, net = model_and_net
    assert model.arch.min_size() >= 12
    assert model.arch.min_size("conv1") == 3
    assert model.arch.min_size("conv2") == 8
    assert model.arch.min_size("conv3") == 12


def test_a_low_layer_runs_below_the_graphs_minimum_and_equals_torch(model_and_net):
    model, net = model_and_net
    x01 = np.random.default_rng(0).random((1, 6, 6, 3))
    x = np.asarray(dv.normalize(x01), np.float32)
    got = np.asarray(dv.forward(model, x, "conv1")[0])
    want = net.conv1(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert dv.visualize(model, x01[0], "conv1", top_k=2).projections.shape[1:] == (6, 6, 3)
    with pytest.raises(ValueError, match="6x6 pixels is too small for layer conv2 of .*at least 8x8 pixels"):
        dv.forward(model, x, "conv2")
    with pytest.raises(ValueError, match="too small"):
        dv.classify(model, x)
