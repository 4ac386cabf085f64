"""Attribution: the gradient family in input space and the CAM family at a layer (`methods.py`), the targets
they explain (`targets.py`), and the scores and gradients both are built on (`core.py`)."""
