"""The book's chart renderer (lib.viz): what it refuses to draw."""
import altair as alt
import pandas as pd
import pytest

from lib import viz

DF = pd.DataFrame({"x": [1, 2, 3, 4], "y": ["a", "b", "a", "b"], "ssm": ["s5", "s5", "lru", "lru"]})
ZERO = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule().encode(x="x:Q")  # a rule for every panel: allowed


def test_a_faceted_layer_with_its_own_data_is_refused():
    """Vega-Lite splits only the facet's data: a layer with its own copy would draw every SSM's points in
    every SSM's panel (the Experiments forest plot did)."""
    bad = alt.layer(ZERO, alt.Chart(DF).mark_point().encode(x="x:Q", y="y:N"), data=DF).facet(
        facet=alt.Facet("ssm:N"), columns=2)
    with pytest.raises(ValueError, match="data of its own"):
        viz.render(bad.to_dict())
    good = alt.layer(ZERO, alt.Chart().mark_point().encode(x="x:Q", y="y:N"), data=DF).facet(
        facet=alt.Facet("ssm:N"), columns=2)
    assert "book-vega" in viz.render(good.to_dict())["text/html"]
    single = alt.Chart(DF).mark_point().encode(x="x:Q", y="y:N").facet(facet=alt.Facet("ssm:N"), columns=2)
    assert "book-vega" in viz.render(single.to_dict())["text/html"]


def test_the_depth_policy_chart_splits_its_data_by_input():
    """One panel per input, each drawing only its own rows (the layer has no data of its own), the
    splits in the order of depth 6 from 6 unique blocks to 1."""
    df = pd.DataFrame({"input": ["A"] * 3 + ["B"] * 2, "ssm": ["s5"] * 5, "model": ["1×6", "6×1", "3×2", "6×1", "1×6"],
                       "mean": [80.0, 82.0, 81.0, 70.0, 71.0], "std": [1.0] * 5, "n_seeds": [5] * 5})
    spec = viz.depth_policy_chart(df).to_dict()
    assert "book-vega" in viz.render(spec)["text/html"]  # passes check_facets
    assert spec["facet"]["field"] == "input"
    assert all("data" not in layer for layer in spec["spec"]["layer"])
    assert spec["spec"]["layer"][1]["encoding"]["x"]["sort"] == list(viz.DEPTH6_MODELS)
    assert spec["resolve"]["scale"]["y"] == "independent"  # 30 % and 90 % inputs side by side stay readable


def test_ssm_panels_and_legends_print_the_registry_labels_in_registry_order():
    """Drawn by Vega (vl-convert): panel headers and legend entries read "LRU", "S5", "LinOSS (IM)", as
    the intro's verdict grid does, in registry order, while the data keep the registry names."""
    import re

    import vl_convert as vlc

    from lib.ssm import SSMS, ssm_label

    df = pd.DataFrame({"x": [1, 2, 3, 4, 5, 6], "y": [1, 2, 3, 4, 5, 6],
                       "ssm": ["s5", "s5", "lru", "lru", "linoss-im", "unknown"]})
    chart = alt.Chart(df).mark_point().encode(x="x:Q", y="y:Q", color=viz.ssm_color()).properties(
        width=60, height=40).facet(facet=viz.ssm_facet(), columns=4)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", vlc.vegalite_to_svg(chart.to_dict()))
    headers = [t for t in texts if t in {"LRU", "S5", "LinOSS (IM)", "unknown", "lru", "s5", "linoss-im"}]
    # each label once as a header and once in the legend; registry order; an unregistered name as it is
    assert headers[:4] == ["LRU", "S5", "LinOSS (IM)", "unknown"], headers
    assert sorted(headers) == sorted(["LRU", "S5", "LinOSS (IM)", "unknown"] * 2), headers
    assert [ssm_label(n) for n in SSMS][:3] == ["LRU", "S5", "LinOSS (IM)"]


def test_a_table_prints_its_ssm_column_with_the_registry_labels():
    df = pd.DataFrame({"ssm": ["linoss-im", "lru", "unknown"], "acc": [1.0, 2.0, 3.0]})
    out = viz.table(df, keys=["ssm"]).data
    assert "<th>SSM</th>" in out and "<th>ssm</th>" not in out
    assert "<td>LinOSS (IM)</td>" in out and "<td>LRU</td>" in out and "<td>unknown</td>" in out
    assert list(df["ssm"]) == ["linoss-im", "lru", "unknown"]  # the caller's frame is left as it was
    as_code = viz.table(df, code=["ssm"]).data  # the name to type: kept, as code
    assert "<th>ssm</th>" in as_code and "<code>linoss-im</code>" in as_code


def test_a_table_prints_negative_numbers_with_a_minus_sign_and_leaves_text_alone():
    import numpy as np

    from lib.stats import MINUS, effect_text, signed

    df = pd.DataFrame({"name": ["-x", "y"], "d": [-1.5, 2.0], "n": [np.int64(-3), 4], "r": [[15.2, -21.4], [0.25]]})
    out = viz.table(df).data
    assert f"<td>{MINUS}1.5</td>" in out and f"<td>{MINUS}3</td>" in out and f"15.2<br>{MINUS}21.4" in out
    assert "<td>-x</td>" in out and "-1.5" not in out  # a name stays as typed; no number keeps a hyphen
    assert signed(-0.404) == f"{MINUS}0.40" and signed(1.25) == "+1.25" and signed(0.0) == "+0.00"
    assert effect_text(-1.64, -3.03, 0.08) == f"{MINUS}1.64 [{MINUS}3.03, +0.08]"


def test_a_no_break_space_keeps_words_together_in_the_width_estimate():
    """``column_groups`` sizes a column by its longest unbreakable word; the browser does not break at a
    no-break space, so neither may the estimate (``str.split`` would)."""
    joined, spaced = viz._min_width("x", [("6×1\u00a0✓\u00a0pilot",)]), viz._min_width("x", [("6×1 ✓ pilot",)])
    assert joined - spaced == pytest.approx(viz._CHAR_PX * (len("6×1 ✓ pilot") - len("pilot")))


def test_the_verdict_grid_breaks_a_long_name_between_its_words_never_between_letters():
    """Set names are inline blocks (a line breaks between names first) with a ``<wbr>`` between the
    words of a CamelCase name; nothing lets the browser break between any two letters."""
    cells = {("C1", "S5"): ("holds", ["2 sets: SelfRegulationSCP1, ERing <b>"])}
    out = viz.verdict_grid(cells, ["C1"], ["S5", "LRU"], caption="c").data
    assert ('<span style="display:inline-block">Self<wbr>Regulation<wbr>SCP1,</span> ERing &lt;b&gt;' in out)
    assert "anywhere" not in out and "overflow-wrap:break-word" in out
    assert "not yet run" in out  # the LRU cell, which has no entry
    widths = [float(w) for w in __import__("re").findall(r'<col style="width:([\d.]+)%">', out)]
    assert len(widths) == 3 and sum(widths) == pytest.approx(100, abs=0.02) and widths[0] < widths[1]
