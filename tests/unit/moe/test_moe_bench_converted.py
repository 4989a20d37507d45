"""`bench_moe` on a tiny converted Llama: dense equals top-E, FLOPs ratios follow k, AdaMoE rows name their base."""

from contextlib import contextmanager

import pytest
from transformers import AutoModelForCausalLM

from leanlm.bench.moe import MoeBenchConfig, bench_moe
from leanlm.models.loader import LoadedModel
from leanlm.moe import ConvertConfig, convert_to_moe, save_moe_checkpoint


@contextmanager
def no_progress(description, total):
    yield lambda n=1: None


def converted_and_config(loaded, tmp_path, work_dir=None):
    moe, report = convert_to_moe(loaded, ConvertConfig(experts=4, top_k=2, window=32, calibration_windows=4))
    save_moe_checkpoint(tmp_path / "moe", moe, loaded, report)
    converted = LoadedModel(
        model=AutoModelForCausalLM.from_pretrained(tmp_path / "moe").eval(), tokenizer=loaded.tokenizer,
        name="tiny-moe", fingerprint="tiny-moe-0",
    )
    config = MoeBenchConfig(
        windows=2, window=32, top_ks=(1, 2, 4), base_k=2, targets=(1.5,), num_null=2, adamoe_top_k=3,
        adamoe_steps=3, repeats=1, work_dir=work_dir,
    )
    return converted, config


@pytest.fixture
def rows(loaded, tmp_path):
    converted, config = converted_and_config(loaded, tmp_path)
    return {row.method: row for row in bench_moe(converted, loaded, config, no_progress)}


def test_dense_row_equals_top_e(rows):
    assert rows["dense"].ppl == pytest.approx(rows["top-4"].ppl, rel=1e-4)
    assert rows["dense"].expert_flops_ratio == 2.0


def test_top_k_ratios_follow_k(rows):
    assert [rows[f"top-{k}"].expert_flops_ratio for k in (1, 2, 4)] == pytest.approx([0.5, 1.0, 2.0])


def test_adamoe_row_is_compared_with_its_base(rows):
    adamoe = rows["adamoe-target-1.5"]

    assert adamoe.base == "top-2"
    assert 0 < adamoe.avg_real_experts <= 3
    assert adamoe.expert_flops_ratio == pytest.approx(adamoe.avg_real_experts / 2)


def test_rerun_reuses_fitted_routers(loaded, tmp_path, monkeypatch):
    converted, config = converted_and_config(loaded, tmp_path, work_dir=tmp_path / "work")
    first = bench_moe(converted, loaded, config, no_progress)[-1]

    def no_fit(*args, **kwargs):
        raise AssertionError("the routers were fitted again")

    monkeypatch.setattr("leanlm.bench.moe.fit_adamoe", no_fit)
    again = bench_moe(converted, loaded, config, no_progress)[-1]

    assert (first.method, first.ppl, first.avg_real_experts) == (again.method, again.ppl, again.avg_real_experts)
    assert [path.name for path in (tmp_path / "work").iterdir() if not path.name.endswith(".checkpoint")] == [
        "adamoe-base2-null2-slots3-target1.5-steps3"
    ]
