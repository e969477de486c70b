"""Study specs: defaults, overrides, and one-line errors naming the field."""

import re

import pytest

from ecgscale.models import ladder
from ecgscale.spec import SpecError, StudySpec
from ecgscale.study.runs import UNTRAINED, expand, expand_references, run_settings
from ecgscale.study.specfile import load_spec, parse_spec

BASE = {"name": "t", "models": {"sizes": [20000, 60000]}, "data_sizes": [100, 300]}


def test_embedded_demo_loads_and_expands():
    spec = load_spec()
    runs = expand(spec)
    assert len(runs) >= 2 * 2 * 3 * 3
    assert len({r.run_id for r in runs}) == len(runs)
    assert expand(load_spec())[0].run_id == runs[0].run_id  # stable ids


def test_yaml_round_trip():
    spec = parse_spec(BASE)
    import yaml

    assert parse_spec(yaml.safe_load(spec.to_yaml())) == spec


def test_overrides_apply_and_change_ids():
    spec = parse_spec(BASE, overrides=["train.lr=0.01", "models.families=[resnet]"])
    assert spec.train.lr == 0.01 and spec.models.families == ["resnet"]
    ids = {r.run_id for r in expand(parse_spec(BASE))}
    assert not ids & {r.run_id for r in expand(parse_spec(BASE, overrides=["train.lr=0.01"]))}


def test_a_changed_size_rule_changes_only_its_family_ids(monkeypatch):
    """Run ids hash the ladder's shape: a study made under another rule never reuses a model."""
    spec = parse_spec(BASE, overrides=["tasks=[]"])
    before = {r.run_id: r.family for r in expand(spec)}
    monkeypatch.setattr(ladder, "STEM_CHANNELS", ladder.STEM_CHANNELS + 4)
    after = {r.run_id: r.family for r in expand(spec)}
    kept = set(before) & set(after)
    assert kept and {before[i] for i in kept} == {"resnet"}
    assert "transformer" in before.values() and "transformer" in after.values()


def test_untrained_references_one_per_encoder_whatever_the_training():
    assert expand_references(parse_spec(BASE)) == []  # off by default
    spec = parse_spec(BASE, overrides=["eval.untrained=true", "seeds=[0,1]"])
    references = expand_references(spec)
    assert len(references) == 2 * 2 * 2  # family x size x seed
    assert {(r.paradigm, r.data_size, r.lr) for r in references} == {(UNTRAINED, 0, None)}
    ids = {r.run_id for r in references}
    assert len(ids) == len(references) and not ids & {r.run_id for r in expand(spec)}
    trained = parse_spec(BASE, overrides=["eval.untrained=true", "seeds=[0,1]", "train.lr=0.01"])
    assert {r.run_id for r in expand_references(trained)} == ids  # no training in them
    other = parse_spec(BASE, overrides=["eval.untrained=true", "seeds=[0,1]", "data.seed=3"])
    assert not ids & {r.run_id for r in expand_references(other)}
    assert spec.eval_tag() == parse_spec(BASE).eval_tag()  # runs are not re-evaluated


@pytest.mark.parametrize(
    "tree, overrides, field",
    [
        ({**BASE, "models": {"families": ["lstm"], "sizes": [20000]}}, [], "models.families[0]"),
        ({**BASE, "data_sizes": [-5]}, [], "data_sizes[0]"),
        ({**BASE, "models": {"sizes": [-1]}}, [], "models.sizes[0]"),
        ({k: v for k, v in BASE.items() if k != "data_sizes"}, [], "data_sizes"),
        ({**BASE, "trian": {}}, [], "trian"),
        (BASE, ["train.lrr=1"], "train.lrr"),
        (BASE, ["nosuch.key=1"], "nosuch"),
        (BASE, ["train.lr=-1"], "train.lr"),
        ({**BASE, "paradigms": ["rl"]}, [], "paradigms[0]"),
        ({**BASE, "data": {"id_site": "mars"}}, [], "id_site"),
    ],
)
def test_errors_name_the_field(tree, overrides, field):
    with pytest.raises(SpecError) as err:
        parse_spec(tree, overrides=overrides)
    message = str(err.value)
    assert field in message and "\n" not in message


def test_family_overrides_apply_to_their_family_only():
    spec = parse_spec(
        BASE,
        overrides=[
            "train.lr=0.002",
            "train.families.resnet.lr=0.006",
            "train.families.transformer.max_steps=600",
        ],
    )
    assert spec.train.for_family("resnet").lr == 0.006
    assert spec.train.for_family("resnet").max_steps == spec.train.max_steps
    assert spec.train.for_family("transformer").lr == 0.002
    assert spec.train.for_family("transformer").max_steps == 600
    plain = {r.run_id for r in expand(parse_spec(BASE, overrides=["train.lr=0.002"]))}
    assert not plain & {r.run_id for r in expand(spec)}  # the overrides shape the runs


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["train.families.resnet.lrr=1"], "unknown key 'train.families.resnet.lrr'"),
        (["train.families={resnet: {lrr: 1}}"], "resnet.lrr: unknown train field"),
        (["train.families={resnet: {lr_sweep_d: 100}}"], "not per family"),
        (["train.families={resnet: {lr: [0.1, 0.2]}}"], "one rate per family"),
        (["train.families={resnt: {lr: 0.1}}"], "resnt: unknown family (known: "),
        (["train.lr=[0.001, 0.01]", "train.families.resnet.lr=0.1"], "needs one train.lr"),
    ],
)
def test_family_overrides_refuse_what_they_cannot_mean(overrides, message):
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_spec(BASE, overrides=overrides)


def test_from_scratch_training_overrides_by_key():
    spec = parse_spec(BASE, overrides=["train.lr=[0.001, 0.01]", "transfer.train.lr=0.003"])
    assert spec.transfer.train == {"lr": 0.003} and spec.scratch_for("resnet").lr == 0.003


def test_transfer_tasks_name_tasks_of_the_spec():
    tasks = [
        {"name": n, "source": "code", "target": "LVH", "kind": "binary", "d_f": [20, 40]}
        for n in ("a", "b")
    ]
    spec = parse_spec({**BASE, "tasks": tasks}, overrides=["transfer.tasks=[b]"])
    assert [spec.has_scratch(n) for n in ("a", "b")] == [False, True]
    assert parse_spec({**BASE, "tasks": tasks}).has_scratch("a")  # default: every task
    off = parse_spec({**BASE, "tasks": tasks}, overrides=["transfer.scratch=false"])
    assert not off.has_scratch("a") and not off.has_scratch("b")
    with pytest.raises(SpecError, match=r"transfer\.tasks: 'c' is not a task"):
        parse_spec({**BASE, "tasks": tasks}, overrides=["transfer.tasks=[c]"])
    none = parse_spec({**BASE, "tasks": tasks}, overrides=["transfer.tasks=[b]", "tasks=[]"])
    assert none.tasks == []  # the demo without its tasks: transfer.tasks names nothing


def test_data_size_beyond_store_rejected():
    with pytest.raises(SpecError, match="data_sizes"):
        parse_spec({**BASE, "data_sizes": [10**6]})


def test_bad_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="bad.yaml"):
        load_spec(bad)
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.yaml")


def test_spec_is_typed():
    assert isinstance(parse_spec(BASE), StudySpec)


def test_one_name_for_the_bootstrap_count_older_spec_files_still_read():
    assert parse_spec({**BASE, "laws": {"n_boot": 7}}).laws.n_boot == 7
    old = parse_spec({**BASE, "laws": {"n_bootstrap": 7}})  # the name before issue 18
    assert old.laws.n_boot == 7 and "n_bootstrap" not in old.to_yaml()
    assert parse_spec(BASE, overrides=["eval.n_boot=5", "laws.n_boot=6"]).laws.n_boot == 6


def test_epochs_make_each_runs_steps_grow_with_its_data():
    """ceil(epochs x D / min(batch, D)) steps, within [min_steps, max_steps], per run."""
    epochs = ["train.epochs=8", "train.min_steps=20", "train.max_steps=300", "train.batch_size=32"]
    spec = parse_spec({**BASE, "data_sizes": [10, 100, 300, 2000]}, overrides=epochs)
    assert [spec.train.steps_for(d) for d in (10, 100, 300, 2000)] == [20, 25, 75, 300]
    steps = {r.data_size: run_settings(spec, r).max_steps for r in expand(spec)}
    assert steps == {10: 20, 100: 25, 300: 75, 2000: 300}
    assert spec.scratch_for("resnet").for_data(100).max_steps == 25  # D_F counts the same way
    family = parse_spec(BASE, overrides=["train.families={transformer: {epochs: 2}}"])
    assert family.train.for_family("transformer").steps_for(300) == 10  # ceil(2 x 300 / 64)
    assert family.train.for_family("resnet").steps_for(300) == family.train.max_steps


def test_epochs_leave_older_run_ids_alone_and_change_their_own():
    before = {r.run_id for r in expand(parse_spec(BASE))}
    assert "epochs" not in parse_spec(BASE).train.identity()
    assert {r.run_id for r in expand(parse_spec(BASE, overrides=["train.min_steps=5"]))} == before
    with_epochs = {r.run_id for r in expand(parse_spec(BASE, overrides=["train.epochs=4"]))}
    assert not with_epochs & before


def test_ssl_decoder_depth_changes_only_ssl_ids_and_zero_keeps_older_ones():
    runs = expand(parse_spec(BASE))
    assert "decoder_depth" not in parse_spec(BASE).ssl.objective_kwargs()
    zero = parse_spec(BASE, overrides=["ssl.decoder_depth=0"])
    assert [r.run_id for r in expand(zero)] == [r.run_id for r in runs]
    one = expand(parse_spec(BASE, overrides=["ssl.decoder_depth=1"]))
    changed = {a.run_id for a, b in zip(runs, one, strict=True) if a.run_id != b.run_id}
    assert changed == {r.run_id for r in runs if r.paradigm == "ssl"} and changed
    contrastive = ["ssl.objective=contrastive"]  # a masked-only setting leaves its runs alone
    assert expand(parse_spec(BASE, overrides=contrastive)) == expand(
        parse_spec(BASE, overrides=[*contrastive, "ssl.decoder_depth=2"])
    )


def test_time_shift_changes_its_own_ids_and_off_keeps_older_ones():
    before = expand(parse_spec(BASE))
    assert "time_shift" not in parse_spec(BASE).train.identity()
    off = parse_spec(BASE, overrides=["train.time_shift=false"])
    assert [r.run_id for r in expand(off)] == [r.run_id for r in before]
    on = expand(parse_spec(BASE, overrides=["train.time_shift=true"]))
    assert not {r.run_id for r in on} & {r.run_id for r in before}
    fam = parse_spec(BASE, overrides=["train.families={transformer: {time_shift: true}}"])
    assert fam.train.for_family("transformer").time_shift
    assert not fam.train.for_family("resnet").time_shift


def test_min_steps_above_max_steps_is_refused():
    with pytest.raises(SpecError, match="min_steps 500 exceeds max_steps 400"):
        parse_spec(BASE, overrides=["train.epochs=1", "train.min_steps=500"])


def test_family_overrides_of_a_family_the_study_leaves_out_are_ignored():
    """The demo sets the ResNet's rate; a study of its Transformers only still reads."""
    spec = load_spec(None, ["models.families=[transformer]"])
    assert spec.train.families["resnet"]["lr"] == 0.006
    assert {r.family for r in expand(spec)} == {"transformer"}
