"""occlusion: dv.occlusion (one jit-compiled program, vmapped chunks) against a plain PyTorch loop, 224 px AlexNet."""

from __future__ import annotations

import numpy as np
import torch

import converters
import deepvis_jax as dv
from deepvis_jax._src.nets import IMAGENET_MEAN, IMAGENET_STD

from ._harness import Row, checked, max_rel, time_jax, time_torch
from ._models import torch_model

LAYER = "conv5"
PATCH = 48
CHUNK = 32


def torch_occlusion(tm, top_index, x01, rows, cols, patch, channel, target, chunk):
    """The same maps by a loop over positions, `chunk` occluded images per torch call (no_grad).

    Returns (feature, probability, top class, the top class's lead over the runner-up) flat over positions
    (row-major), then (feature, probability) for the clean image.
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=x01.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x01.dtype).view(1, 3, 1, 1)
    below, above = tm.features[: top_index + 1], tm.features[top_index + 1 :]
    corners = [(y, x) for y in rows for x in cols] + [None]  # None: the unoccluded image
    feats, probs, tops, leads = [], [], [], []
    with torch.no_grad():
        for s in range(0, len(corners), chunk):
            batch = x01.repeat(len(corners[s : s + chunk]), 1, 1, 1)
            for k, c in enumerate(corners[s : s + chunk]):
                if c is not None:
                    batch[k, :, c[0] : c[0] + patch, c[1] : c[1] + patch] = mean.view(3, 1, 1)
            act = below((batch - mean) / std)
            logits = tm.classifier(torch.flatten(tm.avgpool(above(act)), 1))
            p = torch.softmax(logits, dim=1)
            feats.append(act[:, channel].sum(dim=(1, 2)))
            probs.append(p[:, target])
            tops.append(p.argmax(dim=1))
            top2 = torch.topk(p, 2, dim=1).values
            leads.append(top2[:, 0] - top2[:, 1])
    f, p, t, lead = torch.cat(feats), torch.cat(probs), torch.cat(tops), torch.cat(leads)
    return f[:-1], p[:-1], t[:-1], lead[:-1], (f[-1], p[-1])


def run(quick: bool) -> list[Row]:
    repeats = 2 if quick else 5
    stride = 32 if quick else 16
    tm = torch_model("alexnet")
    model = converters.from_torchvision(tm)
    image = (np.random.default_rng(0).uniform(0, 1, (224, 224, 3)) * 255).astype(np.uint8)
    # occlusion's defaults (strongest feature map, predicted class), fixed here so the timed calls do only the maps
    logits, acts = model.apply(dv.normalize(image[None].astype(np.float32) / 255), collect=True)
    channel, target = int(np.argmax(np.max(acts[LAYER][0], axis=(0, 1)))), int(np.argmax(logits[0]))
    kw = dict(patch=PATCH, stride=stride, layer=LAYER, channel=channel, target=target, chunk=CHUNK)
    first, jax_s, r = time_jax(lambda: dv.occlusion(model, image, **kw), repeats)
    x01 = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None].astype(np.float32) / 255))
    top_index = model.arch.top_index(LAYER)
    torch_s, (f, p, t, lead, base) = time_torch(
        lambda: torch_occlusion(tm, top_index, x01, r.rows, r.cols, PATCH, r.channel, r.target, CHUNK), repeats
    )
    shape = r.feature.shape
    err = max(max_rel(r.feature, f.numpy().reshape(shape)), max_rel(r.probability, p.numpy().reshape(shape)))
    err = max(err, max_rel([r.baseline_feature, r.baseline_probability], [float(base[0]), float(base[1])]))
    check = checked("feature/probability maps", err, 1e-4)
    # the top class may differ only where torch's two most probable classes are a float32 near-tie
    differ = (r.top_class != t.numpy().reshape(shape)) & (lead.numpy().reshape(shape) > 1e-4)
    if differ.any():
        raise AssertionError(f"occlusion: top-class maps differ at {int(differ.sum())} positions; timing is void")
    n = len(r.rows) * len(r.cols)
    name = f"occlusion alexnet {LAYER} 224px p{PATCH} s{stride}"
    return [Row(name, jax_s, torch_s, first - jax_s, check + ", top class equal (but near-ties)",
                {"positions": f"{n} (+1 clean), chunk {CHUNK}"})]  # fmt: skip
