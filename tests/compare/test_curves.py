"""Curves: smoothing, seed bands, zoom windows, diverged runs, colours shared by every chart of a section."""

from __future__ import annotations

import numpy as np
import pytest

from ablate.compare import curves
from ablate.compare.charts import BASELINE_COLOUR, Options, section_charts, variant_colours
from ablate.compare.group import group_runs
from ablate.compare.load import load_runs
from tests.compare.fake_runs import TOKENS_PER_STEP, attention_study


def test_ema_is_debiased_exponential_average():
    y = np.array([4.0, 2.0, 3.0])
    w = 0.5
    raw = [0.5 * 4.0, 0.25 * 4.0 + 0.5 * 2.0]
    raw.append(0.5 * raw[1] + 0.5 * 3.0)
    expected = [raw[0] / 0.5, raw[1] / 0.75, raw[2] / 0.875]
    assert curves.ema(y, w) == pytest.approx(expected)
    assert curves.ema(y, 0.0) is y
    assert curves.ema(np.full(5, 3.0), 0.9) == pytest.approx(np.full(5, 3.0))  # no pull toward 0 at the start


def test_aggregate_mean_and_bands_over_the_range_all_seeds_cover():
    a = curves.Series(np.array([0.0, 10.0, 20.0]), np.array([5.0, 4.0, 3.0]))
    b = curves.Series(np.array([0.0, 5.0, 10.0]), np.array([6.0, 5.0, 4.4]))
    band = curves.aggregate([a, b])
    assert band.x.tolist() == [0.0, 5.0, 10.0]  # not beyond 10: b stopped there
    assert band.mean.tolist() == pytest.approx([5.5, 4.75, 4.2])
    assert band.low.tolist() == pytest.approx([5.0, 4.5, 4.0]) and band.high.tolist() == pytest.approx([6.0, 5.0, 4.4])
    std = curves.aggregate([a, b], band="std")
    assert std.high - std.mean == pytest.approx(np.std([[5.0, 4.5, 4.0], [6.0, 5.0, 4.4]], axis=0, ddof=1))
    assert curves.aggregate([]) is None


def test_zoom_windows():
    assert curves.zoom_x_range(curves.parse_zoom("70%:"), (0.0, 1000.0), None) == (700.0, 1000.0)
    assert curves.zoom_x_range(curves.parse_zoom("800:"), (0.0, 1000.0), None) == (800.0, 1000.0)
    # seconds on an axis shown in minutes
    assert curves.zoom_x_range(curves.parse_zoom("600:1200"), (0.0, 30.0), None, scale=60.0) == (10.0, 20.0)
    # step numbers on the tokens axis: the same fraction of its range
    assert curves.zoom_x_range(curves.parse_zoom("500:"), (0.0, 2048.0), (0.0, 1000.0)) == (1024.0, 2048.0)
    zoom = curves.parse_zoom("10%:90%,3.2:3.6")
    assert (zoom.y0, zoom.y1, zoom.x0_pct, zoom.x1_pct) == (3.2, 3.6, True, True)
    with pytest.raises(ValueError, match="expected x0:x1"):
        curves.parse_zoom("last")


def test_fit_y_uses_only_points_inside_the_window():
    x, y = np.array([0.0, 50.0, 100.0]), np.array([5.5, 4.0, 3.9])
    lo, hi = curves.fit_y([(x, y)], (50.0, 100.0), log=False)
    assert lo < 3.9 and 4.0 < hi < 4.1


def test_zoom_on_a_short_run_keeps_the_lines_in_frame():
    """Evals at 0, 20, 40 of a 50-step run: the 70%: window (35–50) holds one point, but the line enters the window
    at x = 35 from higher up. The y range must cover where it crosses the edge, or the line runs off-frame."""
    x, y = np.array([0.0, 20.0, 40.0, 50.0]), np.array([5.5, 3.4, 3.0, 2.98])
    lo, hi = curves.fit_y([(x, y)], (35.0, 50.0), log=False)
    entering = np.interp(35.0, x, y)  # 3.1
    assert lo <= 2.98 and hi >= entering


@pytest.fixture
def section(tmp_path):
    runs = load_runs([str(attention_study(tmp_path / "sweep"))])
    return group_runs(runs)[0]


def test_charts_draw_means_bands_and_the_diverged_run(section):
    charts = section_charts(section, Options())
    assert set(charts) == {"step", "tokens", "time"}
    val, zoomed, train = charts["step"]
    means = [line for line in val.lines if line.run is None]
    assert sorted(line.label for line in means) == ["gqa", "mha", "mqa"]
    assert all(line.n == 3 and line.low is not None for line in means)
    assert val.lines[-1].baseline  # drawn last: on top
    diverged = [line for line in train.lines if line.run]
    assert len(diverged) == 1 and diverged[0].end == "diverged"
    assert diverged[0].end_x == 55 and diverged[0].x.max() == 50  # drawn up to where it diverged, marked there
    assert zoomed.x_range == pytest.approx((70.0, 100.0))
    assert zoomed.y_range[0] < 3.79 and zoomed.y_range[1] < 4.2  # fitted to the window, not the start
    assert charts["tokens"][0].x_label == "training tokens"
    assert charts["tokens"][0].lines[0].x.max() == 100 * TOKENS_PER_STEP
    assert charts["time"][0].x_label.startswith("training time (s")
    assert val.y_label == "validation loss (nats/token)"


def test_one_colour_per_variant_in_every_chart(section):
    charts = section_charts(section, Options(smooth=0.6, log_y=True, axes=("step", "time")))
    colours = {}
    for axis_charts in charts.values():
        for chart in axis_charts:
            assert chart.log_y
            for line in chart.lines:
                assert colours.setdefault(line.label, line.colour) == line.colour
    assert colours["mha"] == BASELINE_COLOUR
    assert len(set(colours.values())) == 3
    assert charts["step"][2].title == "training loss (EMA 0.6)"


def test_a_variants_colour_depends_on_its_name_not_on_the_other_variants(tmp_path):
    """Two reports of the same runs (one with a variant more) give every shared variant the same colour."""
    from tests.compare.fake_runs import write_run

    def colours_with(options):
        root = tmp_path / "-".join(options)
        for option in ("mha", *options):
            for seed in range(2):
                write_run(root / f"{option}{seed}", 4.0, seed=seed, attention=option,
                          summary_extra={"study": "attention", "varies": "attention", "baseline": "mha"})
        (section,) = group_runs(load_runs([str(root)]))
        return variant_colours(section)

    full, fewer = colours_with(["gqa", "mla", "mqa"]), colours_with(["mqa"])
    assert fewer["mqa"] == full["mqa"] and fewer["mha"] == full["mha"] == BASELINE_COLOUR
    assert len(set(full.values())) == 4
