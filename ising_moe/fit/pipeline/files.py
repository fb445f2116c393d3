"""HDF5 storage of a :class:`~ising_moe.fit.pipeline.FitReport` (through :mod:`ising_moe.io`)."""

from __future__ import annotations

import json

import logging

import numpy as np

from .run import FitReport

log = logging.getLogger(__name__)


def write_fit_report(report: FitReport, path, *, overwrite: bool = False, input_sha256: str = "") -> None:
    """Write a :class:`FitReport` to HDF5 (kind ``"fit"``): a group ``layer_<L>`` per layer with the
    empirical correlations and a subgroup per variant (parameters, errors, held-out scores)."""
    from ...io import atomic_h5, write_array

    attrs = {"model_id": report.source.get("model_id", "unknown"), "weights": report.source.get("weights", "unknown"),
             "input_path": str(report.source.get("path") or ""), "input_sha256": input_sha256,
             "note": report.note or ""}
    with atomic_h5(path, kind="fit", params=report.params, seed=report.params.get("seed"), overwrite=overwrite,
                   attrs=attrs) as f:
        for lc in report.layers:
            g = f.create_group(f"layer_{lc.layer}")
            for key in ("layer", "n_states", "n_train", "n_test", "hidden_fraction", "xi_fitted_error", "main"):
                g.attrs[key] = getattr(lc, key)
            if lc.drops is not None:  # Switch capacity drops: position effect they produce (bits/token)
                d = g.create_group("drops")
                for key, value in lc.drops.__dict__.items():
                    d.attrs[key] = value
                d.attrs["sentence"] = lc.drops.sentence()
            if lc.decomposition is not None:
                _write_decomposition(g, lc.decomposition)
            xi = lc.xi_empirical
            g.attrs["xi_empirical"] = xi.xi
            g.attrs["xi_empirical_error"] = xi.error
            g.attrs["xi_window"] = np.array(xi.window)
            g.attrs["xi_message"] = xi.message
            write_array(g, "empirical_correlation", lc.empirical, ("distance",))
            write_array(g, "empirical_correlation_error", lc.empirical_error, ("distance",))
            write_array(g, "empirical_null", lc.empirical_null, ("null", "distance"))
            write_array(g, "residual_z", lc.residual_z, ("distance_from_1",))
            write_array(g, "bootstrap_xi", lc.bootstrap_xi, ("bootstrap",))
            if lc.mc_correlation is not None:
                write_array(g, "mc_correlation", lc.mc_correlation, ("distance",))
                write_array(g, "mc_overlap_z", lc.mc_overlap_z, ("distance_from_1",))
            if lc.indicators is not None:
                ind = g.create_group("indicators")
                ind.attrs["description"] = "per-expert indicator chains (Ising couplings J_e)"
                for key in ("rate", "coupling", "coupling_error", "gain", "gain_error", "empirical_c1", "fitted_c1"):
                    write_array(ind, key, getattr(lc.indicators, key), ("expert",))
            for name, res in lc.fits.items():
                v = g.create_group(f"variant_{name}")
                for key in ("method", "fields_variant", "couplings_variant", "max_range", "success", "message",
                            "n_iter", "log_likelihood", "n_tokens", "n_parameters", "aic", "bic", "l2",
                            "sparse_cells", "error"):
                    v.attrs[key] = getattr(res, key)
                v.attrs["failed"] = bool(res.error)
                v.attrs["xi_fitted_note"] = lc.xi_fitted_note.get(name, "")
                v.attrs["heldout_ll_per_token"] = lc.heldout[name]
                v.attrs["heldout_gain"] = lc.gain[name]
                v.attrs["heldout_gain_error"] = lc.gain_error[name]
                v.attrs["xi_fitted"] = lc.xi_fitted[name]
                v.attrs["xi_spectral"] = lc.xi_spectral[name]
                write_array(v, "fields", res.fields, ("position", "state"))
                write_array(v, "couplings", res.couplings, ("range", "bond", "state", "state_right"))
                if res.fields_stderr is not None:
                    v.attrs["stderr_source"] = res.errors.message
                    write_array(v, "fields_stderr", res.fields_stderr, ("position", "state"))
                    write_array(v, "couplings_stderr", res.couplings_stderr, ("range", "bond", "state", "state_right"))
                write_array(v, "fitted_correlation", lc.fitted_correlation[name], ("distance",))


def _write_decomposition(g, dec) -> None:
    """Group ``decomposition``: the nested table (bits/token, one entry per row of ``rows``) and the
    best row's goodness of fit."""
    from ...io import write_array

    d = g.create_group("decomposition")
    d.attrs["description"] = ("nested held-out log-likelihood per token [bits/token] on the test sequences; gain: "
                              "paired difference to the row's parent (attribute parents) with its error over test "
                              "sequences")
    d.attrs["rows"] = list(dec.rows)
    d.attrs["parents"] = [p or "" for p in dec.parents]
    for key in ("position_lr", "position_lr_dof", "position_lr_p", "n_components", "best",
                "n_train", "n_test", "n_test_tokens", "token_rows", "seconds"):
        d.attrs[key] = getattr(dec, key)
    if dec.latent:
        import json

        d.attrs["latent"] = json.dumps(dec.latent)
    d.attrs["skipped"] = "; ".join(f"{k}: {v}" for k, v in dec.skipped.items())
    d.attrs["power_law"] = json.dumps(dec.power_law)  # the +power-law couplings row's J, sigma, R
    d.attrs["sentence"] = dec.sentence()
    d.attrs["gof_sentence"] = dec.gof_sentence()
    for key in ("heldout", "gain", "gain_error", "n_parameters", "converged", "fit_seconds"):
        write_array(d, key, np.asarray(getattr(dec, key)), ("row",))
    if dec.latent:
        write_array(d, "component_weights", dec.component_weights, ("component",))
    if getattr(dec, "topic", None) is not None:
        _write_topic(d, dec.topic)
    if dec.gof:
        gof = d.create_group("goodness_of_fit")
        for key in ("chi2", "dof", "p_value", "max_abs_z", "max_z_p_value", "z_threshold", "consistent", "message"):
            gof.attrs[key] = dec.gof[key]
        gof.attrs["model"] = dec.best
        for key in ("model", "empirical", "errors", "z"):
            write_array(gof, key, np.asarray(dec.gof[key]), ("distance",), coords={"distance": dec.gof["distances"]})


def _write_topic(d, t) -> None:
    """Group ``decomposition/topic_chain``: the topic chain's row (:class:`~ising_moe.fit.pipeline.topic.TopicRow`)."""
    from ...io import write_array

    g = d.create_group("topic_chain")
    g.attrs["description"] = ("hidden topic moving along the text: random field of (topic, expert) given the tokens; "
                              "gains in bits/token on the test sequences (paired errors); stay_weight is not a "
                              "probability; switching_rate and persistence_length (decay length of the exact topic "
                              "autocorrelation, tokens) on the test sequences' tokens, errors from bootstrap refits")
    for key in ("n_topics", "at_edge", "converged", "gain", "gain_error", "gain_latent", "gain_latent_error",
                "heldout", "stay_weight", "switching_rate", "switching_rate_error", "persistence_length",
                "persistence_length_error", "persistence_reason", "n_bootstrap", "message", "seconds"):
        g.attrs[key] = getattr(t, key)
    g.attrs["sentence"] = t.sentence()
    write_array(g, "candidates", np.asarray(t.candidates, dtype=np.int64), ("candidate",))
    write_array(g, "validation_gain", t.validation_gain, ("candidate",))
    write_array(g, "validation_gain_error", t.validation_gain_error, ("candidate",))
    write_array(g, "topic_autocorrelation", t.autocorrelation, ("distance",))
    write_array(g, "occupancy", t.occupancy, ("topic",))
    write_array(g, "biases", t.biases, ("topic", "state"))
    write_array(g, "posterior", t.posterior, ("sequence", "position", "topic"))
    write_array(g, "posterior_rows", np.asarray(t.posterior_rows, dtype=np.int64), ("sequence",))
    if t.gof:
        gof = g.create_group("goodness_of_fit")
        for key in ("chi2", "dof", "p_value", "max_abs_z", "consistent", "message"):
            gof.attrs[key] = t.gof[key]
        for key in ("model", "empirical", "errors", "z"):
            write_array(gof, key, np.asarray(t.gof[key]), ("distance",), coords={"distance": t.gof["distances"]})
