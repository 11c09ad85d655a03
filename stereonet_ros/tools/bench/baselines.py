"""The sgbm section: OpenCV StereoSGBM (``tools.baseline``, the one SGBM of the accuracy
numbers too) and StereoBM on the same frames, with StereoNet's model time over SGBM's from
this run."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

from .timing import summarize, time_calls

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench


def run_sgbm(bench: Bench) -> List[Dict[str, Any]]:
    """Per size: SGBM timings (ms, Hz) over the network's searched range, and the ratios of
    the auto and the fastest precision's model time to it (None without the model section)."""
    from ..baseline import BLOCK_SIZE, make_bm, make_sgbm, num_disparities_for, to_grey_u8
    rows = []
    block = BLOCK_SIZE
    for (w, h) in bench.cfg.sizes:
        # The network's searched range, in SGBM's multiples of 16 (the one baseline of
        # training.measure's accuracy numbers, so speed and accuracy compare one matcher).
        ndisp = num_disparities_for(bench.engine().max_disparity, w)
        sgbm = make_sgbm(ndisp)
        lg, rg = (to_grey_u8(f) for f in bench.frames[(w, h)])
        ms = time_calls(lambda: sgbm.compute(lg, rg), max(bench.cfg.iters, 3), 1, lambda: None)
        s = summarize(ms)
        bm = make_bm(ndisp)
        bm_ms = summarize(time_calls(lambda: bm.compute(lg, rg), max(bench.cfg.iters, 3), 1, lambda: None))["mean_ms"]
        model, best = bench.auto_model_ms((w, h)), bench.best_model_ms((w, h))
        rows.append({"size": f"{w}x{h}", "num_disparities": ndisp, "block_size": block,
                     "mode": "MODE_SGBM_3WAY", **s, "stereobm_mean_ms": bm_ms, "model_mean_ms": model,
                     "model_precision": bench.engine().precision_name,
                     "ratio_model_over_sgbm": (model / s["mean_ms"]) if model else None,
                     "ratio_best_precision_over_sgbm": (best / s["mean_ms"]) if best else None})
        bench.log(f"  sgbm {w}x{h}: {s['mean_ms']:.1f} ms (StereoBM {bm_ms:.1f} ms)" +
                  (f" (StereoNet/SGBM = {model / s['mean_ms']:.2f}x)" if model else ""))
    return rows
