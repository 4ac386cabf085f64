"""Run docs/quickstart.ipynb top to bottom with its own parameters (the trained VGG16) and save its outputs in place.

Keeps the notebook small and its diffs quiet: of each picture only the PNG is kept (IPython also attaches a JPEG
copy of every PIL image), and the kernel's execution timestamps are dropped. Needs the dev extra; about ten
minutes on 2 CPU cores, most of it `construct`.

    python docs/notebook_outputs.py
"""

from pathlib import Path

import nbclient
import nbformat

NOTEBOOK = Path(__file__).resolve().parent / "quickstart.ipynb"


def main() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()  # fmt: skip
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                out["data"].pop("image/jpeg", None)
    nbformat.write(nb, NOTEBOOK)
    print(f"wrote {NOTEBOOK} ({NOTEBOOK.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
