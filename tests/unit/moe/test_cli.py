"""`leanlm moe convert` on a tiny Llama saved to disk: a full run, and bad input as one error line."""

import json

import pytest

from leanlm.cli.main import main

from .conftest import build_llama, build_tokenizer

SMALL = ["--window", "32", "--calibration-windows", "3", "--kmeans-iterations", "3", "--eval-window", "32"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-llama")
    build_llama().save_pretrained(directory)
    build_tokenizer().save_pretrained(directory)
    return directory


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one error line, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]


def test_convert_writes_checkpoint(capsys, model_dir, tmp_path):
    out = tmp_path / "moe"
    code, stdout, err = run_cli(
        capsys, "moe", "convert", "--model", str(model_dir), "--experts", "8", "--top-k", "2", "--out", str(out),
        "--eval-windows", "2", "--compare-top-k", "8,1,2", *SMALL,
    )

    assert code == 0, err
    assert f"wrote {out}: 8 experts of 16 neurons per layer, top-2" in stdout
    evaluation = json.loads((out / "report.json").read_text())["evaluation"]
    assert evaluation["windows"] == 2
    assert set(evaluation["moe_ppl_by_top_k"]) == {"1", "2", "8"}
    assert evaluation["moe_ppl_by_top_k"]["8"] == pytest.approx(evaluation["dense_ppl"], rel=1e-4)
    assert json.loads((out / "config.json").read_text())["num_experts_per_tok"] == 2


def test_convert_without_evaluation(capsys, model_dir, tmp_path):
    out = tmp_path / "moe"
    code, stdout, err = run_cli(
        capsys, "moe", "convert", "--model", str(model_dir), "--experts", "4", "--top-k", "4", "--out", str(out),
        "--eval-windows", "0", *SMALL,
    )

    assert code == 0, err
    assert "perplexity" not in stdout
    assert "evaluation" not in json.loads((out / "report.json").read_text())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--experts", "8", "--top-k", "9"], "top_k must be an integer from 1 to the number of experts (8), got 9"),
        (["--experts", "8", "--compare-top-k", "2,x"], "--compare-top-k expects comma-separated integers"),
        (["--experts", "8", "--compare-top-k", "16"], "--compare-top-k values must be from 1 to --experts (8), got 16"),
        (["--experts", "5"], "experts=5 does not divide the MLP's intermediate size 128"),
        (["--eval-windows", "-1"], "--eval-windows must be 0"),
        (["--eval-window", "100000000"], "No window of 100000000 tokens fits in the 'evaluation' split"),
    ],
)
def test_bad_input_is_one_line(capsys, model_dir, tmp_path, options, message):
    code, _, err = run_cli(capsys, "moe", "convert", "--model", str(model_dir), "--out", str(tmp_path / "moe"), *options)

    assert code == 2
    assert message in error_line(err)


def test_other_directory_not_replaced(capsys, model_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")

    code, _, err = run_cli(capsys, "moe", "convert", "--model", str(model_dir), "--out", str(tmp_path))

    assert code == 2
    assert "is not a leanlm artifact" in error_line(err)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_non_llama_model(capsys, tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    model_dir = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=320)).save_pretrained(model_dir)
    build_tokenizer().save_pretrained(model_dir)

    code, _, err = run_cli(capsys, "moe", "convert", "--model", str(model_dir), "--out", str(tmp_path / "moe"))

    assert code == 2
    assert "supports Llama-architecture models" in error_line(err)


@pytest.fixture(scope="module")
def converted_dir(model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "moe"
    main_args = ["moe", "convert", "--model", str(model_dir), "--experts", "4", "--top-k", "2", "--out", str(out),
                 "--eval-windows", "0", *SMALL]
    try:
        main(main_args)
    except SystemExit as exit_info:
        assert exit_info.code == 0
    return out


def test_fit_adamoe_then_eval_with_it(capsys, converted_dir, tmp_path):
    out = tmp_path / "adamoe"
    code, stdout, _ = run_cli(
        capsys, "moe", "fit", "adamoe", "-m", str(converted_dir), "--null-experts", "2", "--top-k", "3",
        "--target-real", "1.5", "--steps", "2", "--batch", "1", "--window", "32", "--calibration-windows", "3",
        "--out", str(out),
    )
    assert code == 0
    assert "real experts per token" in stdout
    assert json.loads((out / "config.json").read_text())["kind"] == "adamoe"

    code, stdout, _ = run_cli(
        capsys, "eval", "ppl", "-m", str(converted_dir), "--adamoe", str(out), "--window", "32", "--max-windows", "2",
        "--json", str(tmp_path / "ppl.json"),
    )
    assert code == 0
    assert "AdaMoE:" in stdout
    assert 0 <= json.loads((tmp_path / "ppl.json").read_text())["avg_real_experts"] <= 3


def test_adamoe_artifact_of_another_model_is_one_error_line(capsys, converted_dir, model_dir, tmp_path):
    out = tmp_path / "adamoe"
    run_cli(
        capsys, "moe", "fit", "adamoe", "-m", str(converted_dir), "--steps", "0", "--top-k", "3", "--window", "32",
        "--calibration-windows", "2", "--out", str(out),
    )
    code, _, err = run_cli(capsys, "eval", "ppl", "-m", str(model_dir), "--adamoe", str(out), "--window", "32", "--max-windows", "1")

    assert code == 2
    assert str(out) in error_line(err)


@pytest.mark.parametrize("args, message", [
    (["--top-k", "0"], "top-k"),
    (["--null-experts", "-1"], "null experts"),
    (["--top-k", "30"], "exceeds"),
])
def test_bad_adamoe_settings_are_one_error_line(capsys, converted_dir, tmp_path, args, message):
    code, _, err = run_cli(capsys, "moe", "fit", "adamoe", "-m", str(converted_dir), "--out", str(tmp_path / "a"), *args)

    assert code == 2
    assert message in error_line(err)
