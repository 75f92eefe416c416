"""``archzoo params`` and ``archzoo compare`` through the real entry point."""

from __future__ import annotations

import json

import pytest

from archzoo.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_params_tables_for_a_dense_config(capsys):
    code, out, _ = run(capsys, "params", "llama-tiny", "--seq-len", "64", "--batch", "2")
    assert code == 0
    assert "pre-RMSNorm, GQA" in out  # the config's description
    # 512 x 128 embedding and head; per layer 4 projections (128x128, 2 x 128x64, 128x128) + SwiGLU 3 x 128 x 352
    assert "embeddings" in out and "65,536" in out
    assert "mlp (dense)" in out and f"{2 * 3 * 128 * 352:,}" in out
    assert "total" in out and "500,352" in out
    assert "active per token" not in out  # dense: no active column
    assert "KV cache 2 x 64 tokens" in out
    assert "training total (AdamW, mixed precision)" in out
    assert "FLOPs per token" in out


def test_params_json_has_total_and_memory(capsys):
    code, out, _ = run(capsys, "params", "llama-tiny", "--json", "--dtype", "fp32", "--seq-len", "16")
    data = json.loads(out)
    assert code == 0 and data["total"] == 500_352
    assert sum(data["components"].values()) == data["total"]
    # 2 layers x K and V x 2 kv heads x head_dim 32 x 4 bytes
    assert data["memory"]["kv_bytes_per_token"] == 2 * 2 * 2 * 32 * 4
    assert data["memory"]["seq_len"] == 16


def test_params_moe_shows_active_buffer_and_mtp(capsys):
    code, out, _ = run(capsys, "params", "deepseek-tiny", "--seq-len", "32")
    assert code == 0
    assert "active per token" in out and "routed experts" in out and "shared experts" in out
    assert "e_score_correction_bias" in out and "not in total" in out
    assert "multi-token prediction: 1 module(s)" in out


def test_params_mtp_line_gives_the_checkpoint_figure_with_embedding_and_head(capsys):
    # DeepSeek-V3's card: 671B main + 14B MTP = 685B stored. The MTP module's own
    # 11.61B plus its stored copies of the embedding and head (2 x 129280 x 7168).
    _, out, _ = run(capsys, "params", "deepseek-v3")
    line = next(text for text in out.splitlines() if text.startswith("multi-token prediction"))
    own = int(line.split("module(s), ")[1].split(" ")[0].replace(",", ""))
    assert f"({(own + 2 * 129280 * 7168) / 1e9:.2f}B with a copy of both" in line
    assert round((own + 2 * 129280 * 7168) / 1e9) == 13  # 685 - 671 = 14 on the card, rounded up there


def test_params_tied_head_is_said(capsys):
    _, out, _ = run(capsys, "params", "qwen2-tiny", "--seq-len", "8")
    assert "tied to the input embedding: one matrix, counted once" in out


def test_params_rejects_unknown_dtype(capsys):
    with pytest.raises(SystemExit):
        main(["params", "llama-tiny", "--dtype", "fp12"])
    assert "fp12" in capsys.readouterr().err


def test_compare_configs_side_by_side(capsys):
    code, out, _ = run(capsys, "compare", "llama-tiny", "deepseek-tiny", "--seq-len", "16")
    assert code == 0
    header = out.splitlines()[3]
    assert "llama-tiny" in header and "deepseek-tiny" in header
    for label in ("params total", "params active", "KV / token (bf16)", "training (AdamW)", "forward FLOPs/token"):
        assert label in out
    code, out, _ = run(capsys, "compare", "llama-tiny", "qwen3-tiny", "--json", "--seq-len", "16")
    columns = json.loads(out)
    assert [c["name"] for c in columns] == ["llama-tiny", "qwen3-tiny"]
    assert columns[0]["total"] == 500_352
    code, out, _ = run(capsys, "compare", "qwen2-tiny", "deepseek-tiny", "--json", "--seq-len", "16")
    qwen, deepseek = json.loads(out)
    # the kv-heads row: GQA caches its own heads (qwen2-tiny.toml: n_kv_heads = 2); MLA caches one latent
    assert (qwen["kv_heads"], deepseek["kv_heads"]) == (2, None)


def test_compare_attention_blocks(capsys):
    argv = ["compare", "--blocks", "attention:mha,gqa,mqa,mla", "--d-model", "64", "--n-heads", "4"]
    code, out, _ = run(capsys, *argv, "--seq-len", "8", "--repeats", "1", "--json")
    assert code == 0
    blocks = {b["variant"]: b for b in json.loads(out)["blocks"]}
    assert blocks["mha"]["params"] == 4 * 64 * 64
    assert blocks["mqa"]["params"] == 2 * 64 * 64 + 2 * 64 * 16
    # head_dim 16; kv heads: mha 4, gqa n_heads / 4 = 1 by default, mqa 1; mla: latent 4 x 16 + rope 8
    kv = {v: b["kv_values_measured"] for v, b in blocks.items()}
    assert kv == {"mha": 2 * 4 * 16, "gqa": 2 * 1 * 16, "mqa": 2 * 16, "mla": 64 + 8}
    code, out, _ = run(capsys, *argv, "--seq-len", "8", "--repeats", "1")
    assert code == 0 and "KV bytes/token (bf16)" in out and "ms/call" in out


def test_compare_mlp_iso_params(capsys):
    argv = ["compare", "--blocks", "mlp:gelu,swiglu,geglu", "--d-model", "48", "--seq-len", "4", "--repeats", "1"]
    _, out, _ = run(capsys, *argv, "--iso-params", "--json")
    params = {b["variant"]: b["params"] for b in json.loads(out)["blocks"]}
    assert params == {"gelu": 2 * 48 * 192, "swiglu": 3 * 48 * 128, "geglu": 3 * 48 * 128}  # 2/3 x 192 = 128
    _, out, _ = run(capsys, *argv)
    assert "hidden 192" in out and "2/3 rule" not in out


def test_compare_norm_and_position_blocks_print(capsys):
    code, out, _ = run(capsys, "compare", "--blocks", "norm:layernorm,rmsnorm", "--d-model", "32", "--repeats", "1")
    assert code == 0 and "layernorm" in out and "rmsnorm" in out
    argv = ["compare", "--blocks", "position:rope,alibi", "--d-model", "32", "--n-heads", "4", "--repeats", "1"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "fixed frequencies" in out and "fixed slopes" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--blocks", "pos:rope"], "kind 'pos' unknown"),
        (["--blocks", "attention:mha,xyz"], "no xyz"),
        (["--blocks", "attention"], "KIND:A,B"),
        (["llama-tiny", "--blocks", "norm:rmsnorm"], "not both"),
        ([], "config names"),
        (["--blocks", "attention:gqa", "--n-heads", "6", "--n-kv-heads", "4", "--d-model", "48"], "--n-kv-heads"),
    ],
)
def test_compare_errors_name_the_argument(capsys, argv, message):
    code, _, err = run(capsys, "compare", *argv)
    assert code == 2 and message in err
