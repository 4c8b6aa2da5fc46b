"""Config groups compose into a valid RunConfig; bad values fail early with a one-line ConfigError."""

from __future__ import annotations

import pytest

from powertrain.compose.overrides import check_overrides
from powertrain.compose.validate import validate
from powertrain.config import ConfigError, RunConfig
from powertrain.config.paths import conf_dir

SEED_MODELS = ["simple_cnn", "dense_poly", "dense_linear", "mlp"]
TIMM_MODELS = ["resnet18", "mobilenetv3_small_100", "vit_tiny_patch16_224", "timm"]
DATASETS = ["digits", "synthetic", "synthetic_mnist", "synthetic_cifar", "cifar10", "fashion_mnist"]
OWN = ["target"]  # model=target / dataset=target with a _target_: composed in tests/test_own_code.py


def test_every_preset_file_is_exercised_here():
    # a new preset under conf/model must be added to the lists above, or it is never composed in a test
    presets = {p.stem for p in (conf_dir() / "model").glob("*.yaml")}
    assert presets == set(SEED_MODELS + TIMM_MODELS + OWN)


def _dataset_overrides(dataset: str, tmp_path) -> list[str]:
    # torchvision-backed presets need an existing root to validate (no files are read at validation)
    return [f"dataset={dataset}"] + ([f"dataset.root={tmp_path}"] if "synthetic" not in dataset
                                     and dataset != "digits" else [])


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", SEED_MODELS)
def test_seed_models_compose_with_every_dataset(compose, tmp_path, model, dataset):
    cfg = validate(compose(f"model={model}", *_dataset_overrides(dataset, tmp_path)))
    assert isinstance(cfg, RunConfig)
    assert cfg.model.family == model
    assert cfg.dataset.name == ("synthetic" if dataset.startswith("synthetic") else dataset)


@pytest.mark.slow  # validating a timm name imports timm (~8 s, once per session)
@pytest.mark.parametrize("dataset", ["digits", "synthetic_cifar"])
@pytest.mark.parametrize("model", TIMM_MODELS)
def test_timm_presets_compose(compose, model, dataset):
    cfg = validate(compose(f"model={model}", f"dataset={dataset}"))
    assert cfg.model.family == "timm"
    assert cfg.model.name == ("resnet18" if model == "timm" else model)
    assert cfg.model.input_size == (224 if model.startswith("vit") else None)


def test_documented_example_composes_to_expected_values(compose):
    cfg = validate(compose("model=dense_poly", "optimizer=adam", "optimizer.lr=3e-4", "batch_size=256",
                           "max_epochs=5", "target_accuracy=0.9"))
    assert (cfg.model.family, cfg.model.linear_layers, cfg.model.relu) == ("dense_poly", 3, True)
    assert cfg.optimizer.name == "adam"
    assert cfg.optimizer.lr == pytest.approx(3e-4)
    assert (cfg.optimizer.beta1, cfg.optimizer.beta2) == (0.9, 0.999)
    assert cfg.optimizer.scheduler.name == "cosine"  # config.yaml sets it for every optimizer preset
    assert (cfg.batch_size, cfg.max_epochs, cfg.target_accuracy) == (256, 5, 0.9)
    assert cfg.dataset.name == "digits"


def test_defaults_are_the_documented_default_run(compose):
    cfg = validate(compose())
    assert (cfg.dataset.name, cfg.model.family, cfg.optimizer.name) == ("digits", "simple_cnn", "sgd")
    assert (cfg.model.conv_blocks, cfg.model.linear_layers) == (2, 3)
    assert cfg.optimizer.scheduler.name == "cosine"
    assert cfg.max_epochs == 40 and cfg.target_accuracy is None


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("optimizer.lr=0", "optimizer.lr"),
        ("optimizer.lr=-1", "optimizer.lr"),
        ("batch_size=0", "batch_size"),
        ("max_epochs=0", "max_epochs"),
        ("target_accuracy=1.5", "target_accuracy"),
        ("target_accuracy=0", "target_accuracy"),
        ("optimizer.beta2=1.0", "optimizer.beta2"),
        ("dataset.name=imagenet", "dataset.name"),
    ],
)
def test_bad_value_is_rejected_by_validate_and_by_the_override_check(compose, override, key):
    value = override.split("=", 1)[1]
    # the composed config (what a sweeper's sampled job goes through)
    with pytest.raises(ConfigError) as err:
        validate(compose(override))
    msg = str(err.value)
    assert err.value.key == key and "\n" not in msg
    shown = msg.split(" is not allowed: ")[0].split("=", 1)[1].strip("'")
    assert shown == value or float(shown) == float(value)  # the value as the user typed it
    # and the CLI pre-check, before Hydra composes anything
    with pytest.raises(ConfigError) as err:
        check_overrides([override])
    assert err.value.key == key


def test_override_check_names_the_wrong_type_and_the_unknown_key():
    with pytest.raises(ConfigError, match=r"^batch_size='abc' is not allowed: a value of type integer$"):
        check_overrides(["batch_size=abc"])
    with pytest.raises(ConfigError, match=r"did you mean optimizer\.lr\?"):
        check_overrides(["optimizer.lrr=1"])


def test_override_check_rejects_unknown_group_option_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        check_overrides(["model=dens_poly"])
    assert err.value.key == "model" and "did you mean 'dense_poly'" in str(err.value)
    check_overrides(["model=dense_poly", "dataset=synthetic_mnist", "optimizer=adamw"])  # real ones pass


def test_every_element_of_a_sweep_is_checked():
    check_overrides(["batch_size=32,64", "optimizer.lr=0.1,0.01"])
    with pytest.raises(ConfigError, match=r"^batch_size=0 "):
        check_overrides(["batch_size=32,0"])
    with pytest.raises(ConfigError, match=r"^model='nope' "):
        check_overrides(["model=simple_cnn,nope"])


def test_combinations_are_checked(compose):
    with pytest.raises(ConfigError, match="^precision='bf16'"):
        validate(compose("precision=bf16", "hardware.device=cpu"))
    with pytest.raises(ConfigError, match="^optimizer.nesterov"):
        validate(compose("optimizer=adam", "optimizer.nesterov=true"))


def test_missing_dataset_root_names_the_key_and_how_to_fix(compose, tmp_path):
    with pytest.raises(ConfigError) as err:
        validate(compose("dataset=mnist", f"dataset.root={tmp_path / 'absent'}"))
    assert err.value.key == "dataset.root" and "dataset.download=true" in str(err.value)


def test_dataset_root_falls_back_to_environment(compose, tmp_path, monkeypatch):
    monkeypatch.setenv("POWERTRAIN_DATA", str(tmp_path))
    assert validate(compose("dataset=cifar10")).dataset.name == "cifar10"
    monkeypatch.setenv("POWERTRAIN_DATA", str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=str(tmp_path / "absent")):
        validate(compose("dataset=cifar10"))


@pytest.mark.slow  # imports timm
def test_unknown_timm_name_suggests_close_names(compose):
    with pytest.raises(ConfigError) as err:
        validate(compose("model=timm", "model.name=resnet181"))
    assert err.value.key == "model.name" and "did you mean resnet18" in str(err.value)


def test_type_words_are_one_vocabulary_for_messages_and_help() -> None:
    from powertrain.compose.help import key_lines
    from powertrain.config.errors import type_name

    assert [type_name(t) for t in ("int", "float", "str", "bool", "Optional[float]", "typing.Optional[int]")] == [
        "integer", "number", "string", "true/false", "number or null", "integer or null"]
    assert any(line.split()[:4] == ["target_accuracy", "number", "or", "null"] for line in key_lines())


def test_an_exception_in_one_line() -> None:
    from powertrain.config.errors import first_line

    assert first_line(RuntimeError("CUDA out of memory\nmore details")) == "RuntimeError: CUDA out of memory"
    assert first_line(ValueError("  padded  \n")) == "ValueError: padded"
    assert first_line(KeyError()) == "KeyError"  # no dangling colon for an empty message
