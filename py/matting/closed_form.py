"""Closed-form matting (Levin, Lischinski and Weiss) restricted to the trimap's unknown band.

In every 3 × 3 window alpha is modelled as an affine function of the colour; the matting
Laplacian ``L`` measures how far an alpha is from that, and the alpha that minimises
``alphaᵀ L alpha`` with the known pixels held at their trimap values solves the sparse system
``L_uu x = -L_uk alpha_k`` over the unknown pixels ``u``. Only windows that touch the band are
built (``scipy.sparse``), and the system is solved by conjugate gradients with a Jacobi
preconditioner, started from the coarse mask, with a checkpoint for Cancel every few iterations.
Large images are worked on in tiles around the band, each read with a margin of context.

Own implementation (numpy + scipy), so the pack does not depend on pymatting and numba.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy import sparse

from ..checks import count, number
from ..images import to_mask
from ..interrupt import checkpoint
from ._filters import as_rgb, band_tiles
from .trimap import unknown_of

__all__ = ["closed_form_alpha", "matting_laplacian_rows", "DEFAULT_EPS", "DEFAULT_PRIOR", "TILE", "MARGIN"]

log = logging.getLogger(__name__)

#: Regularisation of the per-window colour model (colours in 0..1); Levin et al.'s value.
DEFAULT_EPS = 1e-7
#: Weight of the pull towards the coarse mask inside the band (0: none).
DEFAULT_PRIOR = 0.0
#: Tile side and context margin in pixels: a tile's system has at most ``(TILE + 2 MARGIN)²`` unknowns.
TILE, MARGIN = 384, 32
#: Conjugate-gradient stopping rule: relative residual, and the most iterations per tile (bounds the
#: cost of a wide band; on the benchmark 1e-4 and 300 give the same SAD as 1e-6 and 2000 in half the time).
RTOL, MAX_ITER = 1e-4, 300
#: Windows handled per chunk while the Laplacian is assembled (bounds the temporary memory).
_CHUNK = 65536


def matting_laplacian_rows(
    image: np.ndarray, unknown: np.ndarray, eps: float
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The rows of the matting Laplacian that belong to the unknown pixels.

    Arguments:
        image: ``[h, w, 3]`` float64 RGB in 0..1.
        unknown: ``[h, w]`` bool.
        eps: the colour model's regularisation.

    Returns:
        ``(L_rows, index)``: ``L_rows`` is ``[n_unknown, h * w]`` CSR (row ``i`` is the Laplacian
        row of the ``i``-th unknown pixel in raster order), ``index`` the flat pixel indices of
        the unknown pixels. Only the 3 × 3 windows lying wholly inside the image are used.
    """
    h, w = unknown.shape
    index = np.flatnonzero(unknown.ravel())
    row_of = np.full(h * w, -1, dtype=np.int64)
    row_of[index] = np.arange(index.size)
    if h < 3 or w < 3:
        return sparse.csr_matrix((index.size, h * w)), index
    # window centres whose window touches an unknown pixel, inside the image
    touch = np.zeros((h, w), dtype=bool)
    ys, xs = np.nonzero(unknown)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cy, cx = ys + dy, xs + dx
            ok = (cy >= 1) & (cy < h - 1) & (cx >= 1) & (cx < w - 1)
            touch[cy[ok], cx[ok]] = True
    centres = np.flatnonzero(touch.ravel())
    offsets = np.array([dy * w + dx for dy in (-1, 0, 1) for dx in (-1, 0, 1)], dtype=np.int64)
    flat = image.reshape(-1, 3)
    eye = np.eye(3) * (eps / 9.0)
    rows_parts, cols_parts, vals_parts = [], [], []
    for start in range(0, centres.size, _CHUNK):
        c = centres[start:start + _CHUNK]
        idx = c[:, None] + offsets[None, :]  # [K, 9]
        colours = flat[idx]  # [K, 9, 3]
        mean = colours.mean(axis=1, keepdims=True)
        centred = colours - mean
        cov = np.matmul(centred.transpose(0, 2, 1), centred) / 9.0 + eye
        inv = np.linalg.inv(cov)
        g = (1.0 + np.matmul(np.matmul(centred, inv), centred.transpose(0, 2, 1))) / 9.0
        vals = np.eye(9)[None] - g  # [K, 9, 9]: this window's contribution
        r = row_of[idx]  # rows only for unknown pixels
        keep = r >= 0
        kk, ii = np.nonzero(keep)
        rr = np.repeat(r[kk, ii], 9)
        cc = idx[kk].reshape(-1)  # the 9 pixels of the window of each kept (window, unknown pixel) pair
        vv = vals[kk, ii, :].reshape(-1)
        rows_parts.append(rr)
        cols_parts.append(cc)
        vals_parts.append(vv)
    rows = np.concatenate(rows_parts) if rows_parts else np.zeros(0, np.int64)
    cols = np.concatenate(cols_parts) if cols_parts else np.zeros(0, np.int64)
    vals = np.concatenate(vals_parts) if vals_parts else np.zeros(0)
    matrix = sparse.csr_matrix((vals, (rows, cols)), shape=(index.size, h * w))
    matrix.sum_duplicates()
    return matrix, index


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a · b`` without BLAS: a multi-threaded BLAS call for a vector product spins its threads and
    is many times slower than one pass of numpy's own loop when the CPU is busy."""
    return float(np.einsum("i,i->", a, b))


def _pcg(a: sparse.csr_matrix, b: np.ndarray, x: np.ndarray, *, rtol: float, max_iter: int) -> tuple[np.ndarray, int]:
    """Jacobi-preconditioned conjugate gradients for SPD ``a``; checkpoint for Cancel every 25 steps."""
    diag = a.diagonal()
    inv_diag = np.where(diag > 1e-12, 1.0 / np.maximum(diag, 1e-12), 1.0)
    r = b - a @ x
    limit = (rtol * (_dot(b, b) ** 0.5 or 1.0)) ** 2
    z = inv_diag * r
    p = z.copy()
    rz = _dot(r, z)
    for step in range(max_iter):
        if _dot(r, r) <= limit:
            return x, step
        if step % 25 == 0:
            checkpoint()
        ap = a @ p
        denom = _dot(p, ap)
        if denom <= 0:
            return x, step
        step_size = rz / denom
        x += step_size * p
        r -= step_size * ap
        np.multiply(inv_diag, r, out=z)
        rz_new = _dot(r, z)
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, max_iter


def _solve_crop(image: np.ndarray, trimap: np.ndarray, start: np.ndarray, eps: float, prior: float) -> np.ndarray:
    """Alpha of one crop: known pixels from ``trimap``, unknown ones solved (starting from, and pulled by
    ``prior`` towards, the coarse mask ``start``)."""
    unknown = (trimap > 0.0) & (trimap < 1.0)
    alpha = trimap.astype(np.float64).copy()
    if not unknown.any():
        return alpha
    rows, index = matting_laplacian_rows(image, unknown, eps)
    known = np.ones(unknown.size, dtype=bool)
    known[index] = False
    x0 = np.clip(start.ravel()[index].astype(np.float64), 0.0, 1.0)
    a = rows[:, index].tocsr()
    b = -(rows[:, known] @ alpha.ravel()[known])
    if prior > 0:
        a = (a + sparse.identity(index.size, format="csr") * prior).tocsr()
        b = b + prior * x0
    x, steps = _pcg(a, b, x0, rtol=RTOL, max_iter=MAX_ITER)
    if steps >= MAX_ITER:
        log.debug("closed-form matting: stopped after %d iterations (%d unknown pixels)", steps, index.size)
    flat = alpha.ravel()
    flat[index] = np.clip(x, 0.0, 1.0)
    return flat.reshape(alpha.shape)


def closed_form_alpha(
    image: Any,
    trimap: torch.Tensor,
    mask: Any = None,
    *,
    eps: float = DEFAULT_EPS,
    prior: float = DEFAULT_PRIOR,
    tile: int = TILE,
    margin: int = MARGIN,
) -> torch.Tensor:
    """Alpha in the trimap's unknown band by closed-form matting.

    Arguments:
        image: ``[H, W, 3]`` float RGB in ``0..1``.
        trimap: ``[H, W]`` trimap (0 / 0.5 / 1).
        mask: optional ``[H, W]`` coarse mask: the solver's starting point (fewer iterations).
        eps: the colour model's regularisation ``> 0`` (colours in 0..1; larger is smoother).
        prior: weight ``>= 0`` of a pull towards ``mask`` in the band (``prior * sum (alpha - mask)²``
            is added to the matting energy): where the colours do not tell object from background
            (dark on dark, a busy background) alpha stays near the mask instead of drifting; where
            they do, the image wins. 0 is plain closed-form matting.
        tile, margin: the band is solved in tiles of ``tile`` pixels, each with ``margin`` pixels
            of context around it (``margin`` 0 treats each tile on its own). A band that fits in
            one tile is solved in one system, exactly.

    Returns:
        ``[H, W]`` float32 alpha in ``0..1`` on the image's device; known pixels keep the
        trimap's exact 0 or 1.
    """
    rgb = as_rgb(image)
    trimap_t = to_mask(trimap, name="trimap")
    if tuple(trimap_t.shape) != tuple(rgb.shape[:2]):
        raise ValueError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} but the trimap is {trimap_t.shape[1]}x{trimap_t.shape[0]}")
    eps = number("eps", eps, low=0.0, low_open=True)  # type: ignore[assignment]
    prior = number("prior", prior, low=0.0)  # type: ignore[assignment]
    tile = count("tile", tile, low=16)  # type: ignore[assignment]
    margin = count("margin", margin)  # type: ignore[assignment]
    start_t = to_mask(mask, name="mask") if mask is not None else trimap_t
    pixels = rgb.detach().cpu().double().numpy()
    tri = trimap_t.detach().cpu().numpy()
    start = start_t.detach().cpu().numpy()
    unknown = unknown_of(trimap_t.cpu())
    alpha = tri.astype(np.float64).copy()
    for piece in band_tiles(unknown, tile=tile, margin=margin):
        checkpoint()
        oy0, oy1, ox0, ox1 = piece.outer
        solved = _solve_crop(pixels[oy0:oy1, ox0:ox1], tri[oy0:oy1, ox0:ox1], start[oy0:oy1, ox0:ox1], eps, prior)
        rows, cols = piece.inner_in_outer()
        iy0, iy1, ix0, ix1 = piece.inner
        alpha[iy0:iy1, ix0:ix1] = solved[rows, cols]
    out = torch.from_numpy(alpha.astype(np.float32)).to(rgb.device)
    return torch.where(unknown.to(rgb.device), out, trimap_t.to(rgb.device))
