"""A run is defined once (issue 20): ``lib.run.RUN_FIELDS`` makes RunSpec, its command line, the
parser's flags and the resume key; every grid's configuration survives the round trip
spec → command → parser → spec."""
import dataclasses
import shlex

import pytest

from lib import grid as G
from lib import run as Run
from lib.schema import KEY_FIELDS


def test_runspec_is_the_table():
    assert [f.name for f in dataclasses.fields(Run.RunSpec)] == [f.name for f in Run.RUN_FIELDS]
    flags = {a.dest for a in Run.parser()._actions}
    assert {f.name for f in Run.RUN_FIELDS} - {"seeds"} <= flags and {"seeds", "seed_list"} <= flags
    # every key field is a run field, the seed, or a setting resolved from one (lib.train.train_config)
    assert set(KEY_FIELDS) - {"seed"} <= set(Run.RUN_FIELD)


@pytest.mark.parametrize("grid", sorted(G.GRIDS))
@pytest.mark.parametrize("profile", ["smoke", "budget", "full"])
def test_every_configuration_survives_its_command_line(grid, profile):
    specs = G.GRIDS[grid](profile)
    for spec in specs:
        cmd = spec.command("x.jsonl")
        words = shlex.split(cmd)
        assert words[:3] == ["python", "-m", "lib.run"]
        back = Run.spec_from_args(Run.parser().parse_args(words[3:]))
        assert back == spec, cmd
        assert list(spec.key_fields(spec.seeds[0])) == list(KEY_FIELDS)


def test_a_setting_at_its_default_is_left_out_of_the_command():
    spec = Run.RunSpec(dataset="NATOPS", ssm="s5", blocks=1, loops=6)
    assert spec.command() == "python -m lib.run --dataset NATOPS --ssm s5 --blocks 1 --loops 6 --seeds 5"
    odd = dataclasses.replace(spec, seeds=(7, 8), reshape="rechunk", chunk=48, pad=True, init="default",
                              ssm_options=(("r_min", 0.9),), time_channel=True, tag="x")
    assert odd.command() == ("python -m lib.run --dataset NATOPS --ssm s5 --blocks 1 --loops 6 --reshape rechunk "
                             "--chunk 48 --pad --seed-list 7,8 --time --tag x --ssm-option r_min=0.9")
