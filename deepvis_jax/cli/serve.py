"""`deepvis serve`: a local web app: click a channel, see what drives it.

Serve a local web page: pick the sample photo or upload one, pick a layer, see its activation grid, click a
channel to see its DeconvNet, guided-backprop and gradient projections and its feature visualization (computed
on demand and cached). Images are resized (shorter side) and center-cropped to SxS. Uploads are held in memory
and a temporary folder that is removed on exit.
"""

from __future__ import annotations

import argparse

from deepvis_jax import explorer

from ._common import add_command, at_least, int_arg, construct_args, load_model, model_arch, model_arg, warn, weights_arg


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = add_command(sub, common, __name__, model_arg, weights_arg, construct_args)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only; the app has no "
                   "authentication)")  # fmt: skip
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    int_arg(p, "--size", 224, "S", "images are resized (shorter side, shrunk or enlarged) and center-cropped to "
            "SxS (default: 224)")  # fmt: skip
    p.add_argument("--max-upload", type=float, default=20.0, metavar="MB",
                   help="largest upload accepted, megabytes (default: 20)")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    for flag, v in (("--size", args.size), ("--construct-size", args.construct_size),
                    ("--construct-steps", args.construct_steps)):  # fmt: skip
        at_least(flag, v)
    if not args.max_upload > 0:
        raise ValueError(f"--max-upload must be a positive number of megabytes, got {args.max_upload:g}")
    arch = model_arch(args)
    model, _ = load_model(args)
    ex = explorer.Explorer(model, size=args.size, construct_size=args.construct_size,
                           construct_steps=args.construct_steps)  # fmt: skip
    httpd = explorer.make_server(ex, args.host, args.port, max_upload=int(args.max_upload * 1e6), weights=args.weights)
    host, port = httpd.server_address[:2]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        warn(f"--host {args.host}: the explorer is reachable from other machines; it has no authentication")
    print(f"serving {arch.name} on http://{'[' + host + ']' if ':' in host else host}:{port}/ (Ctrl-C stops)",
          flush=True)  # fmt: skip
    explorer.serve(httpd)
    return 0
