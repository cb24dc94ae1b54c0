"""Shared fixtures: a tiny real Wan model saved to disk, real synthetic mp4 clips, a real index built from them.

Everything is built in code, seeded, under pytest's tmp dirs; nothing is downloaded.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """12 real mp4 clips (two per motion class) and their manifest."""
    from motive_index.synthetic import generate_dataset

    out = tmp_path_factory.mktemp("data")
    return generate_dataset(out, 12, seed=3, frames_range=(17, 30))


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, dataset):
    """The tiny Wan preset, briefly fine-tuned on the dataset and saved with save_pretrained."""
    from motive_index.backbones import build_tiny
    from motive_index.finetune import finetune
    from motive_index.manifest import read_manifest

    backbone = build_tiny(seed=0)
    finetune(backbone, read_manifest(dataset), steps=20, seed=0)
    return backbone.save_pretrained(tmp_path_factory.mktemp("model") / "tiny-ft")


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, dataset, model_dir):
    """A real LanceDB + FAISS index of the dataset under the fine-tuned model (flow mask, 64 dims)."""
    from motive_index.api import MotiveIndex

    index_dir = tmp_path_factory.mktemp("idx") / "index"
    _, report = MotiveIndex.build(dataset, model_dir, index_dir, dim=64)
    assert report.added == 12 and not report.failed
    return index_dir
