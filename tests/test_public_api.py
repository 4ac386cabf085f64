"""Every public name of the contract in DESIGN.md is importable from the top-level packages."""

import converters
import deepvis_jax as dv

CORE = ["load_model", "conv_layers", "normalize", "denormalize", "classify", "Model", "WeightsError",
        "WeightsUnavailableError", "save_model", "layer_name", "layer_channels", "ConvNet", "AlexNet", "VGG16_BN"]


def test_public_names():
    for name in CORE:
        assert hasattr(dv, name), name
    for name in converters.__all__:
        assert hasattr(converters, name), name
    assert {"from_torchvision", "from_state_dict", "load_pth", "save", "compare"} <= set(converters.__all__)


def test_core_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, deepvis_jax as dv; dv.load_model('alexnet'); assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
