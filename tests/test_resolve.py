"""One answer to 'which checkpoint': a shipped name, a run folder, a checkpoint file or a released name, in that
order, for `load_model`, `ditlab sample --ckpt` and `load_pretrained`; anything else lists what exists and the
closest match."""
import shutil

import pytest

import ditlab
from conftest import FIXTURES
from ditlab import DiT, DiTConfig, load_model, save_model
from ditlab.checkpoint import RELEASED, Release, checkpoint_dir, local_runs, resolve_checkpoint, shipped_names
from ditlab.cli import main

TINY = DiTConfig(input_size=8, patch_size=4, in_channels=1, hidden_size=48, depth=1, num_heads=3, num_classes=10)
SHIPPED = shipped_names()


def test_the_five_shipped_names_are_found():
    assert {"digits-p2", "digits-p4", "digits-p8", "digits-flow-p2", "mnist-p2"} <= set(SHIPPED)
    assert ditlab.list_pretrained() == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_load_model_takes_each_shipped_name(name):
    assert resolve_checkpoint(name) == checkpoint_dir() / f"{name}.safetensors"
    model = load_model(name)
    assert model.config.to_dict() == ditlab.load_pretrained(name).config.to_dict() and not model.training


@pytest.fixture
def here(tmp_path, monkeypatch):
    """A working folder with two runs (runs/train, runs/scaling/3-steps/DiT-Nano_4) and a checkpoint file."""
    monkeypatch.chdir(tmp_path)
    for run in ("runs/train", "runs/scaling/3-steps/DiT-Nano_4"):
        save_model(DiT(TINY), tmp_path / run / "ema.safetensors")
    save_model(DiT(TINY), tmp_path / "mine.safetensors")
    return tmp_path


def test_run_folders_and_files_in_this_folder(here):
    assert local_runs() == ["runs/scaling/3-steps/DiT-Nano_4", "runs/train"]
    assert load_model("runs/train").config == TINY
    assert load_model("mine.safetensors").config == TINY
    assert load_model(here / "runs" / "train").config == TINY  # a Path as well as a str


def test_a_shipped_name_comes_before_a_folder_of_that_name(here):
    save_model(DiT(TINY), here / "digits-p4" / "ema.safetensors")
    assert resolve_checkpoint("digits-p4") == checkpoint_dir() / "digits-p4.safetensors"
    assert resolve_checkpoint("./digits-p4").absolute() == here / "digits-p4"  # a path says it is one


@pytest.mark.parametrize("typo, meant", [("digit-p4", "digits-p4"), ("mnist-p3", "mnist-p2"),
                                         ("runs/trian", "runs/train"), ("DiT-XL-2-256", "DiT-XL-2-256x256")])
def test_a_typo_gets_what_exists_and_the_closest_match(here, typo, meant):
    with pytest.raises(FileNotFoundError) as e:
        load_model(typo)
    msg = str(e.value)
    assert msg.startswith(f"checkpoint not found: {typo!r}. Did you mean {meant!r}?"), msg
    assert all(name in msg for name in SHIPPED) and "runs/train" in msg and "DiT-XL-2-512x512" in msg


def test_nothing_close_lists_without_a_guess(here):
    with pytest.raises(FileNotFoundError) as e:
        load_model("zzzzzzzz")
    assert "Did you mean" not in str(e.value) and "ditlab list" in str(e.value)


def test_load_pretrained_suggests_too():
    with pytest.raises(ValueError, match=r"unknown pretrained checkpoint 'digit-p8'; did you mean 'digits-p8'\?"):
        ditlab.load_pretrained("digit-p8")


def test_no_shipped_checkpoints_says_where_it_looked(here, monkeypatch):
    monkeypatch.setenv("DITLAB_CHECKPOINTS", str(here / "empty"))
    with pytest.raises(FileNotFoundError, match="shipped names: none"):
        load_model("digits-p4")


def test_a_released_name_offline_names_the_download_and_load_released(here, monkeypatch):
    monkeypatch.setenv("DITLAB_CACHE", str(here / "cache"))
    monkeypatch.setenv("DITLAB_OFFLINE", "1")
    for name in ("DiT-XL-2-256x256", "DiT-XL-2-256x256.pt"):  # the README's tour writes the file name
        with pytest.raises(ConnectionError) as e:
            load_model(name)
        msg = str(e.value)
        assert RELEASED["DiT-XL-2-256x256"].url in msg and "load_released(" in msg
        assert str(here / "cache" / "pretrained" / "DiT-XL-2-256x256.pt") in msg


def test_a_released_name_loads_its_cached_download(here, monkeypatch):
    cfg = DiTConfig(**__import__("json").loads((FIXTURES / "config.json").read_text()))
    monkeypatch.setitem(RELEASED, "DiT-tiny", Release((FIXTURES / "DiT-tiny-release.pt").as_uri(), cfg))
    monkeypatch.setenv("DITLAB_CACHE", str(here / "cache"))
    (here / "cache" / "pretrained").mkdir(parents=True)
    shutil.copy(FIXTURES / "DiT-tiny-release.pt", here / "cache" / "pretrained" / "DiT-tiny.pt")
    monkeypatch.setenv("DITLAB_OFFLINE", "1")  # cached: nothing to download
    assert load_model("DiT-tiny").config.depth == cfg.depth


def test_not_a_name_is_a_type_error():
    with pytest.raises(TypeError, match="checkpoint must be a shipped name, a run folder"):
        load_model(3)


def test_the_cli_takes_names_and_suggests(here, capsys):
    main(["sample", "--ckpt", "digits-p8", "--steps", "2", "--per-class", "1", "--out", "s.png"])
    assert (here / "s.png").exists()
    with pytest.raises(SystemExit) as e:
        main(["sample", "--ckpt", "runs/trian", "--steps", "2"])
    assert str(e.value.code).startswith("ditlab sample: error: checkpoint not found: 'runs/trian'. Did you mean "
                                        "'runs/train'?")
