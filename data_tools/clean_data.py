#!/usr/bin/env python3
"""Clean training images for the starter models, from package registries only.

Sources (all installed by ordinary package clients, licences allow reuse):

* scikit-image (PyPI ``scikit-image``, BSD-3-Clause): the photographic samples
  in ``skimage/data``; per-image terms from the ``skimage.data`` docstrings
  (public domain / CC0); the Middlebury motorcycle pair shipped in skimage is
  left out because no licence is stated for it.
* Debian ``opencv-doc`` (``apt-get install -y opencv-doc``; OpenCV samples are
  Apache-2.0 AND BSD-3-Clause per ``/usr/share/doc/opencv-doc/copyright``,
  ``Files: *``): photographic images under
  ``/usr/share/doc/opencv-doc/examples/data``.
* Debian ``plasma-workspace-wallpapers`` (``apt-get install -y
  plasma-workspace-wallpapers``): the ten outdoor and still-life *photographs*
  among KDE's wallpapers (trees, water, sky, a forest path: the content of
  real rain and raindrop captures, which the sample images above lack), at
  their 1280x1024 size; LGPL-3.0 per each wallpaper's ``metadata.json``
  (Debian's copyright file: GPL-2+ for ``Files: *``).  The illustrations in
  that package are left out.
* Split ``extra`` (not yet used by any shipped recipe, so the ``train`` split keeps reproducing them; trainers take
  it with ``--extra-images``): the photographs among Debian ``lomiri-wallpapers-16.04`` and
  ``lomiri-wallpapers-20.04`` (Ubuntu wallpaper contest photos; CC-BY-4.0, CC-BY-SA-3.0/4.0 or CC0-1.0 per file,
  from each package's ``copyright``) and ``mate-backgrounds`` ``nature/`` (GPL-2+ per its ``copyright``): 26
  photos of landscapes, plants, water, interiors and objects.  The illustrations, gradients and composites of
  those packages are left out.  Read downscaled (area) to at most ``EXTRA_MAX_SIDE`` px on the long side: the
  originals are 2-20 MP JPEGs, and halving them or more averages away their compression artefacts and sensor
  noise, which a denoiser's clean targets must not carry.

Nothing from ``../shared`` is ever read: those are evaluation data.

Usage:
    python data_tools/clean_data.py            # verify sources, print summary
    python data_tools/clean_data.py --write-manifest   # (re)write data_tools/data_manifest.yaml

From code: ``load_images(split)`` returns float32 RGB [0, 1] arrays, verified
against the sha256 recorded in ``data_tools/data_manifest.yaml``.  ``split`` is
``'train'``, ``'heldout'`` (never used by train.py; the reflection evaluation and the tests use them) or
``'extra'`` (see above).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

MANIFEST = Path(__file__).resolve().parent / "data_manifest.yaml"
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/examples/data")

SKIMAGE_FILES = [
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "grass.png", "gravel.png",
    "rocket.jpg",
]
OPENCV_FILES = [
    "Blender_Suzanne1.jpg", "HappyFish.jpg", "aero1.jpg", "aero3.jpg", "apple.jpg", "baboon.jpg", "board.jpg",
    "building.jpg", "butterfly.jpg", "ela_original.jpg", "fruits.jpg", "graf1.png", "home.jpg", "left.jpg",
    "leuvenA.jpg", "messi5.jpg", "orange.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png",
    "squirrel_cls.jpg", "starry_night.jpg", "stuff.jpg",
]
PLASMA_DIR = Path("/usr/share/wallpapers")
# wallpaper folder -> photographer, as in its metadata.json (all LGPLv3)
PLASMA_PHOTOS = {
    "BytheWater": "Maciej Wiklo", "ColdRipple": "Risto Saukonpaa", "DarkestHour": "Risto Saukonpaa",
    "EveningGlow": "Ian Hex", "FallenLeaf": "Martin Klapetek", "Grey": "Sigi Sagi", "Kite": "Risto Saukonpaa",
    "OneStandsOut": "Risto Saukonpaa", "Path": "Risto Saukonpaa", "summer_1am": "Risto Saukonpaa",
}
PLASMA_SIZE = "1280x1024.jpg"
BACKGROUNDS = Path("/usr/share/backgrounds")
# file -> (Debian package, licence as its copyright file states it); photographs only
LOMIRI_PHOTOS = {
    "Bridge_by_Sander_Klootwijk.jpg": ("lomiri-wallpapers-16.04", "CC-BY-SA-4.0"),
    "Dragonfly_by_Bolly.jpg": ("lomiri-wallpapers-16.04", "CC-BY-SA-4.0"),
    "Picture_0B_by_freespace.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "Picture_1A_by_freespace.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "Wine_by_Jakkub_Mede.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "aitzgorri_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "free_by_Peter_Nerlich.jpg": ("lomiri-wallpapers-16.04", "CC-BY-SA-4.0"),
    "friends_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "greentock_by_Peter_Nerlich.jpg": ("lomiri-wallpapers-16.04", "CC-BY-SA-4.0"),
    "life_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "picosdeeuropa_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "seeding_by_Clements_Engelhardt.jpg": ("lomiri-wallpapers-16.04", "CC0-1.0"),
    "sunset_by_Aitzol_Berasategi.jpg": ("lomiri-wallpapers-16.04", "CC-BY-4.0"),
    "Kleiber_by_Lukas_Baubkus.jpg": ("lomiri-wallpapers-20.04", "CC-BY-SA-3.0"),
}
MATE_NATURE = ["Aqua.jpg", "Blinds.jpg", "Dune.jpg", "FreshFlower.jpg", "Garden.jpg", "GreenMeadow.jpg", "LadyBird.jpg",
               "RainDrops.jpg", "Storm.jpg", "TwoWings.jpg", "Wood.jpg", "YellowFlower.jpg"]
#: Long side, in px, the ``extra`` photographs are read at (module docstring).
EXTRA_MAX_SIDE = 1600
# never trained on: reflection evaluation and tests
HELDOUT = {"chelsea.png", "coffee.png", "butterfly.jpg", "fruits.jpg", "home.jpg"}

# per-image terms as stated in the skimage.data docstrings (scikit-image 0.26)
SKIMAGE_LICENCES = {
    "astronaut.png": "public domain (NASA; skimage.data.astronaut docstring)",
    "brick.png": "CC0-1.0 (CC0Textures Bricks25; skimage.data.brick docstring)",
    "camera.png": "CC0-1.0 (photographer Lav Varshney; skimage.data.camera docstring)",
    "chelsea.png": "CC0-1.0 (photographer Stefan van der Walt; skimage.data.chelsea docstring)",
    "coffee.png": "CC0-1.0 (photographer Rachel Michetti; skimage.data.coffee docstring)",
    "grass.png": "CC0-1.0 (CC0Textures; skimage.data.grass docstring)",
    "gravel.png": "CC0-1.0 (CC0Textures Gravel04; skimage.data.gravel docstring)",
    # Not used: motorcycle_left/right.png (Middlebury 2014 stereo data) - no licence is stated for them.
    "rocket.jpg": "public domain (SpaceX; skimage.data.rocket docstring)",
}
OPENCV_LICENCE = "Apache-2.0 AND BSD-3-Clause (OpenCV samples, Debian opencv-doc copyright 'Files: *')"


def _skimage_dir() -> Path:
    try:
        import skimage
    except ImportError as exc:  # pragma: no cover
        raise SystemExit("scikit-image is not installed: pip install scikit-image") from exc
    return Path(skimage.__file__).resolve().parent / "data"


def _debian_version(package: str) -> str:
    import subprocess

    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def sources(names=None) -> list[dict]:
    """Entries (name, package, path, licence, split) of the clean images.

    Args:
        names: Only these image names (default: all). A Debian package is needed
            only when one of its images is asked for.

    Raises:
        SystemExit: one line naming the missing file and the package to install.
    """
    import skimage

    sk = _skimage_dir()
    out = []
    for name in SKIMAGE_FILES:
        out.append({"name": name, "package": f"pypi:scikit-image=={skimage.__version__}",
                    "path": f"skimage/data/{name}", "abspath": str(sk / name), "licence": SKIMAGE_LICENCES[name],
                    "install": "pip install scikit-image"})
    ver = _debian_version("opencv-doc")
    for name in OPENCV_FILES:
        out.append({"name": name, "package": f"debian:opencv-doc={ver}",
                    "path": str(OPENCV_DOC / name), "abspath": str(OPENCV_DOC / name), "licence": OPENCV_LICENCE,
                    "install": "apt-get update && apt-get install -y opencv-doc"})
    ver = _debian_version("plasma-workspace-wallpapers")
    for folder, author in PLASMA_PHOTOS.items():
        path = PLASMA_DIR / folder / "contents" / "images" / PLASMA_SIZE
        out.append({"name": f"plasma-{folder}.jpg", "package": f"debian:plasma-workspace-wallpapers={ver}",
                    "path": str(path), "abspath": str(path),
                    "licence": f"LGPL-3.0 (photographer {author}; {folder}/metadata.json)",
                    "install": "apt-get update && apt-get install -y plasma-workspace-wallpapers"})
    extra = []
    for name, (package, licence) in LOMIRI_PHOTOS.items():
        extra.append({"name": f"lomiri-{name}", "package": f"debian:{package}={_debian_version(package)}",
                      "path": str(BACKGROUNDS / name), "licence": f"{licence} ({package} copyright)",
                      "install": f"apt-get update && apt-get install -y {package}"})
    ver = _debian_version("mate-backgrounds")
    for name in MATE_NATURE:
        extra.append({"name": f"mate-{name}", "package": f"debian:mate-backgrounds={ver}",
                      "path": str(BACKGROUNDS / "mate" / "nature" / name), "licence": "GPL-2+ (mate-backgrounds copyright)",
                      "install": "apt-get update && apt-get install -y mate-backgrounds"})
    for e in extra:
        e.update(abspath=e["path"], split="extra", max_side=EXTRA_MAX_SIDE)
    out += extra
    if names is not None:
        out = [e for e in out if e["name"] in names]
    for e in out:
        e.setdefault("split", "heldout" if e["name"] in HELDOUT else "train")
        if not Path(e["abspath"]).is_file():
            raise SystemExit(f"missing clean image {e['abspath']} ({e['package']}): {e['install']}")
    return out


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(path: Path = MANIFEST) -> None:
    entries = []
    for e in sources():
        entries.append({k: e[k] for k in ("name", "package", "path", "licence", "split", "max_side") if k in e}
                       | {"sha256": sha256(e["abspath"])})
    doc = {
        "version": 1,
        "description": "Clean images for data_tools/train.py (synthetic degradations by data_tools/synth). "
                       "Collected by data_tools/clean_data.py from package registries; nothing from ../shared.",
        "images": entries,
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, width=120))


def read_image(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """float32 RGB ``(H, W, 3)`` in [0, 1]; downscaled by area averaging to at most ``max_side`` px on the long side."""
    im = cv2.imread(str(path), cv2.IMREAD_COLOR)  # grey samples become 3-channel
    if im is None:
        raise SystemExit(f"cannot read {path}")
    if max_side is not None and max(im.shape[:2]) > max_side:
        f = max_side / max(im.shape[:2])
        im = cv2.resize(im, (round(im.shape[1] * f), round(im.shape[0] * f)), interpolation=cv2.INTER_AREA)
    return (im[..., ::-1].astype(np.float32) / 255.0).copy()


#: Registries the clean images come from (the ``package`` prefix in the manifest).
REGISTRIES = ("pypi", "debian")


def load_images(split: str = "train", verify: bool = True, registries: tuple[str, ...] = REGISTRIES) -> list[np.ndarray]:
    """Clean float32 RGB [0, 1] images of ``split``, checked against the manifest's sha256.

    Args:
        split: ``"train"``, ``"heldout"`` or ``"extra"`` (module docstring).
        verify: Check each file's sha256 against the manifest.
        registries: Only images from these registries.  ``("pypi",)`` needs
            nothing beyond ``pip install -e ".[test]"`` (scikit-image's samples):
            what the test suite trains on, so it passes on a fresh machine.

    Raises:
        SystemExit: a file is missing (names the package to install) or differs from the manifest.
    """
    doc = yaml.safe_load(MANIFEST.read_text())
    want = {e["name"]: e for e in doc["images"] if e["split"] == split and e["package"].split(":")[0] in registries}
    found = {e["name"]: e for e in sources(set(want))}
    out = []
    for name in sorted(want):
        src = found[name]["abspath"]
        if verify and sha256(src) != want[name]["sha256"]:
            raise SystemExit(f"{src}: sha256 differs from {MANIFEST.name} (package version changed?)")
        out.append(read_image(src, want[name].get("max_side")))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-manifest", action="store_true")
    args = ap.parse_args(argv)
    if args.write_manifest:
        write_manifest()
        print(f"wrote {MANIFEST}")
    for split in ("train", "heldout", "extra"):
        ims = load_images(split)
        print(f"{split}: {len(ims)} images, {sum(i.shape[0] * i.shape[1] for i in ims) / 1e6:.2f} Mpx")
    return 0


if __name__ == "__main__":
    sys.exit(main())
