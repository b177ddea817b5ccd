"""The ``restore`` command: run, watch, validate, models, info, eval."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .errors import RestoreError

__all__ = ["main", "cli"]


def _console(stderr: bool = False):
    """A rich console at the terminal's width; in pipes and logs lines are never wrapped (``soft_wrap``)."""
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False)
    if not con.is_terminal:
        con = Console(stderr=stderr, highlight=False, soft_wrap=True, width=10_000)
    return con


def _plain_table(con, header: list[str], rows: list[list[str]]) -> None:
    """A table for pipes and files: aligned columns separated by two spaces, one line per row, no box drawing."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for r in [header, *rows]:
        con.print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip(), markup=False)


def _executor_options(f):
    """``--executor``, ``--address``, ``--workers``, ``--gpus-per-worker`` (shared by run and watch)."""
    f = click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=0.0, show_default=True,
                     help="Ray: GPUs per worker (fractions allowed).")(f)
    f = click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Ray: worker actors (default: one per CPU of the cluster).")(f)
    f = click.option("--address", default=None,
                     help="Ray: 'auto' (the cluster `ray start` made this machine part of) or HOST:PORT of its head; "
                          "default: a Ray instance on this machine for this run.")(f)
    f = click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where items run: this machine, or a Ray cluster (pip install -e \".[ray]\"; the input and output "
                          "folders must be shared at the same path on every node).")(f)
    return f


def _check_runnable(pipe, pipeline: Path, device: str | None) -> None:
    """What only a batch needs: a write step (else nothing is saved), and a ``--device`` this machine has.

    Raises:
        PipelineError / RestoreError: one line.
    """
    from .errors import PipelineError

    if not pipe.writes:
        raise PipelineError(f"{pipeline}: steps: no write step, so nothing would be saved (add e.g. - write: {{path: \"{{stem}}_out.png\"}})")
    if device is not None:
        from .tiling import resolve_device

        resolve_device(device)


def _nothing_found(inputs, patterns, recursive: bool, out_dir: Path) -> str:
    """The error for a run that found no input: says when sub-folders hold images and -r would read them."""
    from .pipeline import collect_inputs

    where = ", ".join(map(str, inputs))
    if not recursive:
        try:
            deeper = collect_inputs([p for p in inputs if Path(p).is_dir()], patterns, True, exclude=out_dir)
        except RestoreError:
            deeper = []
        if deeper:
            subs = sorted({f.parent for f in deeper})
            return (f"no input images in {where} itself, but {len(deeper)} in {len(subs)} sub-folder{'s' if len(subs) > 1 else ''} "
                    f"(e.g. {subs[0]}): add -r to read sub-folders")
    pats = f" matching {', '.join(patterns)}" if patterns else ""
    return f"no input images found in {where}{pats}"


def _fail(msg: str, code: int = 2) -> None:
    from rich.markup import escape

    from .text import printable

    _console(stderr=True).print(f"[bold red]error:[/] {escape(printable(msg))}", markup=True, soft_wrap=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log details (tracebacks of unexpected errors).")
@click.version_option(package_name="restore-imaging", prog_name="restore")
def cli(verbose: bool) -> None:
    """Image restoration and HDR: RAW/LDR/EXR through transformer models to EXR/PNG/TIFF."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    # library warnings (Pillow, tifffile ...) and what C libraries print go to the log, shown with -v only:
    # each failed file's own one-line error says what went wrong
    logging.captureWarnings(True)
    for noisy in ("py.warnings", "tifffile", "PIL", "OpenEXR"):  # libraries that log their own view of a bad file
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.CRITICAL)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose outputs already exist.")
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders of input folders.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the pipeline's, auto).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, summary only.")
@click.option("--journal/--no-journal", "use_journal", default=True, show_default=True, help="Record every input in OUTPUT/.restore-journal.sqlite; a rerun resumes (done inputs skipped, interrupted ones retried).")
@click.option("--retry-failed", is_flag=True, help="Retry inputs the journal has as failed (default: report them again without retrying).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Stall limit in seconds: an input is stopped (its worker process killed and restarted) when no tile, "
                   "stage or file read finished for this long. A slow input that keeps making progress is never stopped. "
                   "0 = no limit, run in this process.")
@click.option("--exposure-times", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV of filename,exposure_time_s for brackets whose files carry no EXIF exposure time.")
@_executor_options
def run(pipeline: Path, inputs: tuple[Path, ...], out_dir: Path, overwrite: bool, recursive: bool, device: str | None, quiet: bool, use_journal: bool,
        retry_failed: bool, timeout_s: float, exposure_times: Path | None = None, executor: str = "local", address: str | None = None,
        workers: int | None = None, gpus_per_worker: float = 0.0) -> None:
    """Run PIPELINE over INPUT files and folders, writing into OUTPUT.

    One bad file never stops the others; each output is written to a
    temporary file and renamed; existing outputs are skipped unless
    --overwrite.  With -r, outputs mirror the input folders' sub-folders
    (card/100CANON/IMG_0001.CR2 -> OUTPUT/100CANON/...); a run in which two
    inputs would write one output is refused before anything runs.  A journal in OUTPUT makes a rerun after a crash finish
    the batch without redoing what was done; SIGINT/SIGTERM abandon the
    current input cleanly.  Exit status: 0 all good, 1 some file failed,
    2 usage error, 130 interrupted.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .pipeline import collect_inputs, load_pipeline
    from .text import printable

    con = _console()
    try:
        pipe = load_pipeline(pipeline)
        _check_runnable(pipe, pipeline, device)
        if exposure_times is not None:
            from .pipeline import Pipeline

            spec = pipe.spec.model_copy(update={"input": pipe.spec.input.model_copy(update={"exposure_times": str(exposure_times.resolve())})})
            pipe = Pipeline(spec)
        deep = recursive or pipe.spec.input.recursive
        odd: list = []  # folder entries that are no regular files (FIFOs, devices): named, skipped
        files = collect_inputs(inputs, pipe.spec.input.patterns, deep, exclude=out_dir, skipped=odd)
        if not files:
            _fail(_nothing_found(inputs, pipe.spec.input.patterns, deep, out_dir))
        roots = [p for p in inputs if p.is_dir()]
        if not timeout_s and executor == "local":
            pipe.prepare()  # with a stall limit (or on Ray) the worker processes load the models
    except RestoreError as e:
        _fail(str(e))
    results = []
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=con, disable=quiet or not con.is_terminal, transient=True,
    )
    with progress:
        files_task = progress.add_task("files", total=len(files))
        tiles_task = progress.add_task("tiles", total=None, visible=False)

        def on_start(path, i):
            progress.update(files_task, description=f"{path.name}")
            progress.reset(tiles_task, total=None, visible=False)  # shown once the tiler knows the tile count

        def on_tile(done, total):
            progress.update(tiles_task, completed=done, total=total, description="tiles", visible=True)

        def on_result(r):
            results.append(r)
            progress.advance(files_task)
            if quiet:
                return
            line = f"{r.status:8s} {r.input}"
            if r.status == "failed":  # the path once: the error usually starts with it
                err = r.error or "failed"
                line += f"  ({err.removeprefix(f'{r.input}: ')})"
            elif r.status == "skipped":
                line += f"  ({r.error})" if r.error else ""
            elif r.seconds:
                line += f"  ({r.seconds:.1f} s)"
            con.print(printable(line), markup=False, soft_wrap=True, highlight=False)
            for note in r.notes:  # under the file they belong to
                con.print(printable(f"         {r.input.name}: {note}"), markup=False, soft_wrap=True, highlight=False)

        from .engine import FileResult

        odd_results = [FileResult(p, "skipped", error=why) for p, why in odd]
        for r in odd_results:
            on_result(r)
        try:
            report = pipe.run(
                files, out_dir, roots=roots, overwrite=overwrite, device=device, on_start=on_start, on_result=on_result, tile_progress=on_tile,
                journal=True if use_journal else None, timeout_s=timeout_s or None, retry_failed=retry_failed, handle_signals=True,
                executor=executor, executor_options={"address": address, "workers": workers, "gpus_per_worker": gpus_per_worker},
            )
        except RestoreError as e:
            _fail(str(e))
    report.results[:0] = odd_results
    done, skipped, failed = report.count("done"), report.count("skipped"), report.count("failed")
    why = {}
    for r in report.results:
        if r.status == "skipped":
            reason = (r.error or "skipped").split(" (")[0]
            why[reason] = why.get(reason, 0) + 1
    detail = f" ({', '.join(f'{n} {k}' for k, n in why.items())})" if why else ""
    restarts = f" ({report.worker_restarts} worker restart{'s' if report.worker_restarts != 1 else ''})" if report.worker_restarts else ""
    con.print(printable(f"{pipe.name}: {done} done, {skipped} skipped{detail}, {failed} failed -> {out_dir}{restarts}"), markup=False)
    for r in report.failed:
        con.print(printable(f"  failed: {r.error}"), markup=False, soft_wrap=True)
    if report.interrupted:
        con.print("interrupted: the current input was abandoned cleanly; run the same command again to continue", markup=False)
        sys.exit(130)
    sys.exit(0 if report.ok else 1)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("in_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder (also holds the journal and restore-watch.log).")
@click.option("--once", is_flag=True, help="Process what is there (waiting for files still being written) and exit.")
@click.option("--settle", "settle_s", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Seconds a file's size and mtime must stay unchanged before it is taken.")
@click.option("--rescan", "rescan_s", type=click.FloatRange(min=0.1), default=30.0, show_default=True, help="Seconds between full rescans (safety net for missed events).")
@click.option("--move-done", type=click.Path(file_okay=False, path_type=Path), default=None, help="Move inputs here after success.")
@click.option("--failed", "failed_dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Move inputs that failed for good here, with errors.log.")
@click.option("--retries", type=click.IntRange(min=1), default=3, show_default=True, help="Attempts per input before it fails for good.")
@click.option("--backoff", "backoff_s", type=click.FloatRange(min=0), default=2.0, show_default=True, help="Seconds before the first retry (doubling each time).")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=600.0, show_default=True, help="Time limit per input in seconds (worker process); 0 = no limit, in this process.")
@click.option("--group-timeout", "group_timeout_s", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Brackets: merge an incomplete group after this many seconds without a new frame.")
@click.option("--recursive", "-r", is_flag=True, default=None, help="Watch sub-folders too.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose outputs already exist.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the pipeline's, auto).")
@click.option("--quiet", "-q", is_flag=True, help="No status line or per-file messages (the log file still gets them).")
@_executor_options
def watch(pipeline: Path, in_dir: Path, out_dir: Path, once: bool, settle_s: float, rescan_s: float, move_done: Path | None, failed_dir: Path | None,
          retries: int, backoff_s: float, timeout_s: float, group_timeout_s: float, recursive: bool | None, overwrite: bool, device: str | None, quiet: bool,
          executor: str = "local", address: str | None = None, workers: int | None = None, gpus_per_worker: float = 0.0) -> None:
    """Watch IN_DIR and run PIPELINE on every new file, exactly once, into OUTPUT.

    A file is taken when its size and mtime have been stable for --settle
    seconds and it decodes; a journal in OUTPUT makes restarts resume
    (done files skipped, an interrupted one retried).  SIGINT/SIGTERM stop
    cleanly after abandoning the current file.  Exit status: 0 (with --once:
    1 if some file failed), 2 usage error, 130 --once interrupted.
    """
    from .pipeline import load_pipeline
    from .watch import Watcher, WatchOptions

    con = _console()
    try:
        pipe = load_pipeline(pipeline)
        _check_runnable(pipe, pipeline, device)
        if not in_dir.is_dir():
            _fail(f"{in_dir}: no such folder")
        opts = WatchOptions(
            settle_s=settle_s, rescan_s=rescan_s, move_done=move_done, failed_dir=failed_dir, retries=retries, timeout_s=timeout_s or None,
            backoff_s=backoff_s, group_timeout_s=group_timeout_s, once=once, recursive=recursive, device=device, overwrite=overwrite,
            executor=executor, executor_options={"address": address, "workers": workers, "gpus_per_worker": gpus_per_worker},
        )
        w = Watcher(pipe, in_dir, out_dir, opts, console=None if quiet else con, handle_signals=True)
        report = w.run()
    except RestoreError as e:
        _fail(str(e))
    if quiet:
        from .text import printable

        con.print(printable(f"{pipe.name}: {len(report.done)} done, {report.skipped} skipped, {len(report.failed)} failed -> {out_dir}"), markup=False)
    if once:
        sys.exit(130 if report.interrupted else 1 if report.failed else 0)
    sys.exit(0)


@cli.command()
@click.argument("pipeline", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--load-models", is_flag=True, help="Also load every model the pipeline names.")
def validate(pipeline: Path, load_models: bool) -> None:
    """Check a pipeline file (schema, templates, and optionally its models)."""
    from .pipeline import load_pipeline

    try:
        p = load_pipeline(pipeline)
        _check_runnable(p, pipeline, None)
        if load_models:
            p.prepare()
    except RestoreError as e:
        _fail(str(e))
    kinds = " -> ".join(type(s).__name__.removesuffix("Stage").lower() for s in p.stages)
    _console().print(f"{pipeline}: valid (version {p.spec.version}, '{p.name}': {kinds})", markup=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List the model catalogue (name, task, scale, licence, available) and the architectures that load official checkpoints."""
    from rich.table import Table

    from .models import catalog
    from .models.archs import architectures

    entries = catalog()
    official = architectures()  # one row per architecture descriptor (restore.models.archs)
    if as_json:
        click.echo(json.dumps({
            "catalogue": [{"name": e.name, "task": e.task, "scale": e.scale, "arch": e.arch, "licence": e.licence, "available": e.available, "file": str(e.path or e.file), "when": e.when,
                            "guard": (e.extra.get("guard") or {}).get("file")} for e in entries],
            "architectures": official,
        }, indent=2))
        return
    con = _console()
    head = ["name", "task", "scale", "arch", "licence", "available", "when to use"]
    rows = [[e.name, e.task, f"x{e.scale}", e.arch, e.licence, "yes" if e.available else f"no ({e.recipe})" if e.recipe else "no", e.when]
            for e in entries]
    arch_head = ["architecture", "task", "frames", "tiles", "official checkpoints accepted"]
    arch_rows = []
    for o in official:
        arch_rows.append([o["arch"], o["task"], str(o["frames"]), o["tiling"], ", ".join(map(str, o["checkpoints"])) or "-"])
    title = "Architectures: official checkpoints load by path (bring the file; nothing is downloaded)"
    if not con.is_terminal:
        _plain_table(con, head, rows)
        con.print(f"\n{title}", markup=False)
        _plain_table(con, arch_head, arch_rows)
        return
    t = Table(expand=False)
    for col in head[:-1]:
        t.add_column(col, no_wrap=True)
    t.add_column(head[-1], overflow="fold")
    for r in rows:
        t.add_row(*r)
    con.print(t)
    a = Table(title=title, expand=False)
    for col in arch_head[:-1]:
        a.add_column(col, no_wrap=True)
    a.add_column(arch_head[-1], overflow="fold")
    for r in arch_rows:
        a.add_row(*r)
    con.print(a)


def _noise_summary(path: Path, as_json: bool):
    """``restore info``'s noise entry of a RAW file: the profile's values (JSON) or one line; why not, if unavailable."""
    from .noise import noise_profile_for

    try:
        profile = noise_profile_for(path)
    except RestoreError as e:
        why = str(e).removeprefix(f"{path}: ")
        return {"error": why} if as_json else f"unavailable ({why})"
    return profile.summary() if as_json else str(profile)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def info(files: tuple[Path, ...], as_json: bool) -> None:
    """Show size, colour encoding and metadata of image files as the reader sees them.

    For RAW files also the Poisson-Gaussian noise model var(x) = a x + b (x = black-subtracted raw normalised to
    0 = black, 1 = white; a, b also in DN), sigma at 1, 10 and 50 % of white, and where it comes from; for
    sRGB-encoded images the noise level the RGB denoiser would use (restore.noise.estimate_sigma).
    """
    import numpy as np
    from rich.markup import escape

    from .io import read
    from .text import printable

    bad = 0
    out = []
    for f in files:
        try:
            im = read(f)
        except RestoreError as e:
            _console(stderr=True).print(printable(f"error: {e}"), markup=False)
            bad += 1
            continue
        c = im.color
        d = {
            "file": str(f),
            "size": f"{im.width}x{im.height}",
            "channels": im.channels,
            "encoding": str(im.encoding),
            "range": [float(f"{float(np.min(c)):.6g}"), float(f"{float(np.max(c)):.6g}")],
            **{k: v for k, v in im.meta.summary().items() if k not in ("source",)},
        }
        if im.meta.source_format == "raw":
            d["noise"] = _noise_summary(f, as_json)
        elif im.encoding.transfer == "srgb" and min(im.height, im.width) >= 2:
            from .noise import estimate_sigma

            sigma = estimate_sigma(im.color)
            d["noise"] = ({"sigma": round(sigma, 6), "sigma_8bit": round(sigma * 255, 3)} if as_json else
                          f"sigma {sigma:.5f} ({sigma * 255:.2f}/255), wavelet estimate; the RGB denoiser's level")
        out.append(d)
    if as_json:
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        con = _console()
        for d in out:
            con.print(f"[bold]{escape(printable(d.pop('file')))}[/]")
            for k, v in d.items():
                con.print(printable(f"  {k}: {v}"), markup=False)
    sys.exit(1 if bad else 0)


@cli.command("eval")
@click.argument("outputs", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("truth", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--crop-border", "--scale", "crop", type=int, default=0, show_default=True, help="Pixels shaved on each side (BasicSR: the SR scale).")
@click.option("--rgb", is_flag=True, help="Compare RGB instead of BT.601 Y.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: mean_psnr, mean_ssim and one entry per image.")
def eval_cmd(outputs: Path, truth: Path, crop: int, rgb: bool, as_json: bool) -> None:
    """PSNR-Y and SSIM of OUTPUTS against ground truth TRUTH (BasicSR conventions)."""
    from .eval import evaluate, mean
    from .text import printable

    try:
        rows = evaluate(outputs, truth, crop_border=crop, y_channel=not rgb)
    except RestoreError as e:
        _fail(str(e))
    mp, ms = mean(rows)
    if as_json:
        click.echo(json.dumps({"mean_psnr": mp, "mean_ssim": ms, "images": [{"output": str(r.output), "truth": str(r.truth), "psnr": r.psnr, "ssim": r.ssim} for r in rows]}, indent=2))
        return
    con = _console()
    for r in rows:
        con.print(f"{printable(r.output.name):40s} {r.psnr:8.3f} dB  SSIM {r.ssim:.4f}", markup=False)
    con.print(f"{'mean (' + str(len(rows)) + ' images)':40s} {mp:8.3f} dB  SSIM {ms:.4f}  [{'RGB' if rgb else 'Y'}, crop {crop}]", markup=False)


@cli.command()
@click.argument("model")
@click.option("--size", default="512x512", show_default=True, help="Input WxH in pixels (synthetic image).")
@click.option("--tile", type=int, default=128, show_default=True)
@click.option("--overlap", type=int, default=16, show_default=True)
@click.option("--repeat", type=int, default=2, show_default=True, help="Runs per method; the best is reported.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "bf16"]), default="fp32", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--methods", default="whole,tiled,esrgan-loop", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output: one entry per method.")
@click.option("--backends", "backends", is_flag=True,
              help="Time every inference path on one --tile input instead (spandrel's model, torch fp32/bf16/compile, "
                   "ONNX Runtime, OpenVINO), interleaved over --rounds fresh processes, against this CPU's GEMM peak.")
@click.option("--rounds", type=int, default=3, show_default=True, help="--backends: interleaved rounds.")
@click.option("--set5", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="--backends: Set5 folder (HR/, LR_bicubic/X<scale>/) for each path's mean PSNR-Y.")
@click.option("--only", default=None, help="--backends: comma-separated paths to time (default: all available).")
@click.option("--backend", default="torch", show_default=True,
              help="whole/tiled: how the network runs, as the model step's `backend:` (auto, torch, torch-bf16, "
                   "torch-compile, onnxruntime, openvino; the best of --repeat runs is reported, so set-up is not in it).")
def bench(model: str, size: str, tile: int, overlap: int, repeat: int, precision: str, device: str, methods: str, as_json: bool,
          backends: bool, rounds: int, set5: Path | None, only: str | None, backend: str) -> None:
    """Time MODEL whole-image, tiled, and with the reference SR scripts' tile loop, `esrgan-loop` (each in a fresh
    process); with --backends, time each inference path on one tile."""
    from .bench import run_bench

    if backends:
        _bench_backends(model, tile, rounds, repeat, set5, only, as_json)
        return
    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        _fail(f"--size must be WIDTHxHEIGHT, got {size!r}")
    from .backends import BACKENDS

    if backend not in ("auto", *BACKENDS):
        _fail(f"--backend must be auto or one of {', '.join(BACKENDS)}, got {backend!r}")
    rows = run_bench(model, w, h, tile, overlap, repeat, precision, device, tuple(methods.split(",")), backend)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    con = _console()
    con.print(f"{model}, {w}x{h}, tile {tile}, overlap {overlap}, {precision}, {device}, backend {backend}", markup=False)
    for r in rows:
        if "error" in r:
            con.print(f"  {r['method']:12s} failed: {r['error']}", markup=False)
            continue
        extra = f", {r['ratio_to_whole']:.2f}x whole (overlap factor {r['overlap_factor']:.2f})" if "ratio_to_whole" in r else ""
        gpu = f", peak GPU {r['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in r else ""
        con.print(f"  {r['method']:12s} {r['seconds']:8.2f} s  {r['mpx_per_s']:.4f} Mpx/s  peak RSS {r['peak_rss_mib']:.0f} MiB{gpu}{extra}", markup=False)
        if r.get("backend_note"):
            con.print(f"  {'':12s} {r['backend_note']}", markup=False)


def _bench_backends(model: str, tile: int, rounds: int, repeat: int, set5: Path | None, only: str | None, as_json: bool) -> None:
    from .backends import BACKENDS
    from .bench import PEER, run_backend_bench

    chosen = None
    if only:
        chosen = tuple(b.strip() for b in only.split(",") if b.strip())
        bad = [b for b in chosen if b not in (PEER, *BACKENDS)]
        if bad:
            _fail(f"--only: unknown path {bad[0]!r}; use {', '.join((PEER, *BACKENDS))}")
    try:
        res = run_backend_bench(model, tile, rounds, repeat, chosen, str(set5) if set5 else None)
    except RestoreError as e:
        _fail(str(e))
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    con = _console()
    mach = res["machine"]
    if "error" in mach:
        _fail(f"measuring the machine failed: {mach['error']}")
    bf16 = f", bf16 {mach['gemm_bf16_gflops']:.1f} GFLOP/s" if "gemm_bf16_gflops" in mach else ""
    con.print(f"{mach['cpu']} ({' '.join(mach['flags']) or 'no AVX2'}), {mach['threads']} threads, torch {mach['torch']}; "
              f"GEMM 2048^2 fp32 {mach['gemm_fp32_gflops']:.1f} GFLOP/s{bf16}", markup=False)
    con.print(f"{model}: {tile}x{tile} tile, {mach['flops_per_tile'] / 1e9:.2f} GFLOP per tile; best / median of {rounds} "
              "interleaved fresh-process rounds", markup=False)
    peer = next((r for r in res["rows"] if r["backend"] == PEER and "best" in r), None)
    for r in res["rows"]:
        if "skipped" in r:
            con.print(f"  {r['backend']:14s} not available: {r['skipped']}", markup=False)
            continue
        if "error" in r:
            con.print(f"  {r['backend']:14s} failed: {r['error']}", markup=False)
            continue
        line = (f"  {r['backend']:14s} {r['best']:7.3f} s  median {r['median']:7.3f} s  {r.get('gflops', 0):6.1f} GFLOP/s "
                f"({100 * r.get('peak_fraction', 0):4.1f} % of fp32 peak)")
        if peer and r is not peer:
            line += f"  {peer['best'] / r['best']:.2f}x {PEER}"
        if "max_diff" in r:
            line += f"  max diff {r['max_diff']:.1e}"
        if "psnr_y" in r:
            line += f"  Set5 PSNR-Y {r['psnr_y']:.3f} dB ({r.get('psnr_cost', 0):+.3f})"
        con.print(line, markup=False)


@cli.command("export")
@click.argument("model")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size", default=None, help="Input WxH of the graph: the tile size [default: 128x128; a fixed-size model's native size].")
@click.option("--batch", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--opset", type=click.IntRange(14, 23), default=17, show_default=True)
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run the export in ONNX Runtime (when installed) and compare it with PyTorch.")
def export_cmd(model: str, out: Path, size: str | None, batch: int, opset: int, check: bool) -> None:
    """Write MODEL's network as an ONNX graph for one input size (as darktable and chaiNNer run models)."""
    import io

    from .models import load_model
    from .models.onnx import export_onnx, onnx_session, runtime_missing

    try:
        w, h = (int(v) for v in (size or "128x128").lower().split("x"))
    except ValueError:
        _fail(f"--size must be WIDTHxHEIGHT, got {size!r}")
    if out.suffix.lower() != ".onnx":
        _fail(f"{out}: the output must end in .onnx")
    try:
        m = load_model(model)
        if m.fixed_size and size is None:
            h, w = m.fixed_size
        buf = io.BytesIO()
        export_onnx(m, buf, (h, w), batch=batch, opset=opset)
        note = ""
        if check and runtime_missing("onnxruntime") is None:
            import numpy as np
            import torch

            x = torch.rand(batch, m.input_channels, h, w, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                ref = m.module(x).float().numpy()
            diff = float(np.abs(onnx_session(buf.getvalue(), "onnxruntime", torch.get_num_threads())(x.numpy()) - ref).max())
            if not diff <= 1e-3 * max(1.0, float(np.abs(ref).max())):
                _fail(f"{model}: the ONNX export differs from PyTorch by {diff:.2e} (max abs); not written")
            note = f"; ONNX Runtime matches PyTorch (max abs difference {diff:.1e})"
        from .io.atomic import atomic_path

        with atomic_path(out) as tmp:
            Path(tmp).write_bytes(buf.getvalue())
    except RestoreError as e:
        _fail(str(e))
    except OSError as e:
        _fail(f"{out}: cannot write ({e.strerror or e})")
    _console().print(f"{out}: input 'input' float32 {batch}x{m.input_channels}x{h}x{w}, output 'output' "
                     f"{batch}x{m.output_channels}x{h * m.scale}x{w * m.scale}, opset {opset}{note}", markup=False)


def main() -> None:
    """Entry point of the ``restore`` console script."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


if __name__ == "__main__":
    main()
