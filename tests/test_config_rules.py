"""The rules that keep a config from giving silently wrong answers: finite floats in
their ranges, sane size bounds, combinations that mean nothing, fields the chosen
kind would ignore, and the file-level failures (bad UTF-8, integers past int64)."""

from __future__ import annotations

import math

import pytest

from archzoo.config import ConfigError, load_config
from archzoo.config.limits import LIMITS
from test_config import assert_names, load_error, write_config

NAN, INF = float("nan"), float("inf")

FLOAT_FIELDS = [
    ("model", "init_std"),
    ("model", "embedding_grad_scale"),
    ("norm", "eps"),
    ("attention", "softmax_scale"),
    ("position", "theta"),
    ("position", "rotary_fraction"),
    ("mlp", "ffn_dim_multiplier"),
]


@pytest.mark.parametrize("value", [NAN, INF, -INF])
@pytest.mark.parametrize(("section", "field"), FLOAT_FIELDS)
def test_every_float_must_be_finite(tmp_path, section, field, value):
    sections = {section: {field: value}}
    if field == "ffn_dim_multiplier":  # only read by LLaMA's rule, so without an explicit hidden
        sections["mlp"] = {"multiple_of": 32, "ffn_dim_multiplier": value}
    path = write_config(tmp_path, drop=("mlp.hidden",) if section == "mlp" else (), **sections)
    assert_names(load_error(path), path, f"{section}.{field}", "finite")


@pytest.mark.parametrize(
    ("table", "field"),
    [
        ({"placement": "deepnorm", "deepnorm_alpha": NAN}, "norm.deepnorm_alpha"),
        ({"placement": "deepnorm", "deepnorm_beta": INF}, "norm.deepnorm_beta"),
    ],
)
def test_deepnorm_scales_must_be_finite(tmp_path, table, field):
    path = write_config(tmp_path, norm=table)
    assert_names(load_error(path), path, field, "finite")


MOE = {"n_experts": 4, "top_k": 2, "expert_hidden": 16}


@pytest.mark.parametrize("field", ["routed_scaling_factor", "aux_loss_coef", "bias_update_rate"])
def test_router_scales_and_loss_coefficients_must_be_finite(tmp_path, field):
    path = write_config(tmp_path, moe={**MOE, field: NAN})
    assert_names(load_error(path), path, f"moe.{field}", "finite")


@pytest.mark.parametrize(
    "scaling",
    [
        {"kind": "linear", "factor": NAN},
        {"kind": "llama3", "factor": 8.0, "original_max_seq_len": 64, "low_freq_factor": INF},
        {"kind": "yarn", "factor": 4.0, "original_max_seq_len": 64, "mscale": NAN},
    ],
)
def test_rope_scaling_factors_must_be_finite(tmp_path, scaling):
    path = write_config(tmp_path, position={"scaling": scaling})
    bad = next(k for k, v in scaling.items() if isinstance(v, float) and not math.isfinite(v))
    assert_names(load_error(path), path, f"position.scaling.{bad}", "finite")


@pytest.mark.parametrize(
    ("section", "field", "huge"),
    [
        ("attention", "head_dim", 2**40),  # the RoPE tables alone would be 2 TB
        ("model", "n_layers", 10**6),  # building a million layers on meta would take hours
        ("model", "vocab_size", 2**40),
        ("model", "d_model", 2**31),
        ("mlp", "hidden", 2**40),
        ("moe", "n_experts", 2**20),
    ],
)
def test_sizes_have_sane_upper_bounds(tmp_path, section, field, huge):
    sections = {section: {field: huge}}
    if section == "moe":
        sections["moe"] = {**MOE, field: huge}
    path = write_config(tmp_path, **sections)
    err = load_error(path)
    high = LIMITS[f"{section}.{field}"].high
    assert_names(err, path, f"{section}.{field}", f"{high:,}", f"{huge:,}")


def test_integers_past_int64_name_the_field(tmp_path):
    path = write_config(tmp_path, model={"mtp_layers": 2**64 + 1})
    assert_names(load_error(path), path, "model.mtp_layers", "must fit in 64 bits")
    path.write_text(path.read_text().replace("vocab_size = 64", "vocab_size = 99999999999999999999999"))
    assert_names(load_error(path), path, "model.vocab_size", "must fit in 64 bits")


def test_a_float_too_large_for_a_double_names_the_field(tmp_path):
    path = write_config(tmp_path, norm={"eps": 10**400})
    assert_names(load_error(path), path, "norm.eps", "finite")


def test_invalid_utf8_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b'name = "caf\xe9"\nfamily = "x"\n')
    err = load_error(path)
    assert str(path) in str(err) and "UTF-8" in err.rule and "byte 11" in err.rule  # 'name = "caf' is bytes 0..10


@pytest.mark.parametrize(
    ("sections", "field", "words"),
    [
        # [moe] whose layer plan leaves every layer dense: the summary would still say "moe 2/4"
        ({"moe": {**MOE, "first_dense_layers": 1}}, "moe", "applies to no layer"),
        ({"model": {"n_layers": 2}, "moe": {**MOE, "sparse_step": 2, "dense_layers": [1]}}, "moe", "no layer"),
        ({"moe": {**MOE, "sparse_step": 3}}, "moe.sparse_step", "<= n_layers"),
        # a shared width without a shared expert: no parameters, but 7.5x the activation memory estimate
        ({"moe": {**MOE, "shared_hidden": 128}}, "moe.shared_hidden", "n_shared_experts >= 1"),
        # LLaMA's rule giving a width of 0: int(0.001 * int(8 * 32 / 3)) = 0
        ({"mlp": {"hidden": None, "multiple_of": 1, "ffn_dim_multiplier": 0.001}}, "mlp.ffn_dim_multiplier", "width of 0"),
        ({"mlp": {"hidden": 64, "multiple_of": 32}}, "mlp.multiple_of", "would be ignored"),
        # llama3: s = (L / lambda - low) / (high - low) divides by low's band edge L / low
        (
            {"position": {"scaling": {"kind": "llama3", "factor": 8.0, "original_max_seq_len": 64, "low_freq_factor": 0.0}}},
            "position.scaling.low_freq_factor",
            "must be > 0",
        ),
        (
            {"position": {"scaling": {"kind": "llama3", "factor": 8.0, "original_max_seq_len": 64, "low_freq_factor": -1.0}}},
            "position.scaling.low_freq_factor",
            "must be > 0",
        ),
        (
            {"position": {"scaling": {"kind": "yarn", "factor": 4.0, "original_max_seq_len": 64, "beta_fast": 1.0, "beta_slow": 32.0}}},
            "position.scaling.beta_fast",
            "must be > beta_slow",
        ),
        ({"position": {"scaling": {"kind": "linear", "factor": 0.5}}}, "position.scaling.factor", "[1, "),
    ],
)
def test_missing_rules(tmp_path, sections, field, words):
    drop = ("mlp.hidden",) if sections.get("mlp", {}).get("hidden", 0) is None else ()
    if drop:
        sections = {**sections, "mlp": {k: v for k, v in sections["mlp"].items() if v is not None}}
    path = write_config(tmp_path, drop=drop, **sections)
    assert_names(load_error(path), path, field, words)


@pytest.mark.parametrize(
    ("sections", "field"),
    [
        ({"attention": {"mla_mode": "naive"}}, "attention.mla_mode"),
        ({"norm": {"deepnorm_alpha": 2.0}}, "norm.deepnorm_alpha"),
        ({"norm": {"placement": "post", "deepnorm_beta": 0.5}}, "norm.deepnorm_beta"),
        ({"position": {"kind": "alibi", "theta": 500000.0}}, "position.theta"),
        ({"position": {"kind": "alibi", "rotary_fraction": 0.5}}, "position.rotary_fraction"),
        ({"position": {"kind": "none", "layout": "interleaved"}}, "position.layout"),
        ({"position": {"kind": "glm2d", "layout": "interleaved"}}, "position.layout"),
        ({"position": {"kind": "glm2d", "scaling": {"kind": "linear", "factor": 2.0}}}, "position.scaling"),
        ({"position": {"scaling": {"kind": "linear", "factor": 2.0, "beta_fast": 8.0}}}, "position.scaling.beta_fast"),
        ({"position": {"scaling": {"kind": "linear", "factor": 2.0, "original_max_seq_len": 8}}}, "position.scaling.original_max_seq_len"),
        (
            {"position": {"scaling": {"kind": "llama3", "factor": 2.0, "original_max_seq_len": 8, "mscale": 0.7}}},
            "position.scaling.mscale",
        ),
        ({"mlp": {"kind": "swiglu", "gelu_approximate": "tanh"}}, "mlp.gelu_approximate"),
        ({"mlp": {"kind": "gelu", "gated_half_order": "value_first"}}, "mlp.gated_half_order"),
    ],
)
def test_fields_the_chosen_kind_ignores_are_rejected(tmp_path, sections, field):
    path = write_config(tmp_path, **sections)
    err = load_error(path)
    assert_names(err, path, field)
    assert "appl" in err.rule  # "only applies to ..." / "does not apply to ..."


def test_rotary_fraction_is_refused_on_mla():
    cfg = load_config("deepseek-tiny")
    position = cfg.position.__class__(**{**cfg.position.__dict__, "rotary_fraction": 0.5})
    with pytest.raises(ConfigError) as info:
        cfg.replace(position=position)
    assert info.value.field == "position.rotary_fraction" and "mla" in info.value.rule


def test_configs_built_in_code_are_checked_too():
    # Config.replace validates the same ranges as a file: NaN cannot sneak in from Python
    cfg = load_config("llama-tiny")
    position = cfg.position.__class__(**{**cfg.position.__dict__, "theta": NAN})
    with pytest.raises(ConfigError, match="position.theta: must be a finite number"):
        cfg.replace(position=position)
