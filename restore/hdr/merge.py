"""Classical HDR merges of exposure brackets: camera response recovery, LDR and RAW-linear merges, deghosting.

Two kinds of bracket:

* **Display-referred LDR frames** (8/16-bit PNG/TIFF/JPEG from a camera that
  applied an unknown tone curve).  :func:`recover_response` estimates the
  camera response with OpenCV's calibrators (Debevec & Malik, "Recovering High
  Dynamic Range Radiance Maps from Photographs", SIGGRAPH 1997; Robertson,
  Borman & Stevenson, ICIP 1999 / J. Electronic Imaging 2003) and
  :func:`merge_ldr` merges with Debevec & Malik's weighted average of
  ``ln f^-1(Z) - ln t`` in the log domain.

* **RAW-linear frames** (developed linearly, 1.0 = sensor white after white
  balance, e.g. :func:`restore.io.read` of a RAW file).  :func:`merge_linear`
  is the inverse-variance (maximum-likelihood) merge under a Poisson-Gaussian
  noise model (Granados et al., "Optimal HDR reconstruction with linear
  digital cameras", CVPR 2010; Hasinoff et al., "Noise-optimal capture for
  high dynamic range photography", CVPR 2010).

**Response normalisation.**  A response is a ``(256, 3)`` float array: for
each code value 0..255 and channel, the linear exposure (irradiance x time)
that produces it, strictly increasing.  :func:`recover_response` scales every
channel so that code ``MID_CODE`` = 128 maps to ``MID_VALUE`` =
``srgb_to_linear(128/255)`` = 0.2159: a neutral grey code triple maps to
neutral linear light, and for a camera whose files are sRGB-encoded the
recovered response is close to the sRGB EOTF, i.e. 1.0 is about the reference
frame's white (the calibrators' own scale, ``g(128) = 0``, is arbitrary).
The merges do **not** rescale the response they are given: the output is in
the response's own units at the reference exposure, so
:func:`srgb_response` (the sRGB EOTF as a table) can be used for cameras known
to write plain sRGB.

**Reference scaling.**  Both merges return radiance *scaled to the reference
exposure*: ``E * t_ref`` (LDR) or ``(x / e) * e_ref`` (linear).  A pixel well
exposed in the reference frame keeps (up to the averaging with the other
frames) the reference frame's own linear value: ``response[code]`` for LDR,
``x_ref`` for linear frames.  The reference defaults to the middle exposure:
index ``n // 2`` of the frames sorted by exposure (ascending).

**Deghosting** (``deghost=True``).  For every frame, a pixel is dropped from
the merge where its exposure-normalised value disagrees with the local
reference's beyond what noise explains (see ``deghost_threshold`` of each
merge).  The local reference is the reference frame where that is well
exposed; where the reference itself is clipped or black it is the
best-exposed frame there (exposure quality averaged over ~8 px, so a region
takes one frame): a moving object in a dark region comes from a well-exposed
frame, not from a barely exposed one mixed with darker, noisier frames.  Each
frame's ghost mask is cleaned with a 3x3
morphological opening (isolated noise detections go), a 5x5 closing (holes
inside a detected object, where its texture happens to match the background,
are filled) and a dilation by ``GHOST_DILATE`` pixels (edges of moving
objects, which disagree by less than the threshold because of blur, are
covered too); pixels where a frame is the local reference are never dropped.
``return_masks=True`` also returns the masks.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ..color import srgb_to_linear

__all__ = [
    "recover_response",
    "merge_ldr",
    "merge_linear",
    "reexpose",
    "srgb_response",
    "MID_CODE",
    "MID_VALUE",
    "GHOST_DILATE",
]

MID_CODE = 128
MID_VALUE = float(srgb_to_linear(np.float32(MID_CODE / 255.0)))  # 0.21586
GHOST_DILATE = 2  # pixels; radius of the dilation applied to cleaned ghost masks
# Deghosting: where the reference frame is clipped or black, the local reference is chosen by exposure
# quality averaged with a Gaussian of this sigma (pixels), so a region takes one frame, not a patchwork.
_LOCAL_REF_SIGMA = 8.0

# LDR deghosting: a pixel is "well exposed" (may serve as reference) where all
# three channels are at least 3 % of (Zmax - Zmin) away from both ends; the
# code-value noise sigma of the tolerance is one code (8-bit quantisation 0.29
# plus sensor / compression noise).
_LDR_WELL = 0.03
_LDR_CODE_SIGMA = 1.0
# The reference frame serves as local reference only where its brightest channel is at least this fraction
# of the code range above black (~26 of 0-255); a darker reference pixel is noise, and the best-exposed
# frame is the local reference there (a dark, moving foreground in a night bracket: taipei_night).
_LDR_REF_DARK = 0.1
# After dropping ghosts, a channel that kept less than this fraction of its merge weight is taken from the
# local reference frame alone.
_LDR_THIN_EVIDENCE = 0.1
# Channels within 10 % of the hat's half-width of black or white (hat weight
# < 0.1) are censored observations (film fog, near-clipping): they are not
# compared for deghosting (their weight in the merge is small anyway).
_LDR_COMPARE_WEIGHT = 0.1
# Linear merge: the reference counts as black below this many read-noise sigmas
# (maximum over channels).
_LIN_BLACK_SIGMAS = 10.0
# Automatic black / white codes of an LDR bracket (Debevec & Malik's Zmin, Zmax):
# the 0.01 % / 99.99 % quantiles of all frames' codes where the shortest /
# longest frame piles up there (film fog level), black at most 32 codes up and
# white at least 223; otherwise 0 and 255 (see _code_range).
_LEVEL_QUANTILE = 1e-4
_MAX_BLACK_CODE = 32.0
_PILE_UP = 0.25
# Smallest step of ln(response) between neighbouring codes (0.01 %) when a
# non-monotone end is made strictly increasing.
_MIN_LOG_STEP = 1e-4


# --------------------------------------------------------------------------- validation


def _check_times(times: Sequence[float], n: int, name: str) -> np.ndarray:
    try:
        t = np.asarray([float(v) for v in times], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers, got {times!r}") from None
    if t.shape != (n,):
        raise ValueError(f"got {n} frames but {t.size} {name}; give one per frame")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError(f"{name} must be finite and positive, got {t.tolist()}")
    s = np.sort(t)
    dup = s[1:][np.diff(s) <= 1e-9 * s[1:]]
    if dup.size:
        raise ValueError(
            f"{name} must all differ (strictly increasing once sorted); {dup[0]:g} appears more than once in {t.tolist()}"
        )
    return t


def _check_frames(frames, *, ldr_uint8: bool) -> tuple[int, int]:
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if not isinstance(frames, (list, tuple)):
        raise ValueError(f"frames must be a list of (H, W, 3) arrays, got {type(frames).__name__}")
    if len(frames) < 2:
        raise ValueError(f"an exposure bracket needs at least 2 frames, got {len(frames)}")
    shape = None
    for i, f in enumerate(frames):
        if not isinstance(f, np.ndarray) or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"frame {i} must be an (H, W, 3) RGB array, got shape {getattr(f, 'shape', None)}")
        if ldr_uint8 and f.dtype != np.uint8:
            raise ValueError(f"frame {i} must be uint8 (8-bit codes) for response recovery, got {f.dtype}")
        if not ldr_uint8 and not np.issubdtype(f.dtype, np.floating):
            raise ValueError(f"frame {i} must be a float array, got {f.dtype}")
        if shape is None:
            shape = f.shape
        elif f.shape != shape:
            raise ValueError(f"all frames must have the same size: frame 0 is {shape}, frame {i} is {f.shape}")
    return shape[0], shape[1]


def _reference_index(t: np.ndarray, reference: int | None) -> int:
    n = t.size
    if reference is None:
        return int(np.argsort(t, kind="stable")[n // 2])
    if not isinstance(reference, (int, np.integer)) or isinstance(reference, bool) or not -n <= reference < n:
        raise ValueError(f"reference must be a frame index in [0, {n}), got {reference!r}")
    return int(reference) % n


def _log_response(response: np.ndarray) -> np.ndarray:
    r = np.asarray(response, dtype=np.float64)
    if r.ndim == 3 and r.shape[1] == 1:  # OpenCV's (256, 1, 3)
        r = r[:, 0, :]
    if r.shape != (256, 3):
        raise ValueError(f"response must be a (256, 3) array (linear exposure per code and channel), got {r.shape}")
    if not np.all(np.isfinite(r)) or np.any(r <= 0):
        raise ValueError("response must be finite and positive")
    if np.any(np.diff(r, axis=0) <= 0):
        raise ValueError("response must be strictly increasing in every channel (use recover_response)")
    return np.log(r)


# --------------------------------------------------------------------------- responses


def srgb_response() -> np.ndarray:
    """The sRGB EOTF as a ``(256, 3)`` response table (code 255 -> 1.0), for cameras writing plain sRGB.

    Code 0 is set to half of code 1's value so the table stays strictly
    positive (its hat weight is 0 in :func:`merge_ldr` anyway).
    """
    v = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0).astype(np.float64)
    v[0] = v[1] / 2
    return np.repeat(v[:, None], 3, axis=1).astype(np.float32)


def _fix_response(resp: np.ndarray) -> np.ndarray:
    """Fill gaps, make strictly increasing from the middle outwards, normalise code 128 to MID_VALUE."""
    out = np.empty((256, 3), np.float64)
    codes = np.arange(256)
    for c in range(3):
        r = resp[:, c].astype(np.float64)
        ok = np.isfinite(r) & (r > 0)
        if ok.sum() < 16 or not ok[MID_CODE - 32 : MID_CODE + 32].any():
            raise ValueError("response recovery failed: too few code values observed (is the bracket all black or clipped?)")
        lg = np.full(256, np.nan)
        lg[ok] = np.log(r[ok])
        idx = codes[ok]
        # interior gaps: interpolate in the log domain; ends: continue the slope of the last 8 valid codes
        lg = np.interp(codes, idx, lg[ok])
        lo, hi = idx[0], idx[-1]
        if lo > 0:
            k = idx[: min(8, idx.size)]
            slope = max((lg[k[-1]] - lg[k[0]]) / max(k[-1] - k[0], 1), _MIN_LOG_STEP)
            lg[:lo] = lg[lo] - slope * (lo - codes[:lo])
        if hi < 255:
            k = idx[-min(8, idx.size) :]
            slope = max((lg[k[-1]] - lg[k[0]]) / max(k[-1] - k[0], 1), _MIN_LOG_STEP)
            lg[hi + 1 :] = lg[hi] + slope * (codes[hi + 1 :] - hi)
        # strictly increasing from MID_CODE outwards: non-monotone ends (clipped
        # or unobserved codes) become a gentle ramp instead of a fold
        for z in range(MID_CODE + 1, 256):
            lg[z] = max(lg[z], lg[z - 1] + _MIN_LOG_STEP)
        for z in range(MID_CODE - 1, -1, -1):
            lg[z] = min(lg[z], lg[z + 1] - _MIN_LOG_STEP)
        out[:, c] = lg - lg[MID_CODE]
    return (np.exp(out) * MID_VALUE).astype(np.float32)


def recover_response(
    frames: list[np.ndarray],
    times_s: list[float],
    method: str = "debevec",
    samples: int = 70,
    smoothness: float = 10.0,
) -> np.ndarray:
    """Recover a camera response from an 8-bit exposure bracket.

    Args:
        frames: >= 2 ``(H, W, 3)`` uint8 RGB frames of a static scene, same
            size, any order.
        times_s: their exposure times (seconds, or any common unit), all
            different.
        method: ``"debevec"`` (``cv2.createCalibrateDebevec``: least squares
            on ``samples`` grid pixels with a second-derivative smoothness term
            weighted by ``smoothness``; Debevec & Malik 1997) or
            ``"robertson"`` (``cv2.createCalibrateRobertson``: iterative
            maximum likelihood on all pixels; ``samples``/``smoothness`` are
            not used).
        samples: pixel samples for Debevec.
        smoothness: Debevec's lambda.

    Returns:
        float32 ``(256, 3)``: per code value and channel (R, G, B) the linear
        exposure producing it, strictly increasing (codes never observed are
        interpolated in the log domain; non-monotone ends from clipped codes
        are replaced by a ramp of 0.01 % per code), scaled so that code 128
        maps to :data:`MID_VALUE` in every channel (see the module docstring).

    Raises:
        ValueError: fewer than 2 frames, non-uint8 or non-RGB frames, sizes
            differ, times missing/non-positive/duplicated, unknown method,
            calibration failure.
    """
    _check_frames(frames, ldr_uint8=True)
    t = _check_times(times_s, len(frames), "times_s")
    bgr = [np.ascontiguousarray(f[:, :, ::-1]) for f in frames]
    tt = t.astype(np.float32)
    if method == "debevec":
        if int(samples) < 2:
            raise ValueError(f"samples must be >= 2, got {samples}")
        if not smoothness >= 0:
            raise ValueError(f"smoothness must be >= 0, got {smoothness}")
        cal = cv2.createCalibrateDebevec(int(samples), float(smoothness), False)
    elif method == "robertson":
        cal = cv2.createCalibrateRobertson()
    else:
        raise ValueError(f"method must be 'debevec' or 'robertson', got {method!r}")
    try:
        r = cal.process(bgr, tt)
    except cv2.error as e:
        raise ValueError(f"response calibration failed: {e}") from None
    r = np.asarray(r, dtype=np.float64).reshape(256, 3)[:, ::-1]
    return _fix_response(r)


# --------------------------------------------------------------------------- helpers


def _interp_codes(z: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Per-channel linear interpolation of ``table`` (256, 3) at continuous codes ``z`` (..., 3)."""
    z = np.clip(z, 0.0, 255.0)
    i0 = np.minimum(z.astype(np.int32), 254)
    f = z - i0
    ch = np.arange(3)
    return table[i0, ch] * (1.0 - f) + table[i0 + 1, ch] * f


def _hat(z: np.ndarray, zmin: np.ndarray, zmax: np.ndarray) -> np.ndarray:
    """Debevec & Malik's hat on codes: 0 at ``zmin`` and ``zmax`` (and beyond), 1 half-way."""
    half = (zmax - zmin) / 2.0
    return np.clip(np.minimum(z - zmin, zmax - z) / half, 0.0, None)


def _smooth_log_slope(lg: np.ndarray) -> np.ndarray:
    """d ln(response) / d code, averaged over 9 codes (recovered curves are locally noisy)."""
    d = np.gradient(lg, axis=0)
    k = np.ones(9) / 9.0
    pad = np.pad(d, ((4, 4), (0, 0)), mode="edge")
    return np.stack([np.convolve(pad[:, c], k, mode="valid") for c in range(3)], axis=1)


def _code_range(z, order, code_range) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (zmin, zmax) of the hat: given, or the bracket's own black and white codes.

    ``z(i)`` gives frame i's codes, ``order`` the frame indices shortest to
    longest.  The bracket's lowest code (0.01 % quantile of all frames) is
    taken as black only where it is a floor the data piles up on - at least
    25 % of the shortest frame within 4 codes of it, as at a film scan's fog
    level - and likewise the highest code as white with the longest frame;
    otherwise 0 and 255.  Pixels whose channels are all 0 or 255 (clipped
    white, black, pure-primary border markers) are left out.
    """
    if code_range is not None:
        lo, hi = (float(v) for v in code_range)
        if not 0 <= lo < hi <= 255 or hi - lo < 32:
            raise ValueError(f"code_range must be (lo, hi) with 0 <= lo < hi <= 255 and hi - lo >= 32, got {code_range}")
        return np.full(3, lo, np.float32), np.full(3, hi, np.float32)
    hist = np.zeros((3, 256), np.int64)
    first = last = None
    for i in order:
        q = np.clip(z(i) + 0.5, 0, 255).astype(np.uint8)
        marker = np.all((q == 0) | (q == 255), axis=-1)
        h = np.stack([np.bincount(q[..., c][~marker], minlength=256) for c in range(3)])
        hist += h
        if first is None:
            first = h
        last = h
    zmin = np.zeros(3, np.float32)
    zmax = np.full(3, 255.0, np.float32)
    for c in range(3):
        tot = hist[c].sum()
        if tot == 0:
            continue
        cum = np.cumsum(hist[c]) / tot
        lo = int(np.searchsorted(cum, _LEVEL_QUANTILE))
        hi = int(np.searchsorted(cum, 1.0 - _LEVEL_QUANTILE))
        if first[c].sum() and first[c][: lo + 5].sum() >= _PILE_UP * first[c].sum():
            zmin[c] = min(lo, _MAX_BLACK_CODE)
        if last[c].sum() and last[c][hi - 4 :].sum() >= _PILE_UP * last[c].sum():
            zmax[c] = max(hi, 255.0 - _MAX_BLACK_CODE)
    return zmin, zmax


def _clean_mask(m: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    u = m.astype(np.uint8)
    u = cv2.morphologyEx(u, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    u = cv2.morphologyEx(u, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    if GHOST_DILATE > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GHOST_DILATE + 1, 2 * GHOST_DILATE + 1))
        u = cv2.dilate(u, k)
    out = u.astype(bool)
    if keep is not None:
        out &= ~keep
    return out


def _cascade_masks(est, aux, t, ref, tol_fn, ref_ok: np.ndarray | None = None):
    """Ghost masks: every frame against a local reference, which is the best-exposed frame where the
    reference frame itself is clipped or black.

    Where the reference frame is well exposed it is the local reference.
    Elsewhere the local reference is, among the frames well exposed at the
    pixel, the one with the highest exposure quality averaged over a
    neighbourhood (``_LOCAL_REF_SIGMA`` pixels), so whole regions take one
    frame.  A frame whose value disagrees with the local reference beyond the
    tolerance is dropped there (its mask is cleaned, see :func:`_clean_mask`);
    the local reference itself never is.  Picking the *nearest* exposure
    instead (the previous rule) made a dark moving region take a barely
    exposed frame plus the darker, noisier ones: the magenta blotches of the
    taipei_night foreground trees.

    Args:
        est: per frame (H, W, 3) exposure-normalised estimates (any domain in
            which ``sig`` is the noise scale).
        aux: ``aux(i) -> (sig, good, usable, quality)`` for frame i: (H, W, 3)
            noise scale, (H, W) bool well exposed (may act as local reference),
            (H, W, 3) bool channel carries information, (H, W) float exposure
            quality (higher = better exposed).  A pixel is a ghost where any
            channel usable in both has ``|est_i - est_L| > tol_fn(sig_i,
            sig_L, est_L)``.
        t: exposures; ref: reference index; tol_fn: tolerance.
        ref_ok: (H, W) bool: the reference frame is the local reference only
            where it is good *and* this holds (a reference pixel whose
            brightest channel is barely above black is noise, not a reference).

    Returns:
        ``(masks, local)``: list of (H, W) bool masks (True = dropped), and the
        (H, W) int16 index of each pixel's local reference (-1: none).
    """
    n = len(est)
    _, good_r, _, _ = aux(ref)
    if ref_ok is not None:
        good_r = good_r & ref_ok
    h, w = good_r.shape
    best = np.full((h, w), -np.inf, np.float32)
    local = np.full((h, w), -1, np.int16)
    for i in range(n):  # the local reference: the reference where it is good, else the best-exposed good frame
        _, good_i, _, q = aux(i)
        qs = cv2.GaussianBlur(q.astype(np.float32), (0, 0), _LOCAL_REF_SIGMA)
        qs = np.where(good_i & ~good_r, qs, -np.inf)
        better = qs > best
        best[better] = qs[better]
        local[better] = i
    local[good_r] = ref
    del best
    loc_est = np.zeros((h, w, 3), np.float32)
    loc_sig = np.zeros((h, w, 3), np.float32)
    loc_use = np.zeros((h, w, 3), bool)
    for i in range(n):
        sel = local == i
        if sel.any():
            sig_i, good_i, use_i, _ = aux(i)
            loc_est[sel] = est[i][sel]
            loc_sig[sel] = sig_i[sel]
            loc_use[sel] = use_i[sel] & good_i[sel][..., None]
    have = local >= 0
    masks = []
    for i in range(n):
        sig_i, _, use_i, _ = aux(i)
        diff = np.abs(est[i] - loc_est)
        raw = np.any(use_i & loc_use & (diff > tol_fn(sig_i, loc_sig, loc_est)), axis=-1) & have
        del diff
        masks.append(_clean_mask(raw, keep=local == i))
    return masks, local


# --------------------------------------------------------------------------- LDR merge


def merge_ldr(
    frames: list[np.ndarray],
    times_s: list[float],
    response: np.ndarray,
    *,
    deghost: bool = False,
    reference: int | None = None,
    deghost_threshold: float = 0.25,
    weighting: str = "hat",
    code_range: tuple[float, float] | None = None,
    return_masks: bool = False,
):
    """Debevec & Malik's merge of display-referred frames into linear radiance.

    ``ln E = sum_i w(Z_i) (g(Z_i) - ln t_i) / sum_i w(Z_i)`` per pixel and
    channel, with ``g = ln response`` interpolated linearly between code
    values (frames from 16-bit files keep their precision) and the paper's hat
    weight ``w(Z) = Z - Zmin`` below the middle, ``Zmax - Z`` above
    (normalised to 1), which is 0 at both ends, so clipped and black channels
    (and pure-blue border markers) do not count.  ``Zmin``/``Zmax`` are the
    bracket's own black and white codes (``code_range``; by default per
    channel the 0.01 % / 99.99 % quantiles of all frames' codes where the
    shortest / longest frame piles up on them, black at most 32, white at
    least 223, else 0 and 255: 0 and 255 for digital files, the fog level
    12-15 of the film scans in Debevec's memorial stack).  Where a channel has zero total
    weight it takes the best frame available: the shortest exposure where the
    bracket is saturated there (shortest frame's code above mid-range; a lower
    bound), the longest where it is black.

    Args:
        frames: >= 2 ``(H, W, 3)`` RGB float arrays in [0, 1] (code / 255;
            16-bit files: code / 65535 — both are display values in [0, 1]).
        times_s: exposure times, all different, any order.
        response: ``(256, 3)`` strictly increasing linear exposure per code
            (:func:`recover_response`, :func:`srgb_response`).
        deghost: drop moving-object pixels (module docstring).  A frame's
            pixel is a ghost where, in any channel usable in both (hat weight
            >= 0.1, i.e. not within ~6 % of the code range of black or white),
            ``|ln E_i - ln E_ref| > deghost_threshold + hypot(s_i,
            s_ref)`` with ``s = 3 * g'(Z) * 1 code`` the 3-sigma log-domain
            effect of one code of noise/quantisation (large where the response
            is steep, near its ends).  The reference is well exposed where all
            channels lie 3 % of the code range inside ``[Zmin, Zmax]``.
        reference: index (in the given order) of the reference frame; default
            the middle exposure.
        deghost_threshold: natural-log tolerance (0.25 = about 28 %) on top
            of the noise term; covers response-model error.
        weighting: ``"hat"`` (Debevec & Malik) or ``"snr"``: the hat times
            ``min(1, (g'_typ / g'(Z))**2)``, the inverse log-domain variance of
            one code of noise relative to the typical slope ``g'_typ`` (median
            over the middle half of the code range), so codes where the
            response is steep (film toe, shoulder) count less; capped at 1 so
            flat, poorly constrained stretches never gain weight.
        code_range: ``(Zmin, Zmax)`` for all channels instead of the automatic
            levels.
        return_masks: also return the ghost masks.

    Returns:
        float32 ``(H, W, 3)`` radiance scaled to the reference exposure
        (``E * t_ref``, in the response's units); with ``return_masks`` a tuple
        ``(radiance, masks)``, ``masks`` bool ``(N, H, W)`` in the given frame
        order, True = dropped as ghost (all False without ``deghost``).

    Raises:
        ValueError: bad frames, times, response, reference or options.
    """
    h, w = _check_frames(frames, ldr_uint8=False)
    n = len(frames)
    t = _check_times(times_s, n, "times_s")
    ref = _reference_index(t, reference)
    lg = _log_response(response)
    if not deghost_threshold >= 0:
        raise ValueError(f"deghost_threshold must be >= 0, got {deghost_threshold}")
    if weighting not in ("hat", "snr"):
        raise ValueError(f"weighting must be 'hat' or 'snr', got {weighting!r}")
    lnt = np.log(t)
    lg32 = lg.astype(np.float32)
    slope = _smooth_log_slope(lg).astype(np.float32)

    # Frames are processed one at a time (codes, estimates and weights are
    # recomputed rather than kept for all frames) unless deghosting needs them.
    def codes(i):
        return np.clip(np.nan_to_num(np.asarray(frames[i], np.float32)), 0.0, 1.0) * np.float32(255.0)

    def estimate(i, zi):  # ln E of frame i
        return _interp_codes(zi, lg32) - np.float32(lnt[i])

    zmin, zmax = _code_range(codes, np.argsort(t, kind="stable"), code_range)
    typ = None
    if weighting == "snr":
        typ = np.empty(3, np.float32)
        for c in range(3):
            q = (zmax[c] - zmin[c]) / 4
            typ[c] = np.median(slope[int(np.ceil(zmin[c] + q)) : int(zmax[c] - q) + 1, c])

    def weight(zi):
        wi = _hat(zi, zmin, zmax).astype(np.float32)
        if typ is not None:
            wi *= np.minimum(1.0, (typ / _interp_codes(zi, slope)) ** 2)
        return wi

    masks = [np.zeros((h, w), bool) for _ in range(n)]
    if deghost:
        z = [codes(i) for i in range(n)]
        est = [estimate(i, zi) for i, zi in enumerate(z)]
        thr = np.float32(deghost_threshold)
        margin = _LDR_WELL * (zmax - zmin)

        def aux(i):
            zi = z[i]
            sig = np.float32(3 * _LDR_CODE_SIGMA) * _interp_codes(zi, slope)
            good = np.all((zi >= zmin + margin) & (zi <= zmax - margin), axis=-1)
            hat = _hat(zi, zmin, zmax)
            return sig, good, hat >= _LDR_COMPARE_WEIGHT, hat.min(axis=-1)  # quality: the worst channel's hat

        ref_ok = np.any(z[ref] >= zmin + np.float32(_LDR_REF_DARK) * (zmax - zmin), axis=-1)
        masks, local = _cascade_masks(est, aux, t, ref, lambda si, sl, el: thr + np.hypot(si, sl), ref_ok=ref_ok)

    num = np.zeros((h, w, 3), np.float32)
    den = np.zeros((h, w, 3), np.float32)
    den_all = np.zeros((h, w, 3), np.float32) if deghost else den
    for i in range(n):
        zi = z[i] if deghost else codes(i)
        wi = weight(zi)
        if deghost:
            den_all += wi
            wi *= ~masks[i][..., None]
        num += wi * (est[i] if deghost else estimate(i, zi))
        den += wi
        del wi
    out = num / np.maximum(den, np.float32(1e-30))
    del num
    if deghost:
        # Where dropping ghosts left a channel with little of its evidence (only near-black or near-white
        # codes of the remaining frames), a weighted mean of those is noise with a colour cast: take the
        # local reference frame alone there (one consistent, best-exposed snapshot).
        thin = np.any(den < np.float32(_LDR_THIN_EVIDENCE) * den_all, axis=-1) & (local >= 0)
        for i in np.unique(local[thin]):
            sel = thin & (local == i)
            out[sel] = est[i][sel]
        den = np.where(thin[..., None], np.float32(1.0), den)
        del den_all

    empty = den <= 0
    if np.any(empty):
        order = np.argsort(t, kind="stable")  # shortest .. longest
        saturated = codes(order[0]) >= (zmin + zmax) / 2
        fill = np.zeros((h, w, 3), np.float32)
        cand = order if deghost else order[[0, -1]]
        # visit longest -> shortest so the shortest unmasked frame wins where saturated ...
        for i in cand[::-1]:
            e_i = est[i] if deghost else estimate(i, codes(i))
            ok = saturated & ~masks[i][..., None]
            fill[ok] = e_i[ok]
        # ... and shortest -> longest so the longest unmasked frame wins where black
        for i in cand:
            e_i = est[i] if deghost else estimate(i, codes(i))
            ok = ~saturated & ~masks[i][..., None]
            fill[ok] = e_i[ok]
        out[empty] = fill[empty]

    rad = np.exp(out + np.float32(lnt[ref])).astype(np.float32)
    if return_masks:
        return rad, np.stack(masks)
    return rad


def reexpose(radiance: np.ndarray, time_ratio: float, response: np.ndarray) -> np.ndarray:
    """Predict the code values of a frame exposed ``time_ratio`` times the reference.

    The inverse of :func:`merge_ldr`'s mapping: ``code = response^-1(radiance
    * time_ratio)`` per channel, interpolating ``ln response`` linearly
    between code values (as the merge does).

    Args:
        radiance: ``(H, W, 3)`` output of :func:`merge_ldr` (reference units).
        time_ratio: ``t_frame / t_reference`` (> 0).
        response: the response used for the merge.

    Returns:
        float32 ``(H, W, 3)`` continuous code values in [0, 255] (exposures
        below code 0's / above code 255's value clip to 0 / 255).
    """
    if not (np.isfinite(time_ratio) and time_ratio > 0):
        raise ValueError(f"time_ratio must be positive, got {time_ratio}")
    lg = _log_response(response)
    r = np.asarray(radiance, np.float64)
    if r.ndim != 3 or r.shape[2] != 3:
        raise ValueError(f"radiance must be (H, W, 3), got {r.shape}")
    x = np.log(np.maximum(r * time_ratio, 1e-300))
    codes = np.arange(256, dtype=np.float64)
    out = np.empty(r.shape, np.float32)
    for c in range(3):
        out[..., c] = np.interp(x[..., c], lg[:, c], codes)
    return out


# --------------------------------------------------------------------------- RAW-linear merge


def merge_linear(
    frames: list[np.ndarray],
    exposures: list[float],
    *,
    clip: float = 0.98,
    read_noise: float = 1e-4,
    gain: float = 1e-4,
    deghost: bool = False,
    reference: int | None = None,
    deghost_threshold: float = 5.0,
    model_error: float = 0.02,
    return_masks: bool = False,
):
    """Noise-optimal merge of linear (RAW-developed) frames.

    Frame ``i`` estimates the scene as ``x_i / e_i``.  With the
    Poisson-Gaussian model ``var(x) = gain * x + read_noise**2`` that estimate
    has variance ``var(x_i) / e_i**2``, and the merge is the inverse-variance
    weighted mean with ``w_i = e_i**2 / var(x_i)``.  To avoid the bias of
    weights computed from the noisy values themselves (darker noise samples
    getting more weight), the variances are evaluated at the expected value
    ``e_i * s`` from a first-pass estimate ``s`` (two passes, Granados et al.
    2010).  A frame's pixel is excluded where any channel is ``>= clip``
    (sensor or white-balance clipping).  Where every frame is clipped the
    pixel takes the shortest exposure's ``x / e`` (a lower bound).

    Args:
        frames: >= 2 ``(H, W, 3)`` float arrays; 1.0 = sensor white after
            white balance.
        exposures: relative exposure of each frame (time x ISO gain x aperture
            factor), all different, any order.
        clip: clipping threshold on the frame values.
        read_noise: read-noise sigma in frame units (white = 1).
        gain: shot-noise variance per unit signal (1 / full-well electrons at
            white, for a base-ISO frame).
        deghost: drop moving-object pixels (module docstring).  A frame's
            pixel is a ghost where, in any channel, ``|x_i/e_i - x_L/e_L| >
            deghost_threshold * sqrt(var_i/e_i**2 + var_L/e_L**2 + (model_error *
            x_L/e_L)**2)`` (``L`` the reference, or the local reference where
            it is clipped or black); the reference is well exposed where no
            channel is clipped and the brightest channel is above 10 read-noise
            sigmas.
        reference: index (in the given order) of the reference frame; default
            the middle exposure.
        deghost_threshold: tolerance in noise sigmas.
        model_error: relative error of the exposure ratios / demosaicing
            added in quadrature to the noise in the ghost test (real brackets
            are never exact to 1 %).
        return_masks: also return the ghost masks.

    Returns:
        float32 ``(H, W, 3)`` radiance in units of the reference frame (a pixel
        well exposed there keeps about ``x_ref``); with ``return_masks`` a tuple
        ``(radiance, masks)``, ``masks`` bool ``(N, H, W)``, True = dropped.

    Raises:
        ValueError: bad frames, exposures, parameters or reference.
    """
    h, w = _check_frames(frames, ldr_uint8=False)
    n = len(frames)
    e = _check_times(exposures, n, "exposures")
    ref = _reference_index(e, reference)
    if not (clip > 0 and read_noise > 0 and gain >= 0 and deghost_threshold >= 0 and model_error >= 0):
        raise ValueError("clip and read_noise must be > 0; gain, deghost_threshold, model_error >= 0")
    xs = [np.nan_to_num(np.asarray(f, np.float32)) for f in frames]  # no copy for finite float32 input
    rn2 = np.float32(read_noise**2)
    g = np.float32(gain)
    ok = [np.all(x < clip, axis=-1) for x in xs]  # per pixel: no channel clipped

    def estimate(i):
        return xs[i] / np.float32(e[i])

    masks = [np.zeros((h, w), bool) for _ in range(n)]
    if deghost:
        me2 = np.float32(model_error**2)
        thr = np.float32(deghost_threshold)
        est = [estimate(i) for i in range(n)]

        def aux(i):
            sig = np.sqrt((g * np.maximum(xs[i], 0) + rn2) / np.float32(e[i] ** 2))
            good = ok[i] & (xs[i].max(axis=-1) >= _LIN_BLACK_SIGMAS * read_noise)
            # quality: signal relative to the clip level where unclipped (the longest unclipped exposure has the best SNR)
            return sig, good, ok[i][..., None], np.where(ok[i], xs[i].max(axis=-1) / np.float32(clip), 0.0)

        masks, _ = _cascade_masks(est, aux, e, ref, lambda si, sl, el: thr * np.sqrt(si * si + sl * sl + me2 * el * el))
        del est
    use = [ok[i] & ~masks[i] for i in range(n)]

    def weighted(var_of):
        num = np.zeros((h, w, 3), np.float32)
        den = np.zeros((h, w, 3), np.float32)
        for i in range(n):
            wi = np.float32(e[i] ** 2) / var_of(i)
            wi *= use[i][..., None]
            num += wi * estimate(i)
            den += wi
        return num / np.maximum(den, np.float32(1e-30)), den

    # pass 1: variances at the observed values; pass 2: at the expected values e_i * s
    s0, _ = weighted(lambda i: g * np.maximum(xs[i], 0) + rn2)
    out, den = weighted(lambda i: g * np.maximum(np.float32(e[i]) * s0, 0) + rn2)
    del s0

    empty = den[..., 0] <= 0
    if np.any(empty):
        # every frame clipped (or dropped): shortest unmasked frame (lower bound)
        fill = np.zeros((h, w, 3), np.float32)
        for i in np.argsort(e, kind="stable")[::-1]:
            sel = ~masks[i]
            fill[sel] = estimate(i)[sel]
        out[empty] = fill[empty]

    rad = (out * np.float32(e[ref])).astype(np.float32)
    if return_masks:
        return rad, np.stack(masks)
    return rad
