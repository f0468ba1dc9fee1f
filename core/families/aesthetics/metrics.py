"""Quality-assessment metrics of the aesthetics family, pure numpy.

The figures of Sugiura & Yamauchi's Table 1 (tag-aware image quality assessment on
AVA), plus NIMA's per-image EMD.

Every function works on the last axis, so a ``[B, N]`` stack of bootstrap
resamples is scored in one vectorised call (``B`` results).

Per-image agreement with the mean opinion score (MOS):

- Error, Error_var, Error_std: the absolute errors ``e_i = |pred_i - mos_i|`` over
  the test images, summarised by their mean (:func:`mean_abs_error`, the paper's
  "Error"), their population variance (ddof = 0, :func:`abs_error_variance`) and
  its square root (:func:`abs_error_std`). :func:`abs_error` returns (mean, std).
  The paper's Table 1 gives each Error with a figure in parentheses (the
  ``0.442 (±0.136)`` form) that its text calls the error *variance*; the variance
  is most likely what the table reports: for absolute errors of mean 0.442 a std
  of 0.136 would need unusually even errors (half-normal errors of that mean have
  std 0.33 and variance 0.11). Both are reported, each under its own name.
- :func:`lcc`: Pearson's linear correlation coefficient. No logistic mapping by
  default (the paper reports plain LCC); :func:`logistic4_fit` provides the
  4-parameter logistic of VQEG (2000, "Final report from the video quality experts
  group on the validation of objective models of video quality assessment",
  Phase I, section 5.1) that IQA toolkits fit before LCC:
  ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.
- :func:`srcc`: Spearman's rank correlation, the Pearson correlation of ranks with
  ties given their average rank (as ``scipy.stats.spearmanr``).

Distribution comparison over the test set (the paper's KL Divergence and EMD
columns compare the histogram of predicted scores with that of true scores, its
Fig. 3):

- :func:`score_histogram`: normalised histogram with ``n_bins`` equal bins over
  ``[lo, hi]``; the default is 10 unit bins with edges ``0.5, 1.5, ..., 10.5``,
  one per vote value 1..10 (bin k holds scores in ``[k - 0.5, k + 0.5)``; the last
  bin is closed). Scores outside the range are counted in the end bins.
- :func:`kl_divergence`: ``KL(P_true || P_pred) = sum_k p_k log(p_k / q_k)`` in
  nats, p the histogram of the true scores and q that of the predictions (the
  direction of ``scipy.stats.entropy(p, q)``), after epsilon smoothing of both
  histograms: ``p <- (p + eps) / (1 + K eps)`` (default ``eps = 1e-4``, protocol
  ``kl_epsilon``), so an empty predicted bin where true scores fall costs about
  ``p_k log(p_k / eps)`` instead of infinity. The value then depends strongly on
  eps (on the embedded task with toy_clip, image_only: 1.76 at 1e-4, 0.90 at 1e-2):
  compare KL figures only at the same eps.
- :func:`emd`: Earth Mover's Distance in the form of NIMA (Talebi & Milanfar,
  "NIMA: Neural Image Assessment", IEEE TIP 2018, Eq. 1):
  ``EMD(p, q) = (1/K sum_{k=1..K} |CDF_p(k) - CDF_q(k)|^r)^(1/r)`` with ``r = 2``.
  Applied to the two test-set histograms it is the paper's EMD column; applied to
  a predicted and a true 10-bin vote distribution per image it is NIMA's per-image
  EMD (:func:`nima_emd`, averaged over images).
"""

from __future__ import annotations

import numpy as np

DEFAULT_BINS = 10
DEFAULT_RANGE = (0.5, 10.5)
DEFAULT_KL_EPS = 1e-4


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"predictions {pred.shape} and targets {true.shape} differ in shape")
    if pred.shape[-1:] == (0,):
        raise ValueError("no items to score")
    if not (np.isfinite(pred).all() and np.isfinite(true).all()):
        raise ValueError("scores must be finite (got nan or inf)")
    return pred, true


# ----------------------------------------------------------------------------- per image
def _scalar(x: np.ndarray) -> np.ndarray | float:
    return float(x) if np.ndim(x) == 0 else x


def mean_abs_error(pred, true) -> np.ndarray | float:
    """"Error": ``mean |pred - true|`` along the last axis."""
    pred, true = _pair(pred, true)
    return _scalar(np.abs(pred - true).mean(axis=-1))


def abs_error_variance(pred, true) -> np.ndarray | float:
    """"Error_var": population variance (ddof=0) of ``|pred - true|`` along the last axis."""
    pred, true = _pair(pred, true)
    return _scalar(np.abs(pred - true).var(axis=-1))


def abs_error_std(pred, true) -> np.ndarray | float:
    """"Error_std": population std (ddof=0) of ``|pred - true|``, the root of Error_var."""
    pred, true = _pair(pred, true)
    return _scalar(np.abs(pred - true).std(axis=-1))


def abs_error(pred, true) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Mean and population std (ddof=0) of ``|pred - true|`` along the last axis."""
    pred, true = _pair(pred, true)
    err = np.abs(pred - true)
    mean, std = err.mean(axis=-1), err.std(axis=-1)
    return (float(mean), float(std)) if err.ndim == 1 else (mean, std)


def lcc(pred, true) -> np.ndarray | float:
    """Pearson correlation along the last axis (nan when either side is constant)."""
    pred, true = _pair(pred, true)
    a = pred - pred.mean(axis=-1, keepdims=True)
    b = true - true.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, (a * b).sum(axis=-1) / np.where(den > 0, den, 1.0), np.nan)
    r = np.clip(r, -1.0, 1.0)
    return float(r) if r.ndim == 0 else r


def rankdata(x, axis: int = -1) -> np.ndarray:
    """Ranks 1..n along ``axis``, ties get their average rank (scipy's 'average')."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    n = x.shape[-1]
    order = np.argsort(x, axis=-1, kind="stable")
    xs = np.take_along_axis(x, order, axis=-1)
    pos = np.broadcast_to(np.arange(n), xs.shape)
    starts = np.ones(xs.shape, dtype=bool)
    starts[..., 1:] = xs[..., 1:] != xs[..., :-1]
    ends = np.ones(xs.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=-1)
    last = np.flip(np.minimum.accumulate(np.flip(np.where(ends, pos, n - 1), -1), axis=-1), -1)
    ranks = np.empty(xs.shape)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=-1)
    return np.moveaxis(ranks, -1, axis)


def srcc(pred, true) -> np.ndarray | float:
    """Spearman rank correlation along the last axis (average ranks for ties)."""
    pred, true = _pair(pred, true)
    return lcc(rankdata(pred), rankdata(true))


def logistic4(x, params) -> np.ndarray:
    """VQEG 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3)/|b4|)) + b2``."""
    b1, b2, b3, b4 = params
    z = np.clip(-(np.asarray(x, dtype=np.float64) - b3) / max(abs(b4), 1e-12), -500, 500)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def logistic4_fit(pred, true) -> tuple[np.ndarray, bool]:
    """Least-squares fit of :func:`logistic4` mapping ``pred`` to ``true`` (1-D).

    Start values as in VQEG's procedure: ``b1 = max(true)``, ``b2 = min(true)``,
    ``b3 = mean(pred)``, ``b4 = std(pred)``. Returns ``(params, converged)``; when the
    optimiser fails, a monotone linear-range start is returned with ``False``."""
    from scipy.optimize import curve_fit

    pred, true = _pair(pred, true)
    if pred.ndim != 1:
        raise ValueError("logistic4_fit takes 1-D scores")
    start = np.array([true.max(), true.min(), pred.mean(), max(pred.std(), 1e-6)])
    try:
        params, _ = curve_fit(lambda x, b1, b2, b3, b4: logistic4(x, (b1, b2, b3, b4)),
                              pred, true, p0=start, maxfev=20_000)
        ok = bool(np.isfinite(params).all())
    except (RuntimeError, ValueError, FloatingPointError):
        params, ok = start, False
    return (params if ok else start), ok


def lcc_logistic(pred, true) -> tuple[float, np.ndarray, bool]:
    """LCC after the 4-parameter logistic fit on the same items (IQA toolkits'
    convention). Returns ``(lcc, params, converged)``."""
    params, ok = logistic4_fit(pred, true)
    return lcc(logistic4(pred, params), true), params, ok


# ----------------------------------------------------------------------------- distributions
def bin_edges(n_bins: int = DEFAULT_BINS, lo: float = DEFAULT_RANGE[0],
              hi: float = DEFAULT_RANGE[1]) -> np.ndarray:
    if n_bins < 1 or not hi > lo:
        raise ValueError(f"need n_bins >= 1 and hi > lo (got {n_bins}, [{lo}, {hi}])")
    return np.linspace(lo, hi, n_bins + 1)


def score_histogram(scores, n_bins: int = DEFAULT_BINS, lo: float = DEFAULT_RANGE[0],
                    hi: float = DEFAULT_RANGE[1]) -> np.ndarray:
    """Normalised histogram of ``scores`` along the last axis: ``[..., n_bins]``
    (equal bins over ``[lo, hi]``, out-of-range scores clipped into the end bins)."""
    scores = np.asarray(scores, dtype=np.float64)
    bin_edges(n_bins, lo, hi)
    if scores.shape[-1] == 0:
        raise ValueError("no scores to histogram")
    idx = np.clip(np.floor((scores - lo) / (hi - lo) * n_bins), 0, n_bins - 1).astype(np.int64)
    flat = idx.reshape(-1, idx.shape[-1])
    offsets = (np.arange(flat.shape[0]) * n_bins)[:, None]
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * n_bins)
    hist = counts.reshape(flat.shape[0], n_bins) / flat.shape[1]
    return hist.reshape(*idx.shape[:-1], n_bins)


def smooth(p, eps: float = DEFAULT_KL_EPS) -> np.ndarray:
    """``(p + eps) / sum(p + eps)`` along the last axis."""
    p = np.asarray(p, dtype=np.float64) + eps
    return p / p.sum(axis=-1, keepdims=True)


def kl_divergence(p_true, q_pred, eps: float = DEFAULT_KL_EPS) -> np.ndarray | float:
    """``KL(p_true || q_pred) = sum_k p_k log(p_k / q_k)`` in nats along the last axis
    (``scipy.stats.entropy(p_true, q_pred)``), both epsilon-smoothed first."""
    p, q = smooth(p_true, eps), smooth(q_pred, eps)
    with np.errstate(divide="ignore", invalid="ignore"):   # 0 log 0 = 0; p > 0 = q -> inf
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / q), 0.0)
    out = terms.sum(axis=-1)
    return float(out) if out.ndim == 0 else out


def emd(p, q, r: float = 2.0) -> np.ndarray | float:
    """NIMA's EMD: ``(mean_k |CDF_p(k) - CDF_q(k)|^r)^(1/r)`` along the last axis.
    ``p`` and ``q`` are normalised here (they need not sum to 1)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"distributions {p.shape} and {q.shape} differ in shape")
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    d = np.abs(np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1))
    out = (d ** r).mean(axis=-1) ** (1.0 / r)
    return float(out) if out.ndim == 0 else out


def histogram_kl(pred, true, n_bins: int = DEFAULT_BINS, lo: float = DEFAULT_RANGE[0],
                 hi: float = DEFAULT_RANGE[1], eps: float = DEFAULT_KL_EPS):
    """``KL(H_true || H_pred)`` between the test-set histograms of true and predicted
    scores (eps-smoothed, see :func:`kl_divergence`)."""
    pred, true = _pair(pred, true)
    return kl_divergence(score_histogram(true, n_bins, lo, hi),
                         score_histogram(pred, n_bins, lo, hi), eps)


def histogram_emd(pred, true, n_bins: int = DEFAULT_BINS, lo: float = DEFAULT_RANGE[0],
                  hi: float = DEFAULT_RANGE[1], r: float = 2.0):
    """NIMA-form EMD between the test-set histograms of true and predicted scores."""
    pred, true = _pair(pred, true)
    return emd(score_histogram(true, n_bins, lo, hi), score_histogram(pred, n_bins, lo, hi), r)


def nima_emd(pred_dist, true_dist, r: float = 2.0) -> np.ndarray:
    """Per-image EMD between predicted and true 10-bin vote distributions ``[N, 10]``
    (NIMA Eq. 1, r = 2); returns ``[N]``."""
    pred_dist = np.asarray(pred_dist, dtype=np.float64)
    true_dist = np.asarray(true_dist, dtype=np.float64)
    if pred_dist.ndim != 2:
        raise ValueError(f"expected [N, bins] distributions, got shape {pred_dist.shape}")
    return np.asarray(emd(pred_dist, true_dist, r))


def mos_from_votes(votes) -> np.ndarray:
    """``MOS = sum_k k c_k / sum_k c_k`` for vote counts ``[..., 10]`` (scores 1..10)."""
    votes = np.asarray(votes, dtype=np.float64)
    k = np.arange(1, votes.shape[-1] + 1, dtype=np.float64)
    total = votes.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (votes * k).sum(axis=-1) / total


def definitions(n_bins: int, lo: float, hi: float, eps: float, r: float) -> dict[str, str]:
    """Human-readable definition of each metric (the ``note`` of each MetricValue)."""
    edges = bin_edges(n_bins, lo, hi)
    shown = ", ".join(f"{e:g}" for e in edges) if n_bins <= 12 else \
        f"{edges[0]:g}, {edges[1]:g}, ..., {edges[-1]:g}"
    hist = f"histograms of true and predicted test scores, {n_bins} bins with edges [{shown}]"
    return {
        "Error": "mean |pred - MOS| over test images (the paper's Error)",
        "Error_var": "population variance (ddof=0) of |pred - MOS| over test images (what "
                     "the paper calls error variance, most likely the figure in parentheses "
                     "of its Table 1)",
        "Error_std": "population std (ddof=0) of |pred - MOS| over test images, "
                     "sqrt(Error_var)",
        "LCC": "Pearson correlation of pred and MOS, no logistic mapping",
        "LCC_logistic": "Pearson after a 4-parameter logistic fit (VQEG) on the test set",
        "SRCC": "Spearman correlation of pred and MOS (average ranks for ties)",
        "KL": f"KL(P_true || P_pred) = sum p log(p/q) in nats, p = true, q = predicted, "
              f"between {hist}; eps={eps:g} added to each bin of both then renormalised "
              f"(with empty predicted bins the value depends strongly on eps)",
        "EMD": f"NIMA-form EMD (r={r:g}, mean over bins of |CDF diff|^r, then ^(1/r)) between {hist}",
        "NIMA_EMD": f"mean per-image EMD (r={r:g}) between predicted and true 10-bin vote "
                    f"distributions (NIMA Eq. 1)",
    }
