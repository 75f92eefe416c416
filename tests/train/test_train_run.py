"""Run folders: what they hold, bit-exact resume, and the checks made before the first step."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import archzoo
from archzoo.cli import main
from archzoo.errors import CheckpointError
from archzoo.train import TrainSettings, resume, train

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 12
QUICK = ["--batch", "2", "--seq-len", "16", "--warmup", "2", "--eval-batches", "2", "--no-progress", "--sample-tokens", "0"]


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "hamlet.txt"
    path.write_text(TEXT)
    return path


def settings(**kw) -> TrainSettings:
    return TrainSettings(**{"steps": 7, "batch": 2, "seq_len": 16, "warmup": 2, "eval_every": 2, "eval_batches": 2, "save_every": 3, **kw})


def without_timing(records):
    return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in records]


@pytest.mark.parametrize("name", ["llama-tiny", "qwen2-moe-tiny"])
def test_an_interrupted_and_resumed_run_logs_the_same_losses_to_the_last_bit(tmp_path, text, name):
    straight = train(name, out=tmp_path / "a", text=text, settings=settings(), progress=False)
    stopped = train(name, out=tmp_path / "b", text=text, settings=settings(), stop_after=5, progress=False)
    assert not stopped.finished and [r["step"] for r in stopped.records] == [1, 2, 3, 4, 5]
    resumed = resume(tmp_path / "b", progress=False)  # from the checkpoint at step 3: steps 4, 5 run again
    assert resumed.finished
    logged = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert without_timing(logged) == without_timing(straight.records)  # float == float: identical bits
    assert [r["step"] for r in logged] == list(range(1, 8)) and "val_loss" in logged[-1]
    a = load_file(tmp_path / "a" / "checkpoints" / "step-000007" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoints" / "step-000007" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["llama-tiny", "glm-tiny"])
def test_the_sample_after_training_fits_the_model_whatever_the_corpus(tmp_path, name, capsys, recwarn):
    """A corpus without line breaks prompts with at most ``SAMPLE_PROMPT_CHARS`` of it, and prompt plus
    sample stay within max_seq_len (256 for both): no extrapolation warning. glm-tiny (ChatGLM-6B's
    prefix LM) decodes after [gMASK] <sop>, which the prompt gets as ChatGLM-6B's tokenizer appends it."""
    from archzoo.cli.train_cmd import SAMPLE_PROMPT_CHARS
    from archzoo.models.inputs import LongSequenceWarning

    corpus = tmp_path / "one-line.txt"
    corpus.write_text("the cat sat on a mat while dogs ran far away from home " * 200)
    quick = [arg for arg in QUICK if arg not in ("--sample-tokens", "0")]
    argv = ["train", name, "--text", str(corpus), "--steps", "2", "--out", str(tmp_path / "run"), *quick, "--sample-tokens", "400"]
    assert main(argv) == 0
    printed = capsys.readouterr().out.split("sample:\n", 1)[1]
    prompt, continuation = printed.split("\n", 1)
    assert 0 < len(prompt) <= SAMPLE_PROMPT_CHARS and continuation.strip()
    assert len(prompt) + 1 + len(continuation.rstrip("\n")) <= 256  # bytes: one token each
    assert not [w for w in recwarn if issubclass(w.category, LongSequenceWarning)]


def test_the_train_command_writes_a_run_folder(tmp_path, text, capsys):
    out = tmp_path / "run"
    assert main(["train", "llama-tiny", "--text", str(text), "--steps", "4", "--eval-every", "2", "--out", str(out), *QUICK]) == 0
    printed = capsys.readouterr().out
    assert "step 4: loss" in printed and "validation" in printed
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert {"step", "loss", "lr", "tokens_per_s", "tokens", "grad_norm", "time"} <= r.keys()
    assert [("val_loss" in r) for r in records] == [False, True, False, True]
    assert records[1]["val_ppl"] == pytest.approx(math.exp(records[1]["val_loss"]), rel=1e-12)
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((out / "run.json").read_text())
    assert run["settings"]["steps"] == 4 and run["method"] == {"method": "full"}
    model = archzoo.load_pretrained(out / "model")  # a Hugging Face folder of the trained weights
    saved = load_file(out / "checkpoints" / "step-000004" / "model.safetensors")
    assert torch.equal(model.state_dict()["layers.0.attn.q_proj.weight"], saved["layers.0.attn.q_proj.weight"])


def test_stop_after_then_resume_from_the_command_line(tmp_path, text, capsys):
    out = tmp_path / "run"
    args = ["--text", str(text), "--steps", "4", "--save-every", "2", "--out", str(out), *QUICK]
    assert main(["train", "llama-tiny", "--stop-after", "3", *args]) == 0
    assert "continue with: archzoo train --resume" in capsys.readouterr().out
    assert not (out / "model").exists()
    assert main(["train", "--resume", str(out), "--no-progress", "--sample-tokens", "0"]) == 0
    assert [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert (out / "model" / "config.json").is_file()


def test_everything_checkable_is_checked_before_the_first_step(tmp_path, text, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert main(["train", "llama-tiny", "--text", str(text), "--out", str(full), *QUICK]) == 2
    assert "not empty" in capsys.readouterr().err and (full / "keep.txt").read_text() == "mine"
    out = tmp_path / "out"
    # a post-norm llama-tiny has no Hugging Face architecture: --save could never be written
    post_norm = tmp_path / "post-norm.toml"
    post_norm.write_text(_post_norm_toml())
    assert main(["train", str(post_norm), "--text", str(text), "--out", str(out), "--save", str(tmp_path / "s"), *QUICK]) == 2
    assert "no Hugging Face architecture" in capsys.readouterr().err and not out.exists()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["train", "llama-tiny", "--text", str(text), "--out", str(out), "--save", str(blocker / "s"), *QUICK]) == 2
    assert "--save" in capsys.readouterr().err and not out.exists()
    assert main(["train", "--resume", str(out), "--lr", "1"]) == 2
    assert "drop --lr" in capsys.readouterr().err
    assert main(["train", "llama-tiny", "--text", str(text), "--out", str(out), "--steps", "0", *QUICK]) == 2
    assert "steps" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--steps", "0"], "--steps: must be >= 1"),
        (["--seq-len", "-3"], "--seq-len: must be >= 1"),
        (["--eval-every", "-1"], "--eval-every: must be >= 0"),
        (["--keep-checkpoints", "0"], "--keep-checkpoints: must be >= 1"),
        (["--lr", "0"], "--lr: must be > 0"),
        (["--lr", "nan"], "--lr: must be a finite number"),
        (["--val-fraction", "1"], "--val-fraction: must be < 1"),
        (["--min-lr-ratio", "2"], "--min-lr-ratio: must be <= 1"),
        (["--grad-clip", "-1"], "--grad-clip: must be a finite number >= 0"),
        (["--seq-len", "100000"], "--seq-len"),  # past the config's max_seq_len, found after the data is read
    ],
)
def test_a_bad_training_flag_is_named_with_its_dashes(tmp_path, text, capsys, argv, flag):
    out = tmp_path / "run"
    assert main(["train", "llama-tiny", "--text", str(text), "--out", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and "\n" not in err and not out.exists(), err


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(CheckpointError, match="run.json"):
        resume(tmp_path)


def test_eval_reports_the_mean_negative_log_likelihood(tmp_path, text, capsys):
    torch.manual_seed(0)
    model = archzoo.build_model("llama-tiny")
    archzoo.save_pretrained(model, tmp_path / "m")
    assert main(["eval", str(tmp_path / "m"), "--text", str(text), "--seq-len", "32", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    ids = torch.tensor(list(text.read_bytes()))
    n = (len(ids) - 1) // 32
    nll = []
    with torch.no_grad():
        for w in range(n):
            window = ids[w * 32 : w * 32 + 33]
            logp = torch.log_softmax(model(window[None, :-1])[0].double(), -1)
            nll.append(-logp[torch.arange(32), window[1:]])
    by_hand = torch.cat(nll).mean().item()
    assert result["tokens"] == 32 * n
    # float32 logits vs a float64 log-softmax of the same logits, over ~1000 tokens: ~1e-6 relative
    assert result["loss"] == pytest.approx(by_hand, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(by_hand), rel=1e-5)


def test_fine_tuning_starts_from_the_folder_weights(tmp_path, text):
    torch.manual_seed(1)
    base = archzoo.build_model("llama-tiny")
    with torch.no_grad():
        base.lm_head.weight.mul_(30)  # a distinctive start: far from any fresh init's loss
    archzoo.save_pretrained(base, tmp_path / "base")
    result = train(tmp_path / "base", out=tmp_path / "ft", text=text, settings=settings(steps=2), progress=False)
    from archzoo.train import WindowSampler

    first = WindowSampler(result.data.train, 16, seed=0).next_batch(2)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(base(first[:, :-1]).flatten(0, 1), first[:, 1:].flatten()).item()
    # the same float32 forward on the same weights and windows: identical up to kernel choice (~1e-6)
    assert result.records[0]["loss"] == pytest.approx(expected, rel=1e-5)
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["source"] == {"checkpoint": str((tmp_path / "base").resolve())}


def _post_norm_toml() -> str:
    """llama-tiny with post-norm residuals, which no supported Hugging Face architecture expresses."""
    from archzoo.config.toml_write import dumps

    data = archzoo.config.load_config("llama-tiny").to_dict()
    data["norm"] = {**data.get("norm", {}), "placement": "post"}
    return dumps(data)


def test_fine_tuning_exports_the_checkpoint_tokenizer_with_the_model(tmp_path, text):
    """The run's model folder (and --save's) loads with the tokenizer it was trained with."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet, show_progress=False))
    torch.manual_seed(0)
    base = archzoo.save_pretrained(archzoo.build_model("llama-tiny"), tmp_path / "base")
    tok.save(str(base / "tokenizer.json"))
    (base / "generation_config.json").write_text('{"eos_token_id": 2}')
    result = train(base, out=tmp_path / "ft", text=text, settings=settings(steps=2), save=tmp_path / "saved", progress=False)
    assert json.loads((tmp_path / "ft" / "run.json").read_text())["tokenizer"] == str(base.resolve())
    sample = TEXT[:40]
    for folder in (result.artefact, tmp_path / "saved"):
        assert (folder / "tokenizer.json").read_bytes() == (base / "tokenizer.json").read_bytes()
        assert (folder / "generation_config.json").read_text() == '{"eos_token_id": 2}'
        assert archzoo.load_tokenizer(folder).encode(sample) == archzoo.load_tokenizer(base).encode(sample)
        assert torch.equal(archzoo.load_pretrained(folder).embed.weight, result.model.embed.weight)


def test_a_run_without_text_or_ids_trains_on_the_public_default_corpus(tmp_path):
    from archzoo.train import DEFAULT_CORPUS

    result = train("llama-tiny", out=tmp_path / "run", settings=settings(steps=1, save_every=0), progress=False)
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["data"]["text"] == str(DEFAULT_CORPUS.resolve())
    # byte tokens: the stream is the file's UTF-8 bytes, one id each
    assert info["data"]["tokens"] == len(DEFAULT_CORPUS.read_bytes())
    assert result.data.train.numel() + result.data.val.numel() == info["data"]["tokens"]


@pytest.mark.parametrize("method_name", ["LoRATraining", "PrefixTraining"])
def test_the_public_adapter_methods_fine_tune_only_adapters(tmp_path, text, method_name):
    import archzoo.train

    base = train("llama-tiny", out=tmp_path / "base", text=text, settings=settings(steps=1, save_every=0), progress=False)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    method = getattr(archzoo.train, method_name)()
    tuned = train(base.artefact, out=tmp_path / "tuned", text=text, settings=settings(steps=2, save_every=0),
                  method=method, progress=False)  # fmt: skip
    assert tuned.artefact == tmp_path / "tuned" / "adapter" and (tuned.artefact / "adapter_config.json").is_file()
    after = tuned.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # the base is frozen
    trainable = [n for n, p in tuned.model.named_parameters() if p.requires_grad]
    assert trainable and all(("lora_" in n) or n.startswith("prefix.") for n in trainable)
