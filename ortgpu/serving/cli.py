"""``ortgpu serve`` arguments and entry (ortgpu/cli.py only adds the sub-command). Imports no
server library until the command runs, so ``ortgpu --help`` works without the ``serve`` extra."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--http-port", type=int, default=8080)
    p.add_argument("--grpc-port", type=int, default=8081)
    p.add_argument("--no-grpc", action="store_true", help="REST only")
    p.add_argument("--backend", choices=("ortgpu", "onnxruntime"), default="ortgpu",
                   help="library whose InferenceSession runs the models (onnxruntime: for comparison)")
    p.add_argument("--max-queue-size", type=int, default=64,
                   help="requests waiting per model before 503 (config.pbtxt's default_queue_policy overrides)")
    p.add_argument("--no-batching", action="store_true", help="ignore dynamic_batching in config.pbtxt")
    p.add_argument("--max-request-bytes", type=int, default=64 * 1024 * 1024, help="larger bodies get 413")
    p.add_argument("--grace-period", type=float, default=30.0, help="seconds to finish in-flight requests on SIGTERM")
    p.add_argument("--ray", action="store_true", help="run the models as Ray Serve replicas (extra 'serve')")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    p.add_argument("--num-replicas", type=int, default=1, help="Ray Serve replicas per model")


def run(args) -> int:
    try:
        from .server import ServeOptions, serve
    except ImportError as e:
        print(f"ortgpu serve: {e.name} is missing: pip install -e '.[serve]'", file=sys.stderr)
        return 1
    options = ServeOptions(args.repository, host=args.host, http_port=args.http_port, grpc_port=args.grpc_port,
                           enable_grpc=not args.no_grpc, backend=args.backend, max_queue_size=args.max_queue_size,
                           batching=not args.no_batching, max_request_bytes=args.max_request_bytes,
                           grace_period_s=args.grace_period)
    if args.ray:
        from .ray_serve import serve_with_ray
        return serve_with_ray(options, address=args.ray_address, num_replicas=args.num_replicas)
    return serve(options)
