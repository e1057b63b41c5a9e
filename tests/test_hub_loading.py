"""Loading JALA folders as users do: a revision, cache or subfolder reaches every sub-part (the motion tokenizer,
the processor), errors name the broken file, the motion model needs no diffusers, the tokenizer subfolder loads
on its own, and saved configs hold no local path. Hub repositories are laid out in a local cache exactly as
huggingface_hub leaves them after a download, and read offline (conftest sets HF_HUB_OFFLINE)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from modeling_jala.configuration_jala import shareable_name_or_path
from modeling_jala.modeling_jala import JalaForMotionPretraining
from modeling_jala.modeling_jala_action import JalaForActionPrediction
from modeling_jala.motion_tokenizer_jala import JalaMotionTokenizer
from modeling_jala.processing_jala import JalaProcessor
from tests.conftest import REPO_ROOT
from tests.fixtures.tiny_jala import save_hub_folder, tiny_jala_config, tiny_processor

#: The action head of tests/test_posttrain.py: the smallest DiT that runs.
TINY_HEAD = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "action_dim": 3, "state_dim": 2, "chunk_size": 4}
#: v2's processor normalises SSL pixels differently from main's, so the processor in use tells its revision.
MAIN_SSL_MEAN = [0.485, 0.456, 0.406]
V2_SSL_MEAN = [0.5, 0.5, 0.5]
REVISIONS = ("main", "v2")


def write_hub_cache(cache_dir: Path, repo_id: str, revisions: dict[str, Path]) -> None:
    """Lay out folders as huggingface_hub's cache after downloading each revision: `models--{org}--{name}/refs/
    {revision}` holds a commit hash and `snapshots/{hash}/` the files (plain files; `blobs/` is optional)."""
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for revision, folder in revisions.items():
        commit = content_hash(folder)
        shutil.copytree(folder, repo / "snapshots" / commit)
        (repo / "refs" / revision).write_text(commit)


def content_hash(folder: Path) -> str:
    """A commit hash that changes with the files, as a real one does: transformers keys its copy of a repository's
    code by commit, so a hash that outlived a code change would run stale code."""
    digest = hashlib.sha1()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def snapshot(cache_dir: Path, repo_id: str, revision: str) -> Path:
    repo = cache_dir / f"models--{repo_id.replace('/', '--')}"
    return repo / "snapshots" / (repo / "refs" / revision).read_text()


def processor_with_ssl_mean(mean: list[float]) -> JalaProcessor:
    processor = tiny_processor()
    processor.ssl_image_processor.image_mean = list(mean)
    return processor


def tokenizer_state(model: JalaForMotionPretraining) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.motion_tokenizer.state_dict().items()}


def assert_same_state(loaded: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert torch.equal(loaded[name], tensor), name


@dataclass
class HubRepos:
    cache_dir: Path
    tokenizers: dict[str, dict[str, torch.Tensor]]  # revision -> the motion tokenizer's tensors
    heads: dict[str, torch.Tensor]  # revision -> motion_heads.weight


@pytest.fixture(scope="module")
def hub_repos(tmp_path_factory: pytest.TempPathFactory) -> HubRepos:
    """ "org/jala" (motion model) and "org/policy" (action model) with revisions main and v2 whose weights, motion
    tokenizers and processors all differ; "org/nested" holds main's motion model in the subfolder `final/`."""
    root = tmp_path_factory.mktemp("hub")
    folders: dict[str, dict[str, Path]] = {"org/jala": {}, "org/policy": {}}
    tokenizers, heads = {}, {}
    for seed, revision in enumerate(REVISIONS):
        torch.manual_seed(seed)
        model = JalaForMotionPretraining(tiny_jala_config()).eval()
        processor = processor_with_ssl_mean(V2_SSL_MEAN if revision == "v2" else MAIN_SSL_MEAN)
        folders["org/jala"][revision] = save_hub_folder(model, root / "jala" / revision, processor)
        tokenizers[revision] = tokenizer_state(model)
        heads[revision] = model.motion_heads.weight.detach().clone()
        config = JalaForActionPrediction.config_for_actions(model.config, TINY_HEAD)
        policy = JalaForActionPrediction(config).eval()
        folders["org/policy"][revision] = save_hub_folder(policy, root / "policy" / revision, processor)
    nested = root / "nested"
    shutil.copytree(folders["org/jala"]["main"], nested / "final")
    (nested / "README.md").write_text("a repository whose model lives in final/\n")
    cache_dir = root / "cache"
    for repo_id, revisions in folders.items():
        write_hub_cache(cache_dir, repo_id, revisions)
    write_hub_cache(cache_dir, "org/nested", {"main": nested})
    assert not torch.equal(
        tokenizers["main"]["wrist.encoder.net.0.weight"], tokenizers["v2"]["wrist.encoder.net.0.weight"]
    )
    return HubRepos(cache_dir, tokenizers, heads)


# -- 1. revisions, cache_dir and subfolder reach the tokenizer and the processor ---------------------------------


@pytest.mark.parametrize("loader", ["class", "AutoModel"])
def test_a_revision_loads_its_own_weights_and_motion_tokenizer(hub_repos: HubRepos, loader: str) -> None:
    load = JalaForMotionPretraining.from_pretrained if loader == "class" else AutoModel.from_pretrained
    extra = {} if loader == "class" else {"trust_remote_code": True}
    model = load("org/jala", revision="v2", cache_dir=hub_repos.cache_dir, **extra)
    assert type(model).__name__ == "JalaForMotionPretraining"
    assert torch.equal(model.motion_heads.weight, hub_repos.heads["v2"])
    assert_same_state(tokenizer_state(model), hub_repos.tokenizers["v2"])
    main = load("org/jala", cache_dir=hub_repos.cache_dir, **extra)
    assert_same_state(tokenizer_state(main), hub_repos.tokenizers["main"])


@pytest.mark.parametrize("loader", ["class", "AutoModel", "from_pretrained_jala"])
def test_the_default_processor_comes_from_the_loaded_revision(hub_repos: HubRepos, loader: str) -> None:
    cache = {"revision": "v2", "cache_dir": hub_repos.cache_dir}
    if loader == "class":
        policy = JalaForActionPrediction.from_pretrained("org/policy", **cache)
    elif loader == "AutoModel":
        policy = AutoModel.from_pretrained("org/policy", trust_remote_code=True, **cache)
    else:  # a new action model started from the motion model: its processor is that folder's
        policy = JalaForActionPrediction.from_pretrained_jala("org/jala", TINY_HEAD, **cache)
    actions = policy.eval().predict_action(
        np.full((40, 40, 3), 30, dtype=np.uint8), "pick up the red cup", np.zeros(2, dtype=np.float32)
    )
    assert actions.shape == (1, TINY_HEAD["chunk_size"], TINY_HEAD["action_dim"])
    assert list(policy.processor.ssl_image_processor.image_mean) == V2_SSL_MEAN


@pytest.mark.parametrize("where", ["local", "hub"])
def test_a_model_in_a_subfolder_finds_its_own_motion_tokenizer(hub_repos: HubRepos, where: str) -> None:
    if where == "hub":
        model = JalaForMotionPretraining.from_pretrained(
            "org/nested", subfolder="final", cache_dir=hub_repos.cache_dir
        )
    else:
        folder = snapshot(hub_repos.cache_dir, "org/nested", "main")
        model = JalaForMotionPretraining.from_pretrained(folder, subfolder="final")
    assert_same_state(tokenizer_state(model), hub_repos.tokenizers["main"])


# -- 4. errors name the file -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_hub_folder(
        JalaForMotionPretraining(tiny_jala_config()).eval(), tmp_path_factory.mktemp("saved") / "jala"
    )


@pytest.mark.parametrize("where", ["local", "hub"])
@pytest.mark.parametrize("weights_file", ["model.safetensors", "motion_tokenizer/model.safetensors"])
def test_a_truncated_weights_file_is_named_with_the_fix(
    saved_model: Path, tmp_path: Path, where: str, weights_file: str
) -> None:
    if where == "hub":
        write_hub_cache(tmp_path / "cache", "org/cut", {"main": saved_model})
        folder = snapshot(tmp_path / "cache", "org/cut", "main")
        load_args = ("org/cut",)
        load_kwargs = {"cache_dir": tmp_path / "cache"}
    else:
        folder = tmp_path / "jala"
        shutil.copytree(saved_model, folder)
        load_args, load_kwargs = (folder,), {}
    broken = folder / weights_file
    content = broken.read_bytes()
    broken.write_bytes(content[: len(content) // 2])  # an interrupted download
    with pytest.raises(OSError, match=re.escape(str(broken))) as raised:
        JalaForMotionPretraining.from_pretrained(*load_args, **load_kwargs)
    assert "force_download=True" in str(raised.value)


def test_a_missing_key_in_the_tokenizer_subfolder_names_the_subfolder(saved_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "jala"
    shutil.copytree(saved_model, folder)
    weights_file = folder / "motion_tokenizer" / "model.safetensors"
    weights = load_file(weights_file)
    weights.pop("wrist.encoder.net.0.weight")
    save_file(weights, weights_file, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"missing keys .*wrist\.encoder\.net\.0\.weight") as raised:
        JalaForMotionPretraining.from_pretrained(folder)
    assert str(folder / "motion_tokenizer") in str(raised.value)


# -- 5. the motion model without diffusers; the tokenizer subfolder on its own -----------------------------------

_WITHOUT_DIFFUSERS = """
import importlib.abc, sys


class NoDiffusers(importlib.abc.MetaPathFinder):
    # As if diffusers were not installed: every import of it fails the way a missing package does.
    def find_spec(self, name, path=None, target=None):
        if name == "diffusers" or name.startswith("diffusers."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NoDiffusers())
import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

folder = sys.argv[1]
model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
generated = model.generate_motion(
    images=[np.zeros((40, 40, 3), dtype=np.uint8)], instructions=["pick up the red cup"], processor=processor,
    num_chunks=1,
)
assert generated.motion.shape == (1, 2, 15, 162) and torch.isfinite(generated.motion).all()
assert not any(name.split(".")[0] == "diffusers" for name in sys.modules)
# The action model lives in its own file (not part of a pretraining folder's code): importing it still works, and
# building it names the missing package.
sys.path.insert(0, sys.argv[2])
from modeling_jala.modeling_jala_action import JalaForActionPrediction as actions
head = {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
try:
    actions(actions.config_for_actions(model.config, head))
except ImportError as error:
    print("ACTION MODEL:", error)
else:
    raise AssertionError("the action model was built without diffusers")
"""


def test_the_motion_model_loads_and_generates_without_diffusers(saved_model: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DIFFUSERS, str(saved_model), str(REPO_ROOT)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "pip install diffusers" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("form", ["subfolder", "path"])
def test_the_tokenizer_subfolder_loads_on_its_own(saved_model: Path, form: str) -> None:
    if form == "subfolder":
        tokenizer = AutoModel.from_pretrained(saved_model, subfolder="motion_tokenizer", trust_remote_code=True)
    else:
        tokenizer = AutoModel.from_pretrained(saved_model / "motion_tokenizer", trust_remote_code=True)
    assert type(tokenizer).__name__ == "JalaMotionTokenizer"
    expected = JalaMotionTokenizer.from_pretrained(saved_model / "motion_tokenizer").state_dict()
    assert_same_state(tokenizer.state_dict(), expected)


# -- 9. saved configs hold no local path -------------------------------------------------------------------------


def test_saved_configs_hold_no_local_path(tmp_path: Path) -> None:
    from transformers import InternVLForConditionalGeneration

    config = tiny_jala_config()
    torch.manual_seed(0)
    InternVLForConditionalGeneration(config.vlm_config).save_pretrained(tmp_path / "vlm")
    AutoModel.from_config(config.ssl_encoder_config).save_pretrained(tmp_path / "ssl")
    JalaMotionTokenizer(config.motion_tokenizer_config).save_pretrained(tmp_path / "tokenizer")
    model = JalaForMotionPretraining.from_components(
        tmp_path / "vlm",
        tmp_path / "ssl",
        tmp_path / "tokenizer",
        align_layer=2,
        perceiver_hidden_size=32,
        perceiver_num_heads=2,
    )
    save_hub_folder(model, tmp_path / "out" / "first")
    # A model loaded from an absolute path and saved again: the sub-configs now hold that path too.
    JalaForMotionPretraining.from_pretrained(tmp_path / "out" / "first").save_pretrained(tmp_path / "out" / "again")
    for path in sorted((tmp_path / "out").rglob("*.json")):
        assert str(tmp_path) not in path.read_text(), path
    saved = JalaForMotionPretraining.from_pretrained(tmp_path / "out" / "again").config
    assert (saved.backbone_name_or_path, saved.ssl_encoder_name_or_path) == ("vlm", "ssl")
    assert shareable_name_or_path("OpenGVLab/InternVL3-2B-hf") == "OpenGVLab/InternVL3-2B-hf"
    assert (
        shareable_name_or_path("facebook/dinov3-vitl16-pretrain-lvd1689m")
        == "facebook/dinov3-vitl16-pretrain-lvd1689m"
    )
