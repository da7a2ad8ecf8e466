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
