"""Strategies: trainable parameter counts per strategy, and strategies as frozen, parseable values."""
import dataclasses

import pytest

import ftlib
from ftlib.errors import FtlibError
from ftlib.strategies import trainable_parameters

from helpers import HEAD_2


def test_trainable_counts_order_and_exact_values(lite0_random):
    bb = lite0_random
    m = bb.model
    everything = sum(p.numel() for p in m.parameters())
    head = m.classifier.weight.numel() + m.classifier.bias.numel()
    assert head == HEAD_2
    # partial(1): the last body block of lite0 is the neck (conv_head 320->1280 1x1, no bias, + bn2)
    neck = m.conv_head.weight.numel() + m.bn2.weight.numel() + m.bn2.bias.numel()
    assert neck == 320 * 1280 + 2 * 1280
    count = {s: sum(p.numel() for _, p, _ in trainable_parameters(bb, s))
             for s in (ftlib.linear_probe(), ftlib.partial(k=0), ftlib.partial(k=1), ftlib.full(),
                       ftlib.l2sp(), ftlib.lp_ft(), ftlib.bitfit(), ftlib.surgical(k=1))}
    assert count[ftlib.linear_probe()] == HEAD_2 == 2562
    assert count[ftlib.partial(k=0)] == HEAD_2
    assert count[ftlib.partial(k=1)] == HEAD_2 + neck == 414722
    assert count[ftlib.full()] == everything == 3373570
    assert count[ftlib.l2sp()] == count[ftlib.lp_ft()] == everything
    assert count[ftlib.linear_probe()] < count[ftlib.partial(k=1)] < count[ftlib.full()]
    biases = sum(p.numel() for n, p in m.named_parameters() if n.endswith("bias") and not n.startswith("classifier"))
    assert count[ftlib.bitfit()] == HEAD_2 + biases
    stem = m.conv_stem.weight.numel() + m.bn1.weight.numel() + m.bn1.bias.numel()
    assert count[ftlib.surgical(k=1)] == HEAD_2 + stem == 3 * 32 * 9 + 64 + HEAD_2


def test_partial_k_counts_blocks_from_the_end(lite0_random):
    names = [b for b, _ in lite0_random.blocks]
    body = names[:-1]
    for k in range(len(body) + 1):
        assert ftlib.partial(k=k).trainable_blocks(names) == body[len(body) - k:] + ["head"]


def test_partial_k_beyond_the_body_trains_everything_or_is_refused(lite0_random):
    """``k`` larger than the number of body blocks must not wrap around to the last few blocks."""
    names = [b for b, _ in lite0_random.blocks]
    for k in (len(names), len(names) + 3):  # 10 and 13 on lite0's 9 body blocks
        try:
            blocks = ftlib.partial(k=k).trainable_blocks(names)
        except FtlibError:
            continue
        assert blocks == names, (k, blocks)


@pytest.mark.parametrize("make", [lambda: ftlib.partial(k=-1), lambda: ftlib.surgical(k=-1)],
                         ids=["partial", "surgical"])
def test_negative_block_count_is_refused(make):
    with pytest.raises(FtlibError):
        make()


ALL = [ftlib.linear_probe(), ftlib.partial(k=2), ftlib.full(weight_decay=0.0), ftlib.lp_ft(), ftlib.scratch(),
       ftlib.l2sp(alpha=0.01, beta=0.001, include_bn_bias=True), ftlib.bitfit(), ftlib.surgical(k=3),
       ftlib.partial(k=1, bn="train", optimizer="adamw", lr=0.003, head_lr_mult=5.0)]


def as_text(s):
    default = type(s)()
    pairs = [f"{f.name}={getattr(s, f.name)}" for f in dataclasses.fields(s)
             if getattr(s, f.name) != getattr(default, f.name)]
    return ":".join([s.name, *pairs])


@pytest.mark.parametrize("s", ALL, ids=[s.label for s in ALL])
def test_parse_strategy_round_trips(s):
    assert ftlib.parse_strategy(as_text(s)) == s


def test_parse_strategy_examples():
    assert ftlib.parse_strategy("partial:k=2") == ftlib.partial(k=2)
    assert ftlib.parse_strategy("l2sp:alpha=0.01:beta=0.01") == ftlib.l2sp(alpha=0.01, beta=0.01)
    assert ftlib.parse_strategy("full:lr=0.5").lr == 0.5
    assert ftlib.parse_strategy("l2sp:include_bn_bias=True").include_bn_bias is True


@pytest.mark.parametrize("text,listed", [
    ("parital", "partial"),
    ("partial:kk=2", "k"),
    ("l2sp:gamma=1", "alpha"),
])
def test_parse_strategy_rejects_unknown_names(text, listed):
    with pytest.raises(FtlibError) as err:
        ftlib.parse_strategy(text)
    assert listed in str(err.value) and "valid" in str(err.value)


@pytest.mark.parametrize("text", ["partial:k=two", "partial:k=1.5", "l2sp:include_bn_bias=maybe", "full:lr=fast",
                                  "full:bn=sometimes", "full:optimizer=lion"])
def test_parse_strategy_rejects_bad_values(text):
    with pytest.raises(FtlibError):
        ftlib.parse_strategy(text)


def test_parse_strategy_tuple_field_is_numbers_or_refused():
    """``c_grid`` is a tuple of floats: text must not turn into a tuple of characters."""
    try:
        s = ftlib.parse_strategy("linear_probe:c_grid=0.1,1,10")
    except FtlibError:
        return
    assert s.c_grid == (0.1, 1.0, 10.0)


def test_strategies_are_frozen_hashable_values():
    for s in ALL:
        with pytest.raises(dataclasses.FrozenInstanceError):
            s.lr = 1.0
        assert hash(s) == hash(dataclasses.replace(s))
        assert dataclasses.replace(s) == s
    assert len(set(ALL)) == len(ALL)
    sweep = {dataclasses.replace(ftlib.l2sp(), alpha=a): a for a in (0.001, 0.01, 0.1)}
    assert len(sweep) == 3 and sweep[ftlib.l2sp(alpha=0.01)] == 0.01
    assert ftlib.partial(k=1) != ftlib.partial(k=2) and ftlib.partial(k=1) != ftlib.surgical(k=1)
    assert "k=2" in str(ftlib.partial(k=2)) and str(ftlib.partial(k=2)).startswith("Partial(")
    row = ftlib.l2sp(alpha=0.01).hparams()
    assert row["hp_alpha"] == 0.01 and row["hp_beta"] == 0.01 and row["hp_weight_decay"] == 0.0


def test_a_new_strategy_is_one_dataclass_that_runs_through_bench_and_the_report(tmp_path, monkeypatch):
    """Everything a strategy needs -- what trains, its lr, its groups, its table order -- is on its class."""
    from dataclasses import dataclass
    from typing import ClassVar

    import ftlib
    from ftlib import report, strategies
    from ftlib.bench import bench
    from helpers import tiny

    @dataclass(frozen=True)
    class LastBlockOnly(strategies.Strategy):
        """The last block of the body and the head."""

        name: ClassVar[str] = "last_block"
        base_lr: ClassVar[float] = 0.002
        order: ClassVar[int] = 3  # after partial (2), before full (5)

        def trainable_blocks(self, block_names):
            return [block_names[-2], "head"]

    monkeypatch.setitem(strategies.STRATEGIES, "last_block", LastBlockOnly)
    s = ftlib.parse_strategy("last_block")
    assert s.learning_rate(64) == 0.004  # base_lr scaled by the batch rule, no table elsewhere
    store = bench([tiny(s), tiny("partial:k=1"), tiny("full")], tmp_path, progress=False, log=lambda *a: None)
    df = store.frame()
    assert (df.status == "ok").all() and set(df.strategy) == {"last_block", "partial", "full"}
    assert df.set_index("strategy").lr["last_block"] == 0.002 * 4 / 32  # batch 4 in tiny()
    labels = list(report.summary_table(df).index.get_level_values("strategy_label"))
    assert labels == ["partial(k=1)", "last_block", "full"]
    assert "last_block" in report.budget_table(df).index.get_level_values("strategy_label")


def test_a_gradient_strategy_without_a_learning_rate_is_refused_at_definition():
    from dataclasses import dataclass
    from typing import ClassVar

    from ftlib import strategies

    with pytest.raises(TypeError, match="sets no base_lr"):
        @dataclass(frozen=True)
        class NoLr(strategies.Strategy):
            name: ClassVar[str] = "no_lr"
