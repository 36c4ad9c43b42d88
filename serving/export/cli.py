"""``python -m serving.export --variant v0 --format onnx|onnx-int8|pytorch|tensorrt|all``.

Exit status: 0 all requested exports ok; 1 an export or its parity check failed (its
``export.json`` says why); 2 a format cannot be built on this machine (one line: TensorRT
without a GPU). With ``--format all`` the formats run in order under one meter session with a
progress bar; ``tensorrt`` is skipped with its one-line reason where it cannot run.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from serving.export.base import FORMATS, ExportUnavailable, ParityError

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2
ALL_ORDER = ("pytorch", "onnx", "onnx-int8", "tensorrt")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m serving.export",
        description="Export artifacts/<variant>/model/ to a serving format under "
        "artifacts/<variant>/<format>/, check parity against PyTorch on test-split inputs and "
        "record size, time and export energy in export.json.",
    )
    p.add_argument("--variant", default=os.environ.get("VARIANT", "v0"), help="variant (artifacts/<variant>/)")
    p.add_argument("--format", default="onnx", choices=[*FORMATS, "all"], help="format to build")
    p.add_argument("--artifacts-dir", default=None, help="artifacts root (default $ARTIFACTS or ./artifacts)")
    p.add_argument("--max-length", type=int, default=512,
                   help="tokens: parity truncation and the TensorRT profile's max sequence")
    p.add_argument("--meter", default=None, help="energy meter spec (default $METER or auto)")
    p.add_argument("--parity-n", type=int, default=64, help="test-split rows used for the parity check")
    p.add_argument("--no-parity", action="store_true", help="skip the parity check (recorded as skipped)")
    p.add_argument("--data", default=None, help="BigVul CSV for the parity inputs (default $DATA or the sample)")
    g = p.add_argument_group("onnx")
    g.add_argument("--onnx-exporter", default="dynamo", choices=["dynamo", "torchscript"],
                   help="torch.onnx exporter (dynamo falls back to torchscript on failure, recorded)")
    g.add_argument("--onnx-opset", type=int, default=18, help="ONNX opset (>= 17)")
    g.add_argument("--onnx-optimize", default="basic", choices=["none", "basic", "extended"],
                   help="ONNX Runtime offline graph optimisation level (basic keeps standard ops)")
    g = p.add_argument_group("onnx-int8")
    g.add_argument("--int8-per-channel", action="store_true", help="per-channel weight scales")
    g = p.add_argument_group("tensorrt")
    g.add_argument("--trt-max-batch", type=int, default=32, help="profile max batch")
    g.add_argument("--trt-opt-batch", type=int, default=8, help="profile opt batch")
    g.add_argument("--trt-opt-length", type=int, default=128, help="profile opt sequence length")
    g.add_argument("--trt-no-fp16", action="store_true", help="build in fp32")
    g.add_argument("--trt-workspace-mb", type=int, default=4096, help="builder workspace (MiB)")
    g.add_argument("--trt-builder", default="auto", choices=["auto", "python", "trtexec"],
                   help="TensorRT Python API or trtexec")
    p.add_argument("--log-level", default="warning", choices=["error", "warning", "info", "debug"])
    return p


def options_for(fmt: str, args: argparse.Namespace) -> dict:
    """CLI flags → the format module's options dict."""
    if fmt == "onnx":
        return {"exporter": args.onnx_exporter, "opset": args.onnx_opset, "optimize": args.onnx_optimize}
    if fmt == "onnx-int8":
        return {"per_channel": bool(args.int8_per_channel)}
    if fmt == "tensorrt":
        return {"max_batch": args.trt_max_batch, "opt_batch": args.trt_opt_batch,
                "opt_length": args.trt_opt_length, "fp16": not args.trt_no_fp16,
                "workspace_mb": args.trt_workspace_mb, "builder": args.trt_builder}
    return {}


def _summary(res) -> str:
    par = res.parity or {}
    energy = res.energy or {}
    gross = energy.get("gross_j")
    return (
        f"{res.format}: {res.status}  {res.out_dir}  {res.size_mb or 0:.2f} MB  "
        f"{res.export_time_s or 0:.1f} s  energy "
        f"{'n/a' if gross is None else f'{gross:.1f} J'} ({res.energy_source}, {res.energy_kind})  "
        f"parity max|Δ|={par.get('max_abs_diff', float('nan')):.2e} "
        f"labels={par.get('label_agreement', float('nan')):.3f}"
    )


def _quiet_libraries() -> None:
    """One progress bar (ours): silence transformers' per-load bars and the exporter's chatter."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass
    for name in ("torch.onnx", "torch.onnx._internal.exporter._registration", "torch._export",
                 "torch.export", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    from serving.export import run_export

    formats = list(ALL_ORDER) if args.format == "all" else [args.format]
    status = 0
    try:
        from energy import open_meters

        meters = open_meters(args.meter)
    except ValueError as e:
        print(f"export: {e}", file=sys.stderr)
        return EXIT_FAILED
    try:
        from tqdm import tqdm

        bar = tqdm(formats, desc=f"export {args.variant}", unit="format", disable=len(formats) == 1)
        for fmt in bar:
            bar.set_postfix_str(fmt)
            try:
                res = run_export(
                    args.variant, fmt, artifacts_dir=args.artifacts_dir, max_length=args.max_length,
                    options=options_for(fmt, args), meters=meters, parity_n=args.parity_n,
                    data_path=args.data, check_parity=not args.no_parity,
                )
                tqdm.write(_summary(res))
            except ExportUnavailable as e:
                tqdm.write(f"{fmt}: unavailable here: {e}", file=sys.stderr)
                # `all` is "everything this machine can build"; asking for it alone is an error.
                if len(formats) == 1:
                    status = EXIT_UNAVAILABLE
            except ParityError as e:
                tqdm.write(f"export {e}", file=sys.stderr)
                status = EXIT_FAILED
            except (FileNotFoundError, ValueError) as e:
                tqdm.write(f"export {fmt}: {e}", file=sys.stderr)
                status = EXIT_FAILED
                if isinstance(e, FileNotFoundError):
                    break  # no trained model: every other format would fail the same way
            except Exception as e:  # recorded in export.json as failed; go on with the others
                tqdm.write(f"export {fmt}: failed: {type(e).__name__}: {e}", file=sys.stderr)
                status = EXIT_FAILED
    finally:
        meters.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
