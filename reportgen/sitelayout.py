"""Where everything lives in a report's folder: the one home of every site path and slug.

Pages, pictures, examples files, sprite sheets and static files are named here and nowhere
else, so a reader (``reportgen figure --from``, the single file, ``gh-deploy``) and a writer
agree by construction. Torch-free: the publishing side imports it without the model stack.
"""
from __future__ import annotations

import re

#: Folder of the site's pictures, relative to the site.
IMAGE_DIR = "img"
#: CSS, JS and fonts, copied with content-hash names (cache busting).
STATIC_DIR = "static"
#: One JSON file per layer with each channel's dataset examples.
EXAMPLES_DIR = "examples"
#: Sprite sheets of the dataset examples' crops.
CROP_DIR = f"{IMAGE_DIR}/dataset"
#: Sprite sheets of the feature visualisations.
FEATURE_VIS_DIR = f"{IMAGE_DIR}/featurevis"
INDEX = "index.html"
MANIFEST = "manifest.json"
#: The whole report in one file (--self-contained).
SINGLE_FILE = "report.html"
#: Tells GitHub Pages to serve every file as it is (no Jekyll).
NO_JEKYLL = ".nojekyll"
ICON = f"{IMAGE_DIR}/icon.svg"
INPUT_PNG = f"{IMAGE_DIR}/input.png"
#: The colormap, low to high, for the channel view's value scale.
COLORBAR_PNG = f"{IMAGE_DIR}/colorbar.png"
#: Names a layer's slug may not take: the overview and the input pictures use them.
RESERVED_SLUGS = frozenset({"index", "input"})


def slugify(name: str, taken: set[str]) -> str:
    """A file-name-safe, unique id for a layer: never a path separator, never '..'; unique
    case-insensitively (macOS and Windows folders), recorded in ``taken``."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "layer"
    slug = slug.replace("..", "_")
    candidate, n = slug, 2
    while candidate.lower() in taken:
        candidate, n = f"{slug}-{n}", n + 1
    taken.add(candidate.lower())
    return candidate


def new_slugs() -> set[str]:
    """The set of taken slugs a report starts from."""
    return set(RESERVED_SLUGS)


def input_png(number: int) -> str:
    """The first image's input picture is img/input.png, the second img/input-2.png, ..."""
    return INPUT_PNG if number == 0 else f"{IMAGE_DIR}/input-{number + 1}.png"


def layer_page(slug: str) -> str:
    return f"layer-{slug}.html"


def is_layer_page(name: str) -> bool:
    """Whether a file name at the site's top level is one of its layer pages."""
    return name.startswith("layer-") and name.endswith(".html")


def activation_png(slug: str, number: int = 0) -> str:
    """A layer's grid for image ``number`` (the first one has no number)."""
    return f"{IMAGE_DIR}/{slug}-act{f'-{number + 1}' if number else ''}.png"


def filters_png(slug: str) -> str:
    return f"{IMAGE_DIR}/{slug}-filters.png"


def cam_png(slug: str) -> str:
    """A layer's Grad-CAM (16-bit grey)."""
    return f"{IMAGE_DIR}/{slug}-cam.png"


def examples_json(slug: str) -> str:
    return f"{EXAMPLES_DIR}/{slug}.json"


def crop_sheet(slug: str, number: int) -> str:
    """The ``number``-th sprite sheet of a layer's dataset crops."""
    return f"{CROP_DIR}/{slug}-{number:03d}.png"


def feature_vis_sheet(slug: str, number: int) -> str:
    """The ``number``-th sprite sheet of a layer's feature visualisations."""
    return f"{FEATURE_VIS_DIR}/{slug}-{number}.png"


def static_file(name: str) -> str:
    return f"{STATIC_DIR}/{name}"
