"""HDF5 storage of :class:`~ising_moe.measure.pipeline.Measurements` (through :mod:`ising_moe.io`)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .pipeline import Measurements

log = logging.getLogger(__name__)


_SCALARS_XI = ("xi", "error", "amplitude", "xi_sum", "xi_sum_error", "success", "message", "chi2", "dof", "p_value",
               "capped", "agreement_z", "curvature_z", "curvature_p_value")


def write_measurements(result: Measurements, path, *, overwrite: bool = False, input_path=None,
                       input_sha256: str | None = None) -> None:
    """Write :func:`measure`'s result to HDF5 (kind ``"stats"``), one group ``layer_<L>`` per layer."""
    from ..io import atomic_h5, write_array

    attrs = {"model_id": result.source.get("model_id", "unknown"), "weights": result.source.get("weights", "unknown"),
             "input_path": str(input_path or result.source.get("path") or ""), "input_sha256": input_sha256 or ""}
    with atomic_h5(path, kind="stats", params=result.params, seed=result.params.get("seed"), overwrite=overwrite,
                   attrs=attrs) as f:
        for st in result.layers:
            g = f.create_group(f"layer_{st.layer}")
            g.attrs["layer"] = st.layer
            g.attrs["n_states"] = st.n_states
            for key in _SCALARS_XI:
                g.attrs[f"xi_{key}" if key != "xi" else "xi"] = getattr(st.xi, key)
            g.attrs["xi_window"] = np.array(st.xi.window)
            for name, obj in (("position", st.position_test), ("load", st.load), ("static", st.static)):
                for key, value in obj.__dict__.items():
                    if np.ndim(value) == 0:
                        g.attrs[f"{name}_{key}"] = value
            # "the" p-value of position dependence is the reflection test; the chi-square one (which assumes
            # independent tokens) is stored only as position_chi2_p_value_iid
            g.attrs["position_p_value"] = st.position_test.p_value
            if st.drop_position_tests:
                for policy, test in st.drop_position_tests.items():
                    g.attrs[f"drops_{policy}_mi_excess"] = test.mi_excess
                    g.attrs[f"drops_{policy}_mi_error"] = test.mi_error
                    g.attrs[f"drops_{policy}_p_value"] = test.p_value
            write_array(g, "rates", st.rates.rates, ("position", "state"))
            write_array(g, "rates_lower", st.rates.lower, ("position", "state"))
            write_array(g, "rates_upper", st.rates.upper, ("position", "state"))
            write_array(g, "n_valid", st.rates.n_valid, ("position",))
            c = st.correlation
            write_array(g, "correlation", c.values, ("distance",))
            write_array(g, "correlation_error", c.errors, ("distance",))
            write_array(g, "correlation_null", c.null, ("null", "distance"))
            write_array(g, "correlation_null_sequence", c.null_sequence, ("null", "distance"))
            if c.null_token.size:
                write_array(g, "correlation_null_token", c.null_token, ("null", "distance"))
            write_array(g, "state_correlation", c.per_state, ("distance", "state"))
            write_array(g, "state_correlation_error", c.per_state_errors, ("distance", "state"))
            if c.block_sizes:
                coords = {"block_size": np.array(c.block_sizes)}
                write_array(g, "xi_block", [st.xi_by_block[b].xi for b in c.block_sizes], ("block_size",), coords)
                write_array(g, "xi_block_error", [st.xi_by_block[b].error for b in c.block_sizes], ("block_size",),
                            coords)
                write_array(g, "xi_block_success", np.array([st.xi_by_block[b].success for b in c.block_sizes]),
                            ("block_size",), coords)
                write_array(g, "xi_block_capped", np.array([st.xi_by_block[b].capped for b in c.block_sizes]),
                            ("block_size",), coords)
                write_array(g, "block_correlation", np.array([c.block_values[b] for b in c.block_sizes]),
                            ("block_size", "distance"), coords)
            write_array(g, "entropy_by_position", st.load.entropy_by_position, ("position",))
            write_array(g, "entropy_by_position_error", st.load.entropy_by_position_error, ("position",))
            write_array(g, "kl_by_position", st.load.kl_by_position, ("position",))
            lrc = st.lrc
            coords = {"segment_length": lrc.segment_lengths, "cache_size": np.arange(1, lrc.sch.shape[1] + 1)}
            write_array(g, "srp", lrc.srp, ("segment_length",), coords)
            write_array(g, "srp_error", lrc.srp_error, ("segment_length",), coords)
            write_array(g, "srp_threshold", lrc.best_threshold, ("segment_length",), coords)
            write_array(g, "sch", lrc.sch, ("segment_length", "cache_size"), coords)
            write_array(g, "sch_error", lrc.sch_error, ("segment_length", "cache_size"), coords)
            write_array(g, "sch_static", lrc.sch_static, ("segment_length", "cache_size"), coords)
            write_array(g, "sch_static_error", lrc.sch_static_error, ("segment_length", "cache_size"), coords)
            if st.dropped_by_position is not None:
                write_array(g, "dropped_by_position", st.dropped_by_position, ("position",))
            if st.indicator_rates is not None:
                write_array(g, "indicator_rates", st.indicator_rates.rates, ("position", "expert"))
                write_array(g, "indicator_correlation", st.indicator_correlation.per_state, ("distance", "expert"))
                write_array(g, "indicator_correlation_error", st.indicator_correlation.per_state_errors,
                            ("distance", "expert"))
        if result.probes:
            p = f.create_group("probe")
            for key in ("features", "target"):
                write_array(p, key, np.array([getattr(r, key) for r in result.probes], dtype="S"), ("probe",))
            for key in ("n_classes", "accuracy", "accuracy_sd", "chance", "n_tokens"):
                write_array(p, key, np.array([getattr(r, key) for r in result.probes]), ("probe",))


def load_measurements(path) -> dict[str, Any]:
    """Read a ``stats`` file: ``{"attrs": ..., "params": ..., "layers": {layer: {...}}, "probes": [...]}``.

    Each layer holds ``correlation``, ``correlation_error``, ``correlation_null`` (and
    ``correlation_null_sequence``, ``correlation_null_token`` where stored), ``rates``, ``xi``,
    ``xi_block`` (dict block size -> (xi, error, success); NaN where the fit failed), and the
    scalar attributes of the group.
    """
    from ..errors import DataFormatError
    from ..io import open_h5, read_array, read_params

    out: dict[str, Any] = {"layers": {}, "probes": []}
    with open_h5(path, kind="stats") as f:
        out["params"] = read_params(f)
        out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for name in sorted(k for k in f if k.startswith("layer_")):
            g = f[name]
            try:
                layer = int(g.attrs["layer"])
            except (KeyError, TypeError, ValueError):
                raise DataFormatError(f"{path}:{name} lacks its layer attribute") from None
            entry = {key: (v.decode() if isinstance(v, bytes) else v) for key, v in g.attrs.items()}
            corr = read_array(g, "correlation", kinds="f", ndim=1)
            entry["correlation"] = corr
            entry["correlation_error"] = read_array(g, "correlation_error", kinds="f", shape=corr.shape)
            entry["correlation_null"] = read_array(g, "correlation_null", kinds="f", ndim=2)
            for key in ("correlation_null_sequence", "correlation_null_token"):
                if key in g:
                    entry[key] = read_array(g, key, kinds="f", ndim=2)
            entry["rates"] = read_array(g, "rates", kinds="f", ndim=2)
            if "block_size" in g:
                sizes = read_array(g, "block_size", kinds="iu", ndim=1)
                xb = read_array(g, "xi_block", kinds="f", shape=sizes.shape)
                eb = read_array(g, "xi_block_error", kinds="f", shape=sizes.shape)
                ok = (read_array(g, "xi_block_success", kinds="b", shape=sizes.shape) if "xi_block_success" in g
                      else np.isfinite(xb) & (xb < 1e5))
                entry["xi_block"] = {int(b): (float(x), float(e), bool(s)) for b, x, e, s in zip(sizes, xb, eb, ok)}
            out["layers"][layer] = entry
        if "probe" in f:
            p = f["probe"]
            cols = {key: read_array(p, key) for key in ("features", "target", "n_classes", "accuracy",
                                                       "accuracy_sd", "chance", "n_tokens")}
            for i in range(len(cols["accuracy"])):
                out["probes"].append({k: (v[i].decode() if isinstance(v[i], bytes) else v[i].item())
                                      for k, v in cols.items()})
    return out
