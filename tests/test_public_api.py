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


def test_core_does_not_import_converters():
    """One-way dependency: `converters` imports deepvis_jax, never the reverse (but for the CLI's convert/check)."""
    import ast
    from pathlib import Path

    root = Path(dv.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if root / "cli" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            assert not any(m.split(".")[0] == "converters" for m in modules), f"{path}:{node.lineno} imports {modules}"
