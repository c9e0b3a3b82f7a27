"""Benchmark and training-data loading from local files, clear errors on bad rows, prompts without a doubled BOS."""

import json

import pytest

from siri_rl.data import BENCHMARKS, load_benchmark, load_problems
from siri_rl.errors import DataError
from siri_rl.prompts import INSTRUCTION, build_messages, build_prompt, prompt_token_ids


@pytest.mark.parametrize("name, count", [("aime24", 30), ("aime25", 30), ("amc", 83), ("math500", 500)])
def test_load_shared_benchmarks(benchmarks_dir, name, count):
    rows = load_benchmark(name, data_dir=benchmarks_dir)
    assert len(rows) == count
    assert all(r["problem"] and isinstance(r["answer"], str) and r["answer"] for r in rows)
    assert len({r["id"] for r in rows}) == count
    assert all(r["benchmark"] == name for r in rows)


def test_amc_float_answers_become_integers(benchmarks_dir):
    assert load_benchmark("amc", data_dir=benchmarks_dir)[0]["answer"] == "142"


def test_data_dir_from_environment(benchmarks_dir, monkeypatch):
    monkeypatch.setenv("SIRI_DATA_DIR", str(benchmarks_dir))
    assert len(load_benchmark("aime24")) == 30


def test_benchmark_from_file_path_and_hub_specs(benchmarks_dir):
    rows = load_benchmark(str(benchmarks_dir / "math500.jsonl"))
    assert rows[0]["benchmark"] == "math500" and "level" in rows[0]
    assert set(BENCHMARKS) == {"aime24", "aime25", "amc", "math500"}
    assert BENCHMARKS["math500"].hub_id == "HuggingFaceH4/MATH-500"


def test_unknown_benchmark_and_missing_dir(tmp_path):
    with pytest.raises(DataError, match="unknown benchmark 'gsm9k'"):
        load_benchmark("gsm9k", data_dir=tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark("aime24", data_dir=tmp_path / "nope")


def test_training_slice(shared_dir):
    rows = load_problems(shared_dir / "data" / "train" / "deepscaler_aime.jsonl")
    assert len(rows) == 975 and rows[0]["answer"]


def test_bad_rows_fail_with_file_and_row(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        json.dumps({"problem": "1+1?", "answer": "2"}) + "\n" + json.dumps({"problem": "2+2?"}) + "\n"
    )
    with pytest.raises(DataError, match=r"train.jsonl: row 1 \(0-based\) has no answer"):
        load_problems(path)
    assert [r["problem"] for r in load_problems(path, skip_invalid=True)] == ["1+1?"]


def test_malformed_json_line_and_format(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "x", "answer": "1"}\n{not json\n')
    with pytest.raises(DataError, match="bad.jsonl:2: not valid JSON"):
        load_problems(path)
    other = tmp_path / "data.csv"
    other.write_text("problem,answer\n")
    with pytest.raises(DataError, match="unsupported data file"):
        load_problems(other)
    with pytest.raises(DataError, match="not found"):
        load_problems(tmp_path / "missing.jsonl")


def test_parquet_and_json_files(tmp_path):
    import pandas as pd

    pd.DataFrame({"problem": ["a", "b"], "answer": [1, 2]}).to_parquet(tmp_path / "t.parquet")
    assert [r["answer"] for r in load_problems(tmp_path / "t.parquet")] == ["1", "2"]
    (tmp_path / "t.json").write_text(json.dumps([{"problem": "c", "answer": "3", "id": "x"}]))
    assert load_problems(tmp_path / "t.json")[0]["id"] == "x"


def test_prompt_has_one_bos_and_the_instruction(r1_tokenizer):
    assert build_messages("What is 1+1?")[0]["content"] == f"What is 1+1? {INSTRUCTION}"
    text = build_prompt("What is 1+1?", r1_tokenizer)
    assert text.startswith(r1_tokenizer.bos_token) and text.endswith("<｜Assistant｜><think>\n")
    ids = prompt_token_ids("What is 1+1?", r1_tokenizer)
    assert ids[0] == r1_tokenizer.bos_token_id
    assert ids.count(r1_tokenizer.bos_token_id) == 1
    # The naive way doubles it: that is the bug this guards against.
    assert r1_tokenizer(text)["input_ids"][:2] == [r1_tokenizer.bos_token_id] * 2


def test_eos_token_ids_include_the_generation_config(think_special_model_dir, tmp_path):
    """The ids that end a response: the tokenizer's EOS and every EOS of the model's generation config."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from siri_rl.prompts import eos_token_ids

    tok = AutoTokenizer.from_pretrained(think_special_model_dir)
    both = [tok.eos_token_id, tok.convert_tokens_to_ids("<|EOT|>")]  # [151643, 151647]
    assert eos_token_ids(tok) == [151643]
    assert eos_token_ids(tok, think_special_model_dir) == eos_token_ids(tok, str(think_special_model_dir)) == both
    assert eos_token_ids(tok, GenerationConfig.from_pretrained(think_special_model_dir)) == both
    assert eos_token_ids(tok, AutoModelForCausalLM.from_pretrained(think_special_model_dir)) == both
    # No generation_config.json: config.json's eos_token_id, as transformers and vLLM fall back to.
    config = json.loads((think_special_model_dir / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "eos_token_id": both[::-1]}))
    assert eos_token_ids(tok, tmp_path) == both
    # Nothing readable there (e.g. a remote path): the tokenizer's EOS.
    assert eos_token_ids(tok, tmp_path / "missing") == [151643]
