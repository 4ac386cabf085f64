"""The op table of graph networks (`nets/graph/ops_*.py`), op by op against torch's ATen op on the same arguments:
every image tensor once as a logical NCHW array and once as an `Img` (stored NHWC), float64, elementwise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from deepvis_jax._src.nets.graph import OPS, Ctx, DType, Img, Perm, logical
from deepvis_jax._src.rules import PLAIN

A = torch.ops.aten
g = torch.Generator().manual_seed(0)


def t(*shape):
    return torch.randn(*shape, generator=g, dtype=torch.float64)


IMG_HW = (7, 6)  # the size of the image tensors below (weights and other 4-D arguments have other sizes)


def img():
    return t(2, 3, *IMG_HW)


# (op name, the aten op, its arguments)
CASES = [
    ("convolution", A.convolution, lambda: (img(), t(4, 3, 3, 2), t(4), [2, 1], [1, 0], [1, 1], False, [0, 0], 1)),
    ("convolution", A.convolution, lambda: (t(2, 4, *IMG_HW), t(4, 1, 3, 3), None, [1, 1], [2, 2], [2, 2], False,
                                            [0, 0], 4)),  # depthwise, dilated  # fmt: skip
    ("convolution", A.convolution, lambda: (img(), t(3, 5, 3, 3), t(5), [2, 2], [1, 1], [1, 1], True, [1, 0], 1)),
    ("convolution", A.convolution, lambda: (t(2, 3, 9), t(4, 3, 3), t(4), [1], [1], [1], False, [0], 1)),  # 1-d
    ("_native_batch_norm_legit_no_training", A._native_batch_norm_legit_no_training,
     lambda: (img(), t(3), t(3), t(3), t(3).abs() + 0.5, 0.1, 1e-3)),
    ("_native_batch_norm_legit_no_training", A._native_batch_norm_legit_no_training,
     lambda: (t(4, 3), t(3), t(3), t(3), t(3).abs() + 0.5, 0.1, 1e-5)),
    ("native_layer_norm", A.native_layer_norm, lambda: (t(2, 5, 6), [6], t(6), t(6), 1e-5)),
    ("native_group_norm", A.native_group_norm, lambda: (t(2, 6, 4, 3), t(6), t(6), 2, 6, 12, 3, 1e-5)),
    ("max_pool2d_with_indices", A.max_pool2d_with_indices, lambda: (img(), [3, 3], [2, 2], [1, 1], [1, 1], True)),
    ("max_pool2d_with_indices", A.max_pool2d_with_indices, lambda: (img(), [2, 3], [2, 1], [0, 1], [1, 1], False)),
    ("avg_pool2d", A.avg_pool2d, lambda: (img(), [3, 3], [2, 2], [1, 1], True, False)),
    ("avg_pool2d", A.avg_pool2d, lambda: (img(), [3, 2], [2, 2], [1, 1], True, True)),
    ("avg_pool2d", A.avg_pool2d, lambda: (img(), [2, 2], [], [0, 0], False, True, 3)),
    ("_adaptive_avg_pool2d", A._adaptive_avg_pool2d, lambda: (img(), [3, 4])),
    ("upsample_nearest2d.vec", A.upsample_nearest2d.vec, lambda: (img(), [11, 13], None)),
    ("upsample_nearest2d.vec", A.upsample_nearest2d.vec, lambda: (img(), None, [2.0, 1.5])),
    ("upsample_bilinear2d.vec", A.upsample_bilinear2d.vec, lambda: (img(), [11, 9], False, None)),
    ("upsample_bilinear2d.vec", A.upsample_bilinear2d.vec, lambda: (img(), [11, 9], True, None)),
    ("constant_pad_nd", A.constant_pad_nd, lambda: (img(), [1, 2, 0, -1], 0.5)),
    ("constant_pad_nd", A.constant_pad_nd, lambda: (t(2, 5), [1, 2])),
    ("add.Tensor", A.add.Tensor, lambda: (img(), t(3, 1, 1)), {"alpha": 2}),
    ("add.Tensor", A.add.Tensor, lambda: (t(5), t(2, 5))),
    ("sub.Tensor", A.sub.Tensor, lambda: (img(), img())),
    ("mul.Tensor", A.mul.Tensor, lambda: (img(), t(2, 3, 1, 1))),
    ("mul.Scalar", A.mul.Scalar, lambda: (img(), 0.5)),
    ("div.Tensor", A.div.Tensor, lambda: (img(), t(1, 3, 1, 1).abs() + 1)),
    ("div.Tensor_mode", A.div.Tensor_mode, lambda: (img() * 5, t(1, 3, 1, 1).abs() + 1), {"rounding_mode": "floor"}),
    ("rsub.Scalar", A.rsub.Scalar, lambda: (img(), 2.0)),
    ("neg", A.neg, lambda: (img(),)),
    ("pow.Tensor_Scalar", A.pow.Tensor_Scalar, lambda: (img().abs(), 1.5)),
    ("maximum", A.maximum, lambda: (img(), img())),
    ("minimum", A.minimum, lambda: (img(), img())),
    ("clamp", A.clamp, lambda: (img(), -0.5, 0.7)),
    ("where.self", A.where.self, lambda: (img() > 0, img(), img())),
    ("relu", A.relu, lambda: (img(),)),
    ("hardtanh", A.hardtanh, lambda: (img() * 4, 0.0, 6.0)),
    ("leaky_relu", A.leaky_relu, lambda: (img(), 0.2)),
    ("elu", A.elu, lambda: (img(), 0.7)),
    ("elu", A.elu, lambda: (img(), 1.6732632423543772, 1.0507009873554805, 1.0)),  # selu
    ("gelu", A.gelu, lambda: (img(),), {"approximate": "tanh"}),
    ("silu", A.silu, lambda: (img(),)),
    ("hardswish", A.hardswish, lambda: (img() * 4,)),
    ("hardsigmoid", A.hardsigmoid, lambda: (img() * 4,)),
    ("sigmoid", A.sigmoid, lambda: (img(),)),
    ("tanh", A.tanh, lambda: (img(),)),
    ("exp", A.exp, lambda: (img(),)),
    ("rsqrt", A.rsqrt, lambda: (img().abs() + 0.1,)),
    ("erf", A.erf, lambda: (img(),)),
    ("mean.dim", A.mean.dim, lambda: (img(), [2, 3], True)),
    ("mean.dim", A.mean.dim, lambda: (img(), [-1, -2])),
    ("mean.dim", A.mean.dim, lambda: (img(), [1])),
    ("sum.dim_IntList", A.sum.dim_IntList, lambda: (img(), [0, 2])),
    ("amax", A.amax, lambda: (img(), [1], True)),
    ("var.correction", A.var.correction, lambda: (t(3, 5), [1]), {"correction": 1, "keepdim": True}),
    ("_softmax", A._softmax, lambda: (t(2, 4, 5), -1, False)),
    ("_log_softmax", A._log_softmax, lambda: (t(2, 4, 5), 1, False)),
    ("addmm", A.addmm, lambda: (t(5), t(3, 4), t(4, 5))),
    ("addmm", A.addmm, lambda: (t(5), t(3, 4), t(4, 5)), {"beta": 0.5, "alpha": 2.0}),
    ("mm", A.mm, lambda: (t(3, 4), t(4, 5))),
    ("bmm", A.bmm, lambda: (t(2, 3, 4), t(2, 4, 5))),
    ("view", A.view, lambda: (img(), [2, -1])),
    ("permute", A.permute, lambda: (img(), [0, 2, 3, 1])),
    ("permute", A.permute, lambda: (img(), [1, 0, 3, 2])),
    ("expand", A.expand, lambda: (t(3, 1), [2, 3, 4])),
    ("unsqueeze", A.unsqueeze, lambda: (t(3, 4), -1)),
    ("squeeze.dims", A.squeeze.dims, lambda: (t(3, 1, 4, 1), [1, 3])),
    ("cat", A.cat, lambda: ([img(), img()[:, :2]], 1)),
    ("cat", A.cat, lambda: ([t(2, 3), t(1, 3)],)),
    ("slice.Tensor", A.slice.Tensor, lambda: (img(), 1, 1, 3)),
    ("slice.Tensor", A.slice.Tensor, lambda: (img(), 3, 0, 9223372036854775807, 2)),
    ("select.int", A.select.int, lambda: (img(), 1, 2)),
    ("split_with_sizes", A.split_with_sizes, lambda: (img(), [1, 2], 1)),
    ("split.Tensor", A.split.Tensor, lambda: (img(), 3, 2)),
    ("index.Tensor", A.index.Tensor, lambda: (t(4, 5), [torch.tensor([0, 2, 2]), None])),
    ("index_select", A.index_select, lambda: (t(4, 5), 1, torch.tensor([4, 0]))),
    ("gather", A.gather, lambda: (t(3, 4), 1, torch.tensor([[0, 1], [3, 3], [2, 0]]))),
    ("as_strided", A.as_strided, lambda: (t(4, 6), [3, 2], [6, 2], 1)),
    ("slice_scatter", A.slice_scatter, lambda: (t(4, 6), t(4, 2), 1, 2, 6, 2)),
    ("select_scatter", A.select_scatter, lambda: (t(4, 6), t(6), 0, 1)),
    ("copy", A.copy, lambda: (t(3, 4), t(4))),
    ("roll", A.roll, lambda: (t(3, 4), [1, -1], [0, 1])),
    ("flip", A.flip, lambda: (t(3, 4), [1])),
    ("fmod.Scalar", A.fmod.Scalar, lambda: (t(3, 4) * 5, 2)),
    ("eq.Scalar", A.eq.Scalar, lambda: (torch.tensor([0.0, 1.0, 0.0]), 0)),
    ("logical_not", A.logical_not, lambda: (torch.tensor([True, False]),)),
    ("any.dim", A.any.dim, lambda: (torch.tensor([[True, False], [False, False]]), 1)),
    ("full_like", A.full_like, lambda: (t(2, 3), 2.5)),
    ("full", A.full, lambda: ([2, 3], 1.5), {"dtype": torch.float64}),
    ("arange.start_step", A.arange.start_step, lambda: (1, 9, 2)),
    ("scalar_tensor", A.scalar_tensor, lambda: (3.0,), {"dtype": torch.float64}),
    ("_to_copy", A._to_copy, lambda: (t(2, 3),), {"dtype": torch.float32}),
]


def _jax(v):
    if isinstance(v, torch.Tensor):
        return jnp.asarray(v.numpy())
    if isinstance(v, (list, tuple)):
        return type(v)(_jax(e) for e in v)
    if isinstance(v, torch.dtype):
        return DType(str(v).removeprefix("torch."))
    return v


def _as_img(v):
    """The same arguments with every image tensor as an `Img` (stored NHWC)."""
    if isinstance(v, (jax.Array, np.ndarray)) and v.ndim == 4 and v.dtype != bool and v.shape[2:] == IMG_HW:
        return Img(jnp.transpose(v, (0, 2, 3, 1)))
    if isinstance(v, list):
        return [_as_img(e) for e in v]
    return v


def _compare(got, want, what):
    if what.startswith(("native_layer_norm", "native_group_norm")):  # eval graphs read only the output
        got, want = got[0], want[0]
    if isinstance(want, (tuple, list)):
        got = list(got) if type(got) in (tuple, list) else [got]
        for gv, wv in zip(got, want, strict=True):  # every output compared, none silently dropped
            if wv is None:  # an output the op does not compute (max-pool indices: graphs read only the values)
                assert gv is None, (what, type(gv))
            elif isinstance(wv, torch.Tensor) and wv.numel() and not (wv.dtype == torch.int64 and wv.ndim == 4):
                _compare(gv, wv, what)
        return
    got = np.asarray(logical(got))
    want = want.numpy()
    assert got.shape == want.shape, (what, got.shape, want.shape)
    rtol = 1e-12
    if want.dtype == np.float32:  # `_to_copy` to float32: the graph keeps the model's float dtype
        want, rtol = want.astype(np.float64), 1e-6
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=what)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_op_equals_aten(case):
    name, aten, make = case[:3]
    kwargs = case[3] if len(case) > 3 else {}
    args = make()
    with torch.no_grad():
        want = aten(*args, **kwargs)
    if name == "max_pool2d_with_indices":
        want = (want[0], None)  # the op returns (values, None): no graph reads torch's flat indices
    with jax.enable_x64(True):
        ctx = Ctx(PLAIN, jnp.float64)
        ctx.node_op = name
        jargs, jkwargs = _jax(args), {k: _jax(v) for k, v in kwargs.items()}
        _compare(OPS[name](ctx, *jargs, **jkwargs), want, f"{name} logical")
        img_args = tuple(_as_img(a) for a in jargs)
        if any(isinstance(a, Img) or (isinstance(a, list) and any(isinstance(e, Img) for e in a)) for a in img_args):
            _compare(OPS[name](ctx, *img_args, **jkwargs), want, f"{name} NHWC")


def test_matrix_products_read_a_swapped_weight_through_dimension_numbers():
    """``permute(w, [1, 0])`` stays lazy (`Perm`), and ``addmm`` contracts it without a transpose in the program."""
    with jax.enable_x64(True):
        ctx = Ctx(PLAIN, jnp.float64)
        w, x, b = _jax(t(5, 4)), _jax(t(3, 4)), _jax(t(5))
        ctx.node_op = "permute"
        wt = OPS["permute"](ctx, w, (1, 0))
        assert isinstance(wt, Perm)
        ctx.node_op = "addmm"
        jaxpr = jax.make_jaxpr(lambda x, w: OPS["addmm"](ctx, b, x, OPS["permute"](ctx, w, (1, 0))))(x, w)
        assert "transpose" not in str(jaxpr)
        np.testing.assert_allclose(OPS["addmm"](ctx, b, x, wt), np.asarray(x) @ np.asarray(w).T + np.asarray(b),
                                   rtol=1e-12)  # fmt: skip


def test_bmm_with_an_expanded_constant_on_either_side_equals_torch():
    """``bmm(x, view(expand(w)))`` and ``bmm(view(expand(w)), z)``, ``w`` plain or a transposed weight (`Perm`),
    against torch's bmm of the expanded tensors (float64, 1e-12); ``expand`` of the image's data stays an array."""
    with jax.enable_x64(True):
        ctx = Ctx(PLAIN, jnp.float64)
        x, z, w, w2 = t(6, 3, 4), t(6, 5, 2), t(4, 5), t(5, 4)
        for tw, jw in ((w, _jax(w)), (w2.T, OPS["permute"](ctx, _jax(w2), (1, 0)))):  # both logically (4, 5)
            lazy = OPS["view"](ctx, OPS["expand"](ctx, jw, (6, 4, 5)), (6, 4, 5))
            assert not hasattr(lazy, "shape")  # not materialized
            np.testing.assert_allclose(OPS["bmm"](ctx, _jax(x), lazy), torch.bmm(x, tw.expand(6, 4, 5)).numpy(),
                                       rtol=1e-12, atol=1e-12)  # fmt: skip
            np.testing.assert_allclose(OPS["bmm"](ctx, lazy, _jax(z)), torch.bmm(tw.expand(6, 4, 5), z).numpy(),
                                       rtol=1e-12, atol=1e-12)  # fmt: skip
        ctx.data = (True,)
        assert hasattr(OPS["expand"](ctx, _jax(w), (6, 4, 5)), "shape")  # the image's data: materialized


def test_a_weight_expanded_for_bmm_is_read_once():
    """torch's matmul of a transposed 3-D input by a weight is ``bmm(x, view(expand(w)))`` (sequence-first
    attention, as ViT's): the expanded weight stays lazy (`Bcast`), so the program holds no (L, K, N) copy of it
    (ViT-B/16 in float64 ran out of memory on those copies: 2.8 GB a layer); values and input gradient equal torch's
    (float64, 1e-12)."""
    import converters
    from reference import as_float64

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.attn = torch.nn.Conv2d(3, 8, 4, 4), torch.nn.MultiheadAttention(8, 2)
            self.fc = torch.nn.Linear(8, 5)

        def forward(self, x):
            tokens = self.conv(x).flatten(2).permute(2, 0, 1)  # (L, N, C), sequence first
            return self.fc(self.attn(tokens, tokens, tokens, need_weights=False)[0].mean(0))

    torch.manual_seed(0)
    tm = Attention().eval()
    exported = torch.export.export(tm, (torch.randn(2, 3, 16, 16),)).run_decompositions()
    ops = [str(n.target) for n in exported.graph.nodes]
    assert "aten.expand.default" in ops and "aten.bmm.default" in ops  # the pattern this test is about
    model = converters.from_torch(tm, torch.randn(2, 3, 16, 16))
    x = np.random.default_rng(0).standard_normal((2, 16, 16, 3))
    with jax.enable_x64(True):
        m64 = as_float64(model)
        program = str(jax.make_jaxpr(lambda v: m64.apply(v))(jnp.asarray(x)))
        assert "[16,8,24]" not in program  # L = 16 tokens, the in-projection weight (8, 24)
        got = np.asarray(m64.apply(jnp.asarray(x)))
        grad = np.asarray(jax.grad(lambda v: jnp.sum(m64.apply(v) ** 2))(jnp.asarray(x)))
    tm64 = tm.double()
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_(True)
    ref = tm64(xt)
    (ref_grad,) = torch.autograd.grad((ref**2).sum(), xt)
    np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grad, ref_grad.numpy().transpose(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
