"""The ``reportgen`` command: a thin click layer over the library.

Each command parses options and calls one library function (imported lazily so that
``--help`` and ``--version`` answer without importing torch). User mistakes surface as
:class:`~reportgen.errors.ReportError`: one line, exit code 2.
"""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from reportgen import __version__
from reportgen.cli_options import build_options, field_option
from reportgen.errors import ReportError
from reportgen.options import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL,
    DEFAULT_SITE_DIR,
    DEFAULT_WEIGHTS,
    FIGURE_NORMALIZATIONS,
    LAYER_TABLE_SIZE,
    MODEL_ARG_HELP,
    BuildOptions,
    path_base_name,
)

log = logging.getLogger("reportgen")

MODEL_HELP = ("A torchvision model (vgg16, resnet18, ...), timm:NAME, package.module:factory or "
              "path/to/file.py:factory (an nn.Module class or a function returning one).")
WEIGHTS_HELP = ("DEFAULT, none (random, seeded), a weights name such as IMAGENET1K_V1, "
                "or a checkpoint path (.pth/.pt/.ckpt/.safetensors).")
IMAGE_HELP = "An skimage sample (astronaut, coffee, chelsea, camera, ...) or an image file."


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_StderrFormatter("%(message)s"))
    root = logging.getLogger("reportgen")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")(func)
    func = click.option("-v", "--verbose", count=True,
                        help="More detail; -v also shows tracebacks of unexpected errors.")(func)
    return func


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="reportgen",
                      message=f"%(prog)s %(version)s (Python {sys.version.split()[0]})")
def cli() -> None:
    """See what every convolution layer of a CNN sees, as a static site."""


@cli.command()
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)
@click.option("-w", "--weights", default=DEFAULT_WEIGHTS, show_default=True, help=WEIGHTS_HELP)
@click.option("-i", "--image", "images", multiple=True,
              help=f"{IMAGE_HELP} Repeat for up to 16 images side by side, on one shared range "
                   f"per channel.  [default: {DEFAULT_IMAGE}]")
@click.option("-d", "--site-dir", default=DEFAULT_SITE_DIR, show_default=True, type=click.Path(),
              help="Output folder; replaced only if it holds an earlier report.")
@build_options
@click.option("--categories", "categories_file", default=None,
              type=click.Path(dir_okay=False), metavar="FILE",
              help="Labels of the model's outputs: one per line, or a JSON list.")
@common_options
def build(verbose: int, quiet: bool, model: str, weights: str, images: tuple[str, ...],
          site_dir: str, **flags: Any) -> None:
    """Run the model once on the image and write the report."""
    _configure_logging(verbose, quiet)
    from reportgen.build import build_report

    image: str | list[str] | None = list(images) if len(images) > 1 else (
        images[0] if images else (None if flags.get("dataset") else DEFAULT_IMAGE))
    started = time.perf_counter()
    categories_file = flags.pop("categories_file")
    options = _run(verbose, lambda: BuildOptions(**flags))
    command = _typed_command(model, weights, images, site_dir, options, categories_file)
    if categories_file is not None:
        from reportgen.inputs.categories import read_categories

        options = options.replace(categories=read_categories(categories_file),
                                  categories_must_match=True)
    report = _run(verbose, lambda: build_report(
        model, weights, image, site_dir, options, command=command, progress=log.info,
        show_progress=not quiet), interrupted=lambda: _after_interrupt(site_dir, options))
    seconds = time.perf_counter() - started
    if verbose:
        for stage_name, stage_seconds in report.timings.items():
            click.echo(f"  {stage_name:<12} {stage_seconds:7.3f} s", err=True)
    from reportgen.report.model import count_layers

    click.echo(f"Report of {count_layers(report.layers)} written to "
               f"{report.index} in {seconds:.1f} s", err=True)
    if report.single_file is not None:
        size = report.single_file.stat().st_size
        click.echo(f"Single file: {report.single_file} ({size / 2**20:.1f} MB)", err=True)


@cli.command("gh-deploy")
@click.option("-d", "--site-dir", default=DEFAULT_SITE_DIR, show_default=True,
              type=click.Path(),
              help="The report to publish; built first (with --model/--weights/--image and "
                   "the build command's other defaults) when it does not exist.")
@click.option("--remote", default="origin", show_default=True, help="Git remote to push to.")
@click.option("--branch", default="gh-pages", show_default=True, help="Branch to commit to.")
@click.option("--message", default=None,
              help="Commit message; {sha} and {version} are filled in. [default: "
                   "'Deployed {sha} with reportgen version {version}']")
@click.option("--no-push", "push", flag_value=False, default=True,
              help="Only commit the branch locally.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True,
              help="Model for a missing site (as in build).")
@click.option("--weights", default=DEFAULT_WEIGHTS, show_default=True,
              help="Weights for a missing site (as in build).")
@click.option("--image", default=DEFAULT_IMAGE, show_default=True,
              help="Image for a missing site (as in build).")
@common_options
def gh_deploy(verbose: int, quiet: bool, site_dir: str, remote: str, branch: str,
              message: str | None, push: bool, model: str, weights: str, image: str) -> None:
    """Publish the report on GitHub Pages: commit it to gh-pages and push."""
    _configure_logging(verbose, quiet)
    from reportgen.publish.deploy import gh_deploy as deploy

    def build_missing(site: Any) -> Any:
        from reportgen.build import build_report

        return build_report(model, weights, image, site, progress=log.info)

    done = _run(verbose, lambda: deploy(site_dir, remote=remote, branch=branch, message=message,
                                        push=push, build=build_missing))
    where = f"{remote}/{branch}" if done.pushed else f"local branch {branch} (not pushed)"
    click.echo(f"Published {site_dir} to {where}: {done.commit[:10]} {done.message}", err=True)


@cli.command()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The figure file; .pdf, .svg or .png picks the format.")
@click.option("-s", "--select", "select", multiple=True, metavar="LAYER[:CH,CH,...]",
              help="A layer, optionally with channels, e.g. features.0 or "
                   "features.28:447,12,5; repeat for more layers. Without channels: the "
                   "16 most active.")
@click.option("--from", "source", type=click.Path(exists=True),
              help="Rebuild the input of an existing report (its folder or manifest.json).")
@click.option("--panels", default="map", show_default=True, metavar="PANEL[,PANEL...]",
              help="map alone: a block of maps per layer. With examples, featurevis or gradcam "
                   "(from the --from report's --dataset, --feature-vis and --explain): a row "
                   "per channel, e.g. map,examples,featurevis.")
@click.option("-m", "--model", default=None, help=f"{MODEL_HELP}  [default: {DEFAULT_MODEL}]")
@click.option("-w", "--weights", default=None,
              help=f"{WEIGHTS_HELP}  [default: {DEFAULT_WEIGHTS}]")
@click.option("-i", "--image", default=None,
              help=f"{IMAGE_HELP} With --from: the file the report was built from, if it "
                   f"is elsewhere.  [default: {DEFAULT_IMAGE}]")
@click.option("--width", default="7in", show_default=True,
              help="Figure width: 3.5in (one column), 7in (two columns), or mm/cm/pt.")
@click.option("--dpi", type=int, default=300, show_default=True,
              help="PNG resolution, and that of the maps inside PDF/SVG.")
@click.option("--columns", type=click.IntRange(min=1), default=None,
              help="Panels per row (default: from the width, 4 per 3.5 in).")
@field_option("normalize", type=click.Choice(FIGURE_NORMALIZATIONS), default="layer",
              help="One colour scale per layer, or one per channel.")
@field_option("cmap", default=None,
              help="Matplotlib colormap (default: the report's, or gray).")
@field_option("rectify", declaration="--rectify/--no-rectify", default=None,
              help="Show max(0, x) (default: as the report did, else no).")
@field_option("size", help="Input crop size (not with --from).")
@field_option("model_args", help=MODEL_ARG_HELP + " (not with --from).")
@field_option("seed")
@field_option("device")
@common_options
def figure(verbose: int, quiet: bool, output: str, select: tuple[str, ...], **options: Any) -> None:
    """Draw chosen channels of chosen layers as a figure for a paper (PDF, SVG or PNG)."""
    _configure_logging(verbose, quiet)
    from reportgen.publish.figure import make_figure

    if options["source"] is not None and (options["model"] is not None or options["size"]
                                          or options["model_args"]):
        raise ReportError("--from rebuilds the report's own model and preprocessing; leave "
                          "out --model, --model-arg and --size (use -w/-i only to point at "
                          "its files).")
    made = _run(verbose, lambda: make_figure(output, list(select), **options))
    click.echo(f"Figure {made.path} ({made.format.upper()}, {made.width:.2f} x "
               f"{made.height:.2f} in, {made.size:,} bytes)", err=True)


@cli.command()
@click.option("-m", "--model", default=DEFAULT_MODEL, show_default=True, help=MODEL_HELP)
@field_option("size", default=LAYER_TABLE_SIZE, show_default=True, help="Input size for shapes.")
@field_option("model_args")
@common_options
def layers(verbose: int, quiet: bool, model: str, size: int,
           model_args: tuple[str, ...]) -> None:
    """List every conv layer of a model with its shapes and parameters (and its blocks)."""
    _configure_logging(verbose, quiet)
    from reportgen.forward.layertable import conv_table, format_table
    from reportgen.inputs.modelspec import normalize_model_args

    rows = _run(verbose, lambda: conv_table(model, size, normalize_model_args(model_args)))
    click.echo(format_table(rows))


@cli.command()
def models() -> None:
    """List the torchvision classification models reportgen can use."""
    from reportgen.inputs.models import classification_models, model_caveat

    names = classification_models()
    width = max(len(name) for name in names)
    for name in names:
        caveat = model_caveat(name)
        click.echo(f"{name:<{width}}  ({caveat})" if caveat else name)
    click.echo("\nAlso: --model timm:NAME (pip install 'reportgen[timm]'), "
               "package.module:factory or path/to/file.py:factory.", err=True)


def _typed_command(model: str, weights: str, images: tuple[str, ...], site_dir: str,
                   options: BuildOptions, categories_file: str | None) -> str:
    """The command as typed, for the manifest: what differs from the defaults, paths cut to
    base names (reportgen.report.reproduce writes it, as it writes the Reproduce command)."""
    from reportgen.inputs.modelspec import parse_model_spec
    from reportgen.report.reproduce import rebuild_command

    try:
        model_named = parse_model_spec(model).recorded  # a model file: by its base name
    except ReportError:
        model_named = model
    return rebuild_command(
        model_named if model != DEFAULT_MODEL else None,
        path_base_name(weights) if weights != DEFAULT_WEIGHTS else None,
        [path_base_name(image) for image in images], options, typed=True,
        site_dir=path_base_name(site_dir) if site_dir != DEFAULT_SITE_DIR else None,
        categories=path_base_name(categories_file) if categories_file else None)


def _after_interrupt(site_dir: str, options: BuildOptions) -> str:
    """What Ctrl-C left behind: a dataset pass's saved state, or nothing."""
    from reportgen.dataset.state import state_path

    state = state_path(site_dir)
    if options.dataset is not None and state.is_file():
        return (f"The dataset pass's progress is saved in {state.name} (beside the site "
                "folder); run the same command to continue from there.")
    return f"Nothing was written; '{site_dir}' is as it was."


def _run(verbose: int, action: Callable[[], Any],
         interrupted: Callable[[], str] | None = None) -> Any:
    """Show unexpected errors as one line too (a traceback only with -v); Ctrl-C says what it
    left behind and exits 130, as a shell expects of SIGINT."""

    try:
        return action()
    except (ReportError, click.exceptions.Exit, click.Abort):
        raise
    except KeyboardInterrupt:
        said = interrupted() if interrupted is not None else ""
        click.echo(f"Interrupted. {said}".strip(), err=True)
        raise click.exceptions.Exit(130) from None
    except Exception as error:
        if verbose:
            raise
        raise click.ClickException(f"{type(error).__name__}: {error} (run with -v for the "
                                   "traceback; please report it)") from None
