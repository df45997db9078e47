"""Lamarr's pipeline networks: shapes, determinism, the quantile maps and the shared conversions."""

import numpy as np
import pandas as pd
import pytest
import torch

from models.errors import SimError
from models.lamarr import fastsim, nets


def _particles(n=500, seed=0):
    r = np.random.default_rng(seed)
    p = 10 ** r.uniform(0.3, 2.3, n)
    eta = r.uniform(1.5, 5.5, n)
    phi = r.uniform(-np.pi, np.pi, n)
    pt = p / np.cosh(eta)
    df = pd.DataFrame({
        "event": np.arange(n) // 20, "pid": r.choice([211, -211, 321, -321, 2212, 13, -13, 11], n),
        "p_gev": p, "eta": eta, "phi": phi, "pt_gev": pt, "px_gev": pt * np.cos(phi), "py_gev": pt * np.sin(phi),
        "pz_gev": pt * np.sinh(eta), "vx_mm": r.normal(0, 0.04, n), "vy_mm": r.normal(0, 0.04, n),
        "vz_mm": r.normal(0, 45, n), "n_tracks": r.integers(5, 60, n)})
    df["charge"] = np.sign(df.pid).astype(int) * np.where(np.abs(df.pid) < 20, -1, 1)
    df["track_type"] = r.integers(0, 4, n)
    df["is_muon"] = r.random(n) < 0.1
    for c in nets.RICH_VARS + nets.MUON_VARS:
        df[c] = r.normal(0, 5, n)
    for g, z in nets.SIGNS.items():  # sampled sign patterns
        df[z] = r.integers(0, 3 ** len(nets.STAGE[g].outputs), n)
    return df


@pytest.mark.parametrize("stage", nets.STAGES, ids=lambda s: s.name)
def test_stage_shapes_and_determinism(stage):
    """Shapes; two pipelines built from the same seed compute the same; a GAN's output depends on its noise."""
    nets_ = []
    for _ in range(2):
        torch.manual_seed(11)
        nets_.append(nets.new_pipeline().nets[stage.name])
    df = _particles(64)
    x = torch.from_numpy(nets.feature_matrix(df, stage))
    assert x.shape == (64, nets.n_features(stage))
    first = nets_[0].net[0]
    assert first.in_features == nets.n_features(stage) + stage.latent
    with torch.no_grad():
        if stage.kind == "classifier":
            y1, y2 = (n(x) for n in nets_)
        else:
            z = torch.randn(64, stage.latent, generator=torch.Generator().manual_seed(3))
            y1, y2 = (n(x, z) for n in nets_)
            other = nets_[0](x, torch.randn(64, stage.latent, generator=torch.Generator().manual_seed(4)))
            assert not torch.equal(y1, other)
    assert y1.shape == (64, nets.n_outputs(stage))
    assert torch.equal(y1, y2)
    if stage.kind == "gan":
        assert nets.n_outputs(stage) == len(stage.outputs)


def test_stage_order_is_lamarrs():
    assert [s.name for s in nets.STAGES] == ["acceptance", "tracking", "resolution", "covariance", "ismuon",
                                             "rich_signs", "rich", "muon_signs", "muon", "gpid_signs", "gpid"]
    assert nets.n_outputs(nets.STAGE["tracking"]) == 4  # not reconstructed, long, upstream, downstream
    # each hurdle GAN follows its sign-pattern classifier and is conditioned on the pattern
    assert nets.SIGNS == {"rich": "rich_signs", "muon": "muon_signs", "gpid": "gpid_signs"}
    for g, z in nets.SIGNS.items():
        assert nets.n_outputs(nets.STAGE[z]) == 3 ** len(nets.STAGE[g].outputs)
        assert z in nets.STAGE[g].features and "species" in nets.STAGE[z].features


def test_sign_patterns_round_trip():
    y = np.array([[0.0, 1.5, 0.0, -2.0], [-3.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    pat = nets.sign_pattern(y)
    # state per variable (0: zero, 1: negative, 2: positive), base 3, variable 0 the lowest digit
    assert pat.tolist() == [0 + 2 * 3 + 0 * 9 + 1 * 27, 1, 80, 0]
    assert nets.STAGE["rich_signs"].outputs[pat[0]] == "sign:rich_dll_e0,rich_dll_mu+,rich_dll_k0,rich_dll_p-"
    assert np.array_equal(nets.apply_signs(np.abs(y) + 0.0, pat), y)  # magnitudes + pattern = the values
    filled = nets.apply_signs(np.full(y.shape, 7.0), pat)
    assert np.array_equal(filled == 0, y == 0) and np.array_equal(np.sign(filled), np.sign(y))
    # every class round-trips
    every = np.arange(81)
    states = nets.sign_states(every, 4)
    assert np.array_equal(nets.sign_pattern(np.array([0.0, -1.0, 1.0])[states]), every)
    # the pattern enters a GAN's condition as two flags per variable: exactly 0, negative
    df = _particles(4).assign(track_type=1, rich_signs=pat)
    x = nets.feature_matrix(df, nets.STAGE["rich"])
    assert np.array_equal(x[:, -8:-4], y == 0) and np.array_equal(x[:, -4:], y < 0)


def test_an_untrained_pipeline_allows_every_sign_pattern():
    pipe = nets.new_pipeline(torch.float16)
    for g, z in nets.SIGNS.items():
        assert list(pipe.seen(z)) == list(range(3 ** len(nets.STAGE[g].outputs)))
        assert getattr(pipe, f"seen_{z}").dtype == torch.bool  # not cast with the weights
    assert "seen_rich_signs" in pipe.state_dict()  # saved with the weights


def test_missing_column_is_a_clear_error():
    df = _particles(10).drop(columns=["n_tracks"])
    with pytest.raises(SimError, match="n_tracks"):
        nets.feature_matrix(df, nets.STAGE["tracking"])


def test_quantile_map_round_trip_and_point_masses():
    r = np.random.default_rng(1)
    y = np.column_stack([r.exponential(2.0, 20000), np.where(r.random(20000) < 0.3, 0.0, r.normal(5, 1, 20000))])
    q = nets.QuantileMap(2)
    q.fit(y)
    z = q.forward_np(y, np.random.default_rng(2))
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02  # Gaussianized
    back = q.inverse(z)
    # monotone piecewise-linear inverse: quantiles come back to within a knot spacing
    for j in range(2):
        qs = np.quantile(y[:, j], [0.1, 0.5, 0.9])
        assert np.allclose(np.quantile(back[:, j], [0.1, 0.5, 0.9]), qs, rtol=0.02, atol=0.05)
    assert np.mean(back[:, 1] == 0.0) == pytest.approx(0.3, abs=0.02)  # the point mass survives
    # signed (a hurdle stage): a map for the positive values and one for the negative values'
    # magnitudes, zeros left out (they map to 0); the inverse gives magnitudes by each element's map
    ys = np.column_stack([np.where(r.random(20000) < 0.5, r.normal(18, 1, 20000), -r.exponential(3, 20000)), y[:, 1]])
    ys[r.random(20000) < 0.2, 0] = 0.0
    h = nets.QuantileMap(2)
    h.fit(ys, signed=True)
    zh = h.forward_np(ys, np.random.default_rng(2), signed=True)
    assert np.all(zh[ys == 0] == 0)
    for j in range(2):
        for sign in (1, -1):
            m = np.sign(ys[:, j]) == sign
            if m.any():  # each sign's values Gaussianized on their own
                assert abs(zh[m, j].mean()) < 0.03 and abs(zh[m, j].std() - 1) < 0.03
    nz = ys != 0
    back = np.where(ys < 0, -1.0, 1.0) * h.inverse(zh, negative=ys < 0)
    for j in range(2):
        for m in (ys[:, j] > 0, ys[:, j] < 0):
            if m.any():
                assert np.quantile(back[m, j], [0.1, 0.5, 0.9]) == pytest.approx(np.quantile(ys[m, j], [0.1, 0.5, 0.9]),
                                                                               rel=0.02, abs=0.05)
    assert h.knots[0].min() > 10 and h.neg_knots[0].min() > 0  # +18 and the negative tail: apart
    assert h.neg_knots[1].abs().max() == 0 and h.knots[1].min() > 0  # no negative values: an empty map
    assert np.all(back[nz] != 0)


def test_feature_cache_and_rows_give_the_same_matrix():
    df = _particles(300)
    cache: dict = {}
    rows = np.flatnonzero(np.random.default_rng(5).random(300) < 0.4)
    noise = torch.randn(len(rows), 16, generator=torch.Generator().manual_seed(2))
    for stage in nets.STAGES[2:]:  # the stages that share the reconstructed tracks' groups
        full = nets.feature_matrix(df, stage)
        assert np.array_equal(nets.feature_matrix(df, stage, cache), full)  # first call fills, ...
        assert np.array_equal(nets.feature_matrix(df, stage, cache), full)  # ... later calls reuse
        sub = nets.feature_matrix(df, stage, cache, rows, noise)
        assert np.array_equal(sub[:, :full.shape[1]], full[rows])
        assert np.array_equal(sub[:, full.shape[1]:], noise.numpy())
    assert {"logp", "species", "type", "rich_signs"} <= set(cache)
    # the groups are what the table in nets says: log10 p first, the one-hot species after the kinematics
    x = nets.feature_matrix(df, nets.STAGE["resolution"])
    assert np.allclose(x[:, 0], np.log10(df.p_gev), rtol=1e-6)
    onehot = x[:, 7:12]
    assert np.array_equal(np.asarray(nets.SPECIES)[onehot.argmax(axis=1)], np.abs(df.pid))


def test_resolution_and_covariance_conversions_invert():
    df = _particles(200)
    t = fastsim.true_state(df)
    r = np.random.default_rng(4)
    d = np.column_stack([r.normal(0, 0.01, 200), r.normal(0, 0.01, 200), r.normal(0, 1e-4, 200),
                         r.normal(0, 1e-4, 200), r.normal(0, 0.005, 200)])
    state = fastsim.apply_resolution(df, d)
    back = fastsim.resolution_targets(df.assign(**dict(zip(fastsim.STATE, state.T))))
    assert np.allclose(back, d, atol=1e-12)
    # a perfect reconstruction derives the generated kinematics
    p, pt, eta, phi = fastsim.derive(t).T
    assert np.allclose(p, df.p_gev) and np.allclose(pt, df.pt_gev) and np.allclose(eta, df.eta)
    assert np.allclose(phi, df.phi)
    c = np.column_stack([np.log(r.uniform(0.01, 0.1, (200, 4))), np.log(r.uniform(0.002, 0.01, 200)),
                         r.uniform(-0.9, 0.9, (200, 2))])
    cov = fastsim.apply_covariance(df, c)
    back = fastsim.covariance_targets(df.assign(**dict(zip(fastsim.COVARIANCE, cov.T))))
    assert np.allclose(back, c)


def test_trace_run_covers_every_stage():
    pipe = nets.new_pipeline(torch.float16, "meta")
    out = pipe.trace_run(torch.zeros((32, 1), dtype=torch.long, device="meta"), "prefill")
    assert [o.shape for o in out] == [(32, nets.n_outputs(s)) for s in nets.STAGES]
    assert all(o.dtype == torch.float16 for o in out)
